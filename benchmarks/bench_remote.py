"""Remote-query benchmark: bytes and requests of DuckDB over HTTP range requests.

Run:  python benchmarks/bench_remote.py [--quick]

On the full-scale synthetic sample (1000 symbols, 2019-12-31..2026-11-22; ``--quick``: 100
symbols) served by the embedded local release server, a one-symbol timeline
(``symbol = 'BTCUSDT'``) and a one-date snapshot (``date = '2023-05-17'``), all columns,
are run through ``intake_bfa.remote.relation`` (a fresh connection each, so each pays for the
footer), and compared with:

* the file size (goals: timeline <= 2 %, snapshot <= 10 %);
* DuckDB and pyarrow reading the same file locally through a byte-counting filesystem
  (``bench_build.bytes_read``), same run;
* other fsspec cache settings (readahead blocks of 64 KiB..1 MiB) and DuckDB's Parquet
  prefetching switched off, to show what the block size does;
* reuse of the signed redirect target switched off (requests per read).

Bytes are response body bytes received by the client (``RemoteFileSystem.bytes_transferred``,
the footer prefetch included); requests are counted by the server for the asset (the
github.com redirect plus the object store). Only 127.0.0.1 is contacted.
Results: printed as Markdown, written to benchmarks/results/remote.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VERSION = "2026-11-23"
ASSET = "daily_availability.parquet"
QUERIES = {  # name -> (column, value): to_duckdb(remote=True) filters, and plain SQL
    "timeline": ("symbol", "BTCUSDT"),
    "snapshot": ("date", dt.date(2023, 5, 17)),
}
FILTERS = {
    "timeline": {"symbols": "BTCUSDT"},
    "snapshot": {"start": "2023-05-17", "end": "2023-05-17"},
}
CONFIGS = {  # name -> (RemoteFileSystem options, DuckDB settings)
    "no block cache (default)": ({}, {}),
    "no block cache, DuckDB prefetch off": ({}, {"disable_parquet_prefetching": "true"}),
    "readahead 64 KiB": ({"cache_type": "readahead", "block_size": 64 << 10}, {}),
    "readahead 256 KiB": ({"cache_type": "readahead", "block_size": 256 << 10}, {}),
    "readahead 1 MiB": ({"cache_type": "readahead", "block_size": 1 << 20}, {}),
    "no block cache, no signed-URL reuse": ({"cache_redirects": False}, {}),
}


def _requests(server) -> int:
    """Requests for the Parquet asset: github.com redirects plus object-store GETs."""
    from intake_bfa.config import get_settings
    from intake_bfa.resolve import get_manifest

    info = get_manifest(get_settings(), VERSION).raw["release"]["assets"][ASSET]
    asset_id = info["api_url"].rsplit("/", 1)[1]
    return server.count("web", ASSET) + server.count("objects", f"/assets/{asset_id}?")


def run_query(server, name: str, fs_options: dict, duck: dict, *, repeat: bool = False) -> dict:
    """One query on a fresh connection and filesystem; ``repeat`` runs it a second time."""
    import duckdb

    from intake_bfa.remote import relation as remote

    con = duckdb.connect()
    for key, setting in duck.items():
        con.execute(f"SET {key} = {setting}")
    fs = remote.RemoteFileSystem(**fs_options)
    server.clear_requests()
    started = time.perf_counter()
    # What to_duckdb(..., remote=True) does, with this connection and filesystem.
    rel = remote.remote_relation(
        "daily_availability", VERSION, con=con, filesystem=fs, engine="fsspec", **FILTERS[name]
    )
    rows = rel.fetchall()
    seconds = time.perf_counter() - started
    out = {
        "rows": len(rows),
        "bytes": fs.bytes_transferred,
        "range_reads": fs.range_reads,
        "requests": _requests(server),
        "seconds": seconds,
    }
    if repeat:  # the same query again: the footer is already in memory
        fs.reset_counters()
        server.clear_requests()
        rel.fetchall()
        out["again_bytes"] = fs.bytes_transferred
        out["again_requests"] = _requests(server)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols instead of 1000")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from bench_build import bytes_read

    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-remote-"))
    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ["BFA_REPO"] = SAMPLE_REPO
    for name in ("BFA_OFFLINE", "GITHUB_TOKEN"):
        os.environ.pop(name, None)
    try:
        samples = SampleReleases(work / "releases", n_symbols=100 if args.quick else 1000)
        path = samples.dated(VERSION) / ASSET
        size = path.stat().st_size
        local = bytes_read(path)
        with ReleaseServer() as server:
            os.environ["BFA_API_URL"] = server.api_url
            samples.publish(server, SAMPLE_REPO, versions=[VERSION])
            from intake_bfa.remote import relation as remote

            remote.remote_url("daily_availability", VERSION)  # the manifest, cached once
            configs = {
                config: {
                    q: run_query(server, q, fs_opts, duck, repeat=config.endswith("(default)"))
                    for q in QUERIES
                }
                for config, (fs_opts, duck) in CONFIGS.items()
            }
        import duckdb

        con = duckdb.connect()
        expected = {
            q: con.execute(
                f"SELECT count(*) FROM read_parquet(?) WHERE {c} = ?", [str(path), v]
            ).fetchall()[0][0]
            for q, (c, v) in QUERIES.items()
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for runs in configs.values():
        for q, run in runs.items():
            assert run["rows"] == expected[q], (q, run["rows"], expected[q])
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "symbols": 100 if args.quick else 1000,
        "file_bytes": size,
        "local_share": local,
        "configs": {
            c: {q: {**r, "share": r["bytes"] / size} for q, r in runs.items()}
            for c, runs in configs.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "remote.json").write_text(json.dumps(result, indent=1))

    default = result["configs"]["no block cache (default)"]
    print(
        f"{ASSET}: {size / 1e6:.1f} MB ({result['symbols']} symbols); remote results equal "
        "local ones (row counts checked)\n"
    )
    print("| query | remote bytes | share of file | requests | local DuckDB | local pyarrow |")
    print("|---|---:|---:|---:|---:|---:|")
    for q in QUERIES:
        r = default[q]
        print(
            f"| {q} | {r['bytes']:,} | **{r['share']:.2%}** | {r['requests']} "
            f"({r['range_reads']} range reads) | {local[f'duckdb_{q}']:.2%} | "
            f"{local[f'pyarrow_{q}']:.2%} |"
        )
    print(
        "\nSame query again on the same connection (footer already in memory): "
        + ", ".join(
            f"{q} {default[q]['again_bytes'] / size:.2%} in {default[q]['again_requests']} requests"
            for q in QUERIES
        )
    )
    print("\n| fsspec cache / DuckDB setting | timeline | snapshot | requests (t / s) |")
    print("|---|---:|---:|---:|")
    for config, runs in result["configs"].items():
        t, s = runs["timeline"], runs["snapshot"]
        print(
            f"| {config} | {t['share']:.2%} | {s['share']:.2%} | "
            f"{t['requests']} / {s['requests']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
