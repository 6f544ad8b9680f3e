"""Query-layer benchmark: the Query API against the same SQL written by hand.

Run:  python benchmarks/bench_query.py [--quick]

On the full-scale synthetic sample (1000 symbols since 2019-12-31, served by the
embedded local release server on 127.0.0.1), the local latency of ``snapshot``,
``timeline`` and ``universe`` through :class:`intake_bfa.query.Query` is compared
with the same SQL written by hand against the same cached Parquet files in DuckDB
(a fresh connection and ``read_parquet(path)`` per query, the way a script would
do it), plus the hand SQL on one reused connection for reference. All variants
run in the same process, interleaved (the order rotates every round), on the same
inputs, each returning a pandas DataFrame (hand SQL through ``con.execute(sql).df()``,
DuckDB 2.0's faster path: ``con.sql(sql).df()`` costs ~20 ms more); medians are reported. Goal: API / hand
(fresh) <= 1.2. Results are printed as Markdown; the full run writes
benchmarks/results/query.json (``--quick``, 100 symbols, writes nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VERSION = "2026-11-23"

SNAPSHOT_SQL = """
SELECT a.date, a.symbol, s.contract_kind, s.quote_asset, a.file_size_bytes, a.last_modified,
       a.quote_volume_usdt, a.trade_count
FROM read_parquet('{da}') AS a LEFT JOIN read_parquet('{sy}') AS s ON s.symbol = a.symbol
WHERE a.date = DATE '{day}' AND a.available
ORDER BY a.symbol
"""
TIMELINE_SQL = """
SELECT * FROM read_parquet('{da}')
WHERE symbol = '{symbol}' AND date >= DATE '{lo}' AND date <= DATE '{hi}'
ORDER BY date
"""
UNIVERSE_SQL = """
WITH w AS (
    SELECT symbol,
           COUNT(*) FILTER (WHERE available) AS days_available,
           AVG(quote_volume_usdt) FILTER (WHERE available) AS avg_quote_volume,
           MIN(quote_volume_usdt) FILTER (WHERE available) AS min_quote_volume
    FROM read_parquet('{da}')
    WHERE date >= DATE '{lo}' AND date <= DATE '{hi}'
    GROUP BY symbol
)
SELECT w.symbol, s.contract_kind, s.quote_asset, w.days_available, w.avg_quote_volume,
       w.min_quote_volume, s.first_date, s.last_date, s.listed_now
FROM w JOIN read_parquet('{sy}') AS s ON s.symbol = w.symbol
WHERE w.days_available = {days} AND w.avg_quote_volume >= {min_volume}
  AND s.quote_asset = 'USDT'
