"""``bfa://`` overhead on a warm cache: ``pd.read_parquet("bfa://DATASET@V")`` vs the local file.

Run:  python benchmarks/bench_bfa_url.py [--quick]

Both reads hit the same verified local file; the difference is what the ``bfa://`` layer
costs (URL parsing, the pinned version's manifest, fsspec's file object). Each round times
them one after the other in rotating order, so machine noise hits all alike; the figure is
the ratio of the medians. The target is at most 1.2. A third column, the same bytes behind
fsspec's own ``memory://`` filesystem, shows what any fsspec URL costs pandas (pyarrow then
reads through Python file objects instead of its native local reader). Only 127.0.0.1 is
contacted (the embedded local release server), and only for the first, cold read.
Results are printed as Markdown and written to benchmarks/results/bfa_url.json.
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
DATASETS = ("symbols", "daily_availability")


def bench(dataset: str, version: str, repeats: int) -> dict:
    import fsspec
    import pandas as pd

    import intake_bfa

    url = f"bfa://{dataset}@{version}"
    path = intake_bfa.local_path(dataset, version)
    memory = f"memory://bench-bfa-url/{dataset}.parquet"
    fsspec.filesystem("memory").pipe(memory, path.read_bytes())
    sources = {"bfa": url, "local": path, "memory": memory}
    assert pd.read_parquet(url).equals(pd.read_parquet(path))  # warm, and the same data
    times: dict[str, list[float]] = {k: [] for k in sources}
    names = list(sources)
    for i in range(repeats):
        for name in names[i % 3 :] + names[: i % 3]:
            t0 = time.perf_counter()
            pd.read_parquet(sources[name])
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "file_kb": path.stat().st_size / 1024,
        "bfa_url_ms": 1e3 * med["bfa"],
        "local_path_ms": 1e3 * med["local"],
        "memory_url_ms": 1e3 * med["memory"],
        "ratio": med["bfa"] / med["local"],
        "ratio_to_memory": med["bfa"] / med["memory"],
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sample, few repeats")
    args = parser.parse_args()
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    n_symbols, repeats = (60, 15) if args.quick else (1000, 101)
    version = "2026-11-23"
    work = Path(tempfile.mkdtemp(prefix="bfa-bench-url-"))
    os.environ.update(BFA_CACHE_DIR=str(work / "cache"), BFA_REPO=SAMPLE_REPO)
    os.environ.pop("BFA_OFFLINE", None)
    samples = SampleReleases(work / "releases", n_symbols=n_symbols)
    results = {}
    with ReleaseServer() as server:
        os.environ["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[version])
        for dataset in DATASETS:
            results[dataset] = bench(dataset, version, repeats)
        server.clear_requests()
        for dataset in DATASETS:
            bench(dataset, version, 3)
        warm_requests = len(server.requests)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "symbols": n_symbols,
        "datasets": results,
        "network_requests_on_warm_reads": warm_requests,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bfa_url.json").write_text(json.dumps(result, indent=1))
    print(f"{n_symbols} symbols, version {version}, {repeats} rotating rounds (medians)\n")
    print(
        "| dataset | file KiB | `bfa://DATASET@V` ms | local path ms | `memory://` ms "
        "| ratio to local | ratio to memory:// |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dataset, r in results.items():
        print(
            f"| {dataset} | {r['file_kb']:.0f} | {r['bfa_url_ms']:.2f} | "
            f"{r['local_path_ms']:.2f} | {r['memory_url_ms']:.2f} | {r['ratio']:.2f} | "
            f"{r['ratio_to_memory']:.2f} |"
        )
    print(f"\nnetwork requests during warm reads: {warm_requests}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
