"""Foundation benchmarks: import cost, warm cached reads, cache-hit resolution overhead.

Run:  python benchmarks/bench_foundation.py [--quick]

Every figure is compared with a baseline measured in the same run (a ratio or a
difference), because these machines are noisy. Only 127.0.0.1 is contacted: the
full-scale synthetic release is served by the embedded local release server.
Results are printed as Markdown and written to benchmarks/results/foundation.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SNIPPETS = {
    "python (no imports)": "pass",
    "import intake": "import intake",
    "import intake_bfa": "import intake_bfa",
    "import intake + intake_bfa consumer path": (
        "import intake, intake_bfa, intake_bfa.catalog, intake_bfa.datasets, intake_bfa.readers"
    ),
}
HEAVY = ("pandas", "pyarrow", "duckdb", "polars", "dask")


def fresh_process_ms(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return 1e3 * (time.perf_counter() - started)


def bench_imports(repeats: int) -> dict:
    """Median wall time of fresh interpreters, interleaved so drift hits all equally."""
    samples: dict[str, list[float]] = {k: [] for k in SNIPPETS}
    for _ in range(repeats):
        for name, code in SNIPPETS.items():
            samples[name].append(fresh_process_ms(code))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    probe = (
        "import sys, intake, intake_bfa, intake_bfa.catalog, intake_bfa.datasets\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    heavy = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The plugin's own share of `import intake` (intake imports it via the entry point).
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import intake"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    # Self time of our modules (intake imports the plugin through importlib, so its
    # cumulative line is folded into intake's importlist).
    plugin_us = sum(
        int(line.split("|")[0].split(":")[1])
        for line in timing.splitlines()
        if line.startswith("import time:") and line.split("|")[2].strip().startswith("intake_bfa")
    )
    return {
        "medians_ms": medians,
        "extra_ms": medians["import intake + intake_bfa consumer path"] - medians["import intake"],
        "plugin_share_of_import_intake_ms": plugin_us / 1e3,
        "heavy_modules_imported": heavy,
        "repeats": repeats,
    }


def bench_reads(repeats: int, n_symbols: int, end: dt.date) -> dict:
    import pandas as pd

    import intake_bfa
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-"))
    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ["BFA_REPO"] = SAMPLE_REPO
    os.environ.pop("BFA_OFFLINE", None)
    version = (end + dt.timedelta(days=1)).isoformat()
    t0 = time.perf_counter()
    samples = SampleReleases(work / "releases", n_symbols=n_symbols)
    release_dir = samples.dated(version)
    build_s = time.perf_counter() - t0
    with ReleaseServer() as server:
        os.environ["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[version])
        cat = intake_bfa.open_catalog()
        t0 = time.perf_counter()
        rows = len(cat.daily_availability.read())  # cold: download + verify
        cold_s = time.perf_counter() - t0
        path = intake_bfa.local_path("daily_availability")
        server.clear_requests()
        ours, plain = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            cat.daily_availability.read()
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pd.read_parquet(path)
            plain.append(time.perf_counter() - t0)
        resolve = []
        for _ in range(200):
            t0 = time.perf_counter()
            intake_bfa.local_path("daily_availability")
            resolve.append(time.perf_counter() - t0)
        requests_on_hit = len(server.requests)
    return {
        "rows": rows,
        "file_mb": path.stat().st_size / 1e6,
        "release_mb": sum(p.stat().st_size for p in release_dir.iterdir()) / 1e6,
        "build_s": build_s,
        "cold_read_s": cold_s,
        "warm_read_ms": 1e3 * statistics.median(ours),
        "pandas_read_parquet_ms": 1e3 * statistics.median(plain),
        "ratio": statistics.median(ours) / statistics.median(plain),
        "resolve_on_hit_ms_median": 1e3 * statistics.median(resolve),
        "resolve_on_hit_ms_p95": 1e3 * sorted(resolve)[int(0.95 * len(resolve))],
        "network_requests_on_warm_reads": requests_on_hit,
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sample, few repeats")
    args = parser.parse_args()
    end = dt.date(2026, 11, 22)
    imports = bench_imports(5 if args.quick else 21)
    reads = bench_reads(3 if args.quick else 15, 60 if args.quick else 1000, end)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "imports": imports,
        "reads": reads,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "foundation.json").write_text(json.dumps(result, indent=1))
    m = imports["medians_ms"]
    print("| import (fresh process, median) | ms |\n|---|---:|")
    for name, value in m.items():
        print(f"| `{name}` | {value:.1f} |")
    print(
        f"\nextra cost of the intake_bfa consumer path over `import intake`: "
        f"{imports['extra_ms']:.1f} ms; plugin share of `import intake`: "
        f"{imports['plugin_share_of_import_intake_ms']:.1f} ms; heavy modules imported: "
        f"{imports['heavy_modules_imported']}"
    )
    print(
        f"\n{reads['rows']:,} rows, daily_availability.parquet {reads['file_mb']:.1f} MB "
        f"(build {reads['build_s']:.1f} s, cold download+read {reads['cold_read_s']:.2f} s)"
    )
    print("| warm read (median) | ms |\n|---|---:|")
    print(f"| `cat.daily_availability.read()` | {reads['warm_read_ms']:.1f} |")
    print(f"| `pandas.read_parquet(same file)` | {reads['pandas_read_parquet_ms']:.1f} |")
    print(
        f"\nratio {reads['ratio']:.3f}; resolution on a cache hit: median "
        f"{reads['resolve_on_hit_ms_median']:.3f} ms, p95 {reads['resolve_on_hit_ms_p95']:.3f} ms; "
        f"network requests during warm reads: {reads['network_requests_on_warm_reads']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
