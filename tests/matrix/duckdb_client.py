"""Run with another DuckDB (a venv of its own): the remote path's pruning and a stress of it.

    python duckdb_client.py N_QUERIES   # BFA_API_URL / BFA_REPO / BFA_CACHE_DIR point at a release

Prints one JSON object: the DuckDB version; for a one-symbol query, the bytes and requests
of the package's filter (``symbol IN (?)``) against the old one (``list_contains(?, symbol)``),
both through the package's remote filesystem; and how many of N remote queries, each on a
fresh connection, finished (the process is killed from outside if they hang).
"""

from __future__ import annotations

import json
import random
import sys
import time

import duckdb

from intake_bfa.remote import filesystem_of, remote_relation, remote_url


def one_symbol(where: str, value: object) -> dict:
    """Rows, bytes and requests of one filtered count over the remote daily_availability."""
    con = duckdb.connect()
    try:
        # DuckDB caches remote file blocks (process-wide in 1.5): measure what a query reads.
        con.execute("SET enable_external_file_cache = false")
        remote_relation("daily_availability", con=con, engine="fsspec")  # registers the fs
        path = remote_url("daily_availability")
        before = filesystem_of(con).stats()
        sql = f"SELECT * FROM read_parquet(?) WHERE {where}"
        rows = len(con.execute(sql, [path, value]).fetchall())
        after = filesystem_of(con).stats()
        return {
            "rows": rows,
            "bytes": after["bytes_transferred"] - before["bytes_transferred"],
            "requests": after["requests"] - before["requests"],
        }
    finally:
        con.close()


def main(n: int) -> None:
    out = {"duckdb": duckdb.__version__}
    out["in_list"] = one_symbol("symbol IN (?)", "BTCUSDT")
    out["list_contains"] = one_symbol("list_contains(?, symbol)", ["BTCUSDT"])
    rng = random.Random(7)
    symbols = ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "BNXUSDT"]
    started, done, rows = time.perf_counter(), 0, 0
    for _ in range(n):
        con = duckdb.connect()
        rel = remote_relation(
            "daily_availability",
            symbols=[rng.choice(symbols)],
            start=f"2020-0{rng.randint(1, 9)}-01",
            con=con,
            engine="fsspec",
        )
        rows += rel.aggregate("count(*)").fetchall()[0][0]
        threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
        con.close()
        done += 1
    out["stress"] = {
        "queries": done,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 2),
        "threads": threads,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]))