ORDER BY w.symbol
"""


def _cases(q, lo: dt.date, hi: dt.date) -> dict[str, list[tuple]]:
    """Inputs per question: (API call, hand SQL template, template values)."""
    span = (hi - lo).days
    days = [lo + dt.timedelta(days=int(span * f)) for f in (0.3, 0.5, 0.7, 0.9, 1.0)]
    top = q.top(hi, n=5).symbol.tolist()
    windows = [(d - dt.timedelta(days=89), d) for d in days[1:]]
    return {
        "snapshot": [(lambda d=d: q.snapshot(d), SNAPSHOT_SQL, {"day": d}) for d in days],
        "timeline": [
            (lambda s=s: q.timeline(s), TIMELINE_SQL, {"symbol": s, "lo": lo, "hi": hi})
            for s in top
        ],
        "universe": [
            (
                lambda a=a, b=b: q.universe(a, b, min_volume=1e6, quote="USDT"),
                UNIVERSE_SQL,
                {"lo": a, "hi": b, "days": (b - a).days + 1, "min_volume": 1e6},
            )
            for a, b in windows
        ],
    }


def bench(repeats: int, n_symbols: int) -> dict:
    import duckdb
    import pyarrow.parquet as pq

    from intake_bfa.query import Query
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-query-"))
    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ["BFA_REPO"] = SAMPLE_REPO
    os.environ.pop("BFA_OFFLINE", None)
    t0 = time.perf_counter()
    samples = SampleReleases(work / "releases", n_symbols=n_symbols)
    samples.dated(VERSION)
    build_s = time.perf_counter() - t0
    with ReleaseServer() as server:
        os.environ["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[VERSION])
        t0 = time.perf_counter()
        q = Query()
        lo, hi = q.coverage
        q.snapshot(hi)  # downloads and verifies daily_availability and symbols
        q.top(hi)  # and volume_rankings
        cold_s = time.perf_counter() - t0
        paths = {"da": q.path("daily_availability"), "sy": q.path("symbols")}
        rows = pq.read_metadata(paths["da"]).num_rows
        server.clear_requests()

        # Construction cost on a warm cache: resolve + manifest, no download.
        construct = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            Query().close()
            construct.append(time.perf_counter() - t0)

        warm = duckdb.connect()
        results: dict[str, dict] = {}
        for name, cases in _cases(q, lo, hi).items():
            timings: dict[str, list[float]] = {"api": [], "hand_fresh": [], "hand_warm": []}
            for api, template, values in cases:  # same answers, checked once
                sql = template.format(**paths, **values)
                fresh = duckdb.connect()
                expected = fresh.execute(sql).df()
                assert len(api()) == len(expected) == len(warm.execute(sql).df()), name
                fresh.close()
            for round_ in range(repeats):
                for api, template, values in cases:
                    sql = template.format(**paths, **values)

                    def run_fresh(sql=sql):
                        con = duckdb.connect()
                        try:
                            return con.execute(sql).df()
                        finally:
                            con.close()

                    variants = [
                        ("api", api),
                        ("hand_fresh", run_fresh),
                        ("hand_warm", lambda sql=sql: warm.execute(sql).df()),
                    ]
                    shift = round_ % len(variants)  # rotate the order: no variant always first
                    for label, func in variants[shift:] + variants[:shift]:
                        t0 = time.perf_counter()
                        func()
                        timings[label].append(time.perf_counter() - t0)
            med = {k: 1e3 * statistics.median(v) for k, v in timings.items()}
            results[name] = {
                "api_ms": med["api"],
                "hand_fresh_ms": med["hand_fresh"],
                "hand_warm_ms": med["hand_warm"],
                "ratio_vs_fresh": med["api"] / med["hand_fresh"],
                "ratio_vs_warm": med["api"] / med["hand_warm"],
                "samples": len(timings["api"]),
            }
        warm.close()
        q.close()
        requests = len(server.requests)
    return {
        "n_symbols": n_symbols,
        "rows": rows,
        "daily_availability_mb": paths["da"].stat().st_size / 1e6,
        "coverage": [str(lo), str(hi)],
        "build_s": build_s,
        "cold_first_answers_s": cold_s,
        "query_construct_ms": 1e3 * statistics.median(construct),
        "network_requests_during_timing": requests,
        "questions": results,
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols, few repeats")
    args = parser.parse_args()
    res = bench(3 if args.quick else 15, 100 if args.quick else 1000)
    res["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    res["python"] = sys.version.split()[0]
    import duckdb

    res["duckdb"] = duckdb.__version__
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "query.json").write_text(json.dumps(res, indent=1))
    print(
        f"{res['n_symbols']} symbols, {res['rows']:,} rows ({res['coverage'][0]} .. "
        f"{res['coverage'][1]}), daily_availability.parquet {res['daily_availability_mb']:.1f} MB; "
        f"DuckDB {res['duckdb']}; medians of {res['questions']['snapshot']['samples']} runs\n"
    )
    print("| question | Query API (ms) | hand SQL, fresh connection (ms) | ratio | "
          "hand SQL, reused connection (ms) | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in res["questions"].items():
        print(
            f"| {name} | {r['api_ms']:.1f} | {r['hand_fresh_ms']:.1f} | "
            f"{r['ratio_vs_fresh']:.2f} | {r['hand_warm_ms']:.1f} | {r['ratio_vs_warm']:.2f} |"
        )
    print(
        f"\n`Query()` on a warm cache: {res['query_construct_ms']:.2f} ms; first answers on a "
        f"cold cache (download + verify 3 files): {res['cold_first_answers_s']:.2f} s; network "
        f"requests while timing: {res['network_requests_during_timing']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
