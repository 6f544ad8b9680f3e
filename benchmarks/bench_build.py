"""Build benchmarks on the full-scale synthetic sample (1000 symbols, 2019-12-31..2026-11-22).

Run:  python benchmarks/bench_build.py [--quick]

* Build time of a whole release vs a plain DuckDB ``COPY ... TO parquet`` of the same
  table, same run (ratio).
* Size of ``daily_availability.parquet`` vs the gzipped DuckDB database (goal: <= 0.5).
* Bytes read by a one-symbol timeline and a one-date snapshot, as a share of the file
  (goals: <= 2 % and <= 10 %), with DuckDB (one thread, through a byte-counting fsspec
  filesystem) and pyarrow, for the chosen tiled layout and the obvious alternatives.

Results: printed as Markdown, written to benchmarks/results/build.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TIMELINE = ("symbol", "BTCUSDT")
SNAPSHOT = ("date", dt.date(2023, 5, 17))


class _Counted(io.RawIOBase):
    total = 0

    def __init__(self, path: str) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 - closed in close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.f.readinto(buf)
        _Counted.total += n
        return n

    def seek(self, *args) -> int:
        return self.f.seek(*args)

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()
        super().close()


def _counting_fs():
    from fsspec.implementations.local import LocalFileSystem

    class CountingFS(LocalFileSystem):
        protocol = "counted"

        def _open(self, path, mode="rb", **kwargs):
            return _Counted(self._strip_protocol(path))

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            return LocalFileSystem._strip_protocol(path.removeprefix("counted://"))

        def modified(self, path):
            return dt.datetime.fromtimestamp(os.path.getmtime(self._strip_protocol(path)))

    return CountingFS()


def bytes_read(path: Path) -> dict[str, float]:
    """Share of the file read by the timeline and the snapshot, per reader."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = path.stat().st_size
    con = duckdb.connect()
    con.register_filesystem(_counting_fs())
    # One thread and no prefetching: DuckDB shares one Python file object, and parallel
    # prefetches would race on its position (and each byte must be counted once).
    con.execute("SET threads = 1")
    con.execute("SET disable_parquet_prefetching = true")
    out = {}
    for name, (column, value) in (("timeline", TIMELINE), ("snapshot", SNAPSHOT)):
        _Counted.total = 0
        con.execute(
            f"SELECT * FROM read_parquet(?) WHERE {column} = ?", [f"counted://{path}", value]
        ).fetchall()
        out[f"duckdb_{name}"] = _Counted.total / size
        counted = _Counted(str(path))
        _Counted.total = 0
        pq.read_table(pa.PythonFile(counted, mode="r"), filters=[(column, "==", value)])
        out[f"pyarrow_{name}"] = _Counted.total / size
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols instead of 1000")
    args = parser.parse_args()

    import duckdb

    from intake_bfa.producer.build import build_release
    from intake_bfa.testing.synthetic import generate_daily_availability

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-build-"))
    try:
        table = generate_daily_availability(
            n_symbols=100 if args.quick else 1000, end=dt.date(2026, 11, 22)
        )
        started = time.perf_counter()
        manifest = build_release(table, work / "release", "2026-11-23")
        build_s = time.perf_counter() - started
        con = duckdb.connect()
        con.register("t", table)
        started = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM t) TO '{work / 'plain.parquet'}' (FORMAT parquet)")
        copy_s = time.perf_counter() - started
        release = work / "release"
        parquet = release / "daily_availability.parquet"
        gz = release / "availability.duckdb.gz"
        layouts = {"tiled (chosen)": parquet}
        for name, order in (("symbol,date 100k rows", "symbol, date"),
                            ("date,symbol 100k rows", "date, symbol")):  # fmt: skip
            path = work / f"{name.split()[0].replace(',', '_')}.parquet"
            con.sql(f"SELECT * FROM t ORDER BY {order}").write_parquet(
                str(path), compression="zstd", row_group_size=100_000
            )
            layouts[name] = path
        reads = {name: bytes_read(path) for name, path in layouts.items()}
        sizes = {name: path.stat().st_size for name, path in layouts.items()}
    finally:
        result_sizes = {
            "parquet": parquet.stat().st_size if parquet.exists() else None,
            "duckdb_gz": gz.stat().st_size if gz.exists() else None,
        }
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": manifest["datasets"]["daily_availability"]["rows"],
        "build_s": build_s,
        "plain_copy_s": copy_s,
        "build_vs_copy": build_s / copy_s,
        **result_sizes,
        "parquet_vs_gz": result_sizes["parquet"] / result_sizes["duckdb_gz"],
        "layouts": {n: {"size": sizes[n], **reads[n]} for n in layouts},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "build.json").write_text(json.dumps(result, indent=1))
    print(
        f"{result['rows']:,} rows: whole release built in {build_s:.1f} s vs plain DuckDB "
        f"COPY of daily_availability {copy_s:.1f} s (ratio {result['build_vs_copy']:.1f})"
    )
    print(
        f"daily_availability.parquet {result['parquet'] / 1e6:.1f} MB vs availability.duckdb.gz "
        f"{result['duckdb_gz'] / 1e6:.1f} MB: ratio {result['parquet_vs_gz']:.2f}"
    )
    print(
        "\n| layout | MB | DuckDB timeline | DuckDB snapshot | pyarrow timeline | pyarrow snapshot |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in result["layouts"].items():
        print(
            f"| {name} | {row['size'] / 1e6:.1f} | {row['duckdb_timeline']:.2%} | "
            f"{row['duckdb_snapshot']:.2%} | {row['pyarrow_timeline']:.2%} | "
            f"{row['pyarrow_snapshot']:.2%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
