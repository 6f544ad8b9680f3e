"""Query-server benchmark: ``bfa serve`` over loopback HTTP against the Python query API.

Run:  python benchmarks/bench_serve.py [--quick]

On the full-scale synthetic sample (1000 symbols since 2019-12-31, published by the
embedded local release server on 127.0.0.1), the real ``bfa serve`` runs in its own
process and answers snapshot (one date, JSON) and timeline (one symbol's whole
history, JSON) requests from a bounded closed-loop loader
(:mod:`intake_bfa.testing.loadgen`) with 1, 8 and 32 concurrent clients. The baseline,
in the same run and on the same cached files and questions, is the Python query API
called directly: 1, 8 or 32 threads, each with its own :class:`~intake_bfa.query.Query`,
each call returning a pandas DataFrame. Reported: throughput (requests/s), p50 and p99
latency, their ratios server/direct, and the server's peak RSS (``VmHWM``). Both sides
share this machine's cores with the load generator (2 cores here): the ratio, not the
absolute figure, is the result. The full run writes benchmarks/results/serve.json
(``--quick``: 100 symbols, fewer requests, writes nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VERSION = "2026-11-23"
CONCURRENCY = (1, 8, 32)


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _direct(version: str, calls: list, concurrency: int, requests: int) -> dict:
    """The query API in-process: ``concurrency`` threads, one Query each, bounded total."""
    from intake_bfa.query import Query

    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    queries = [Query(version) for _ in range(concurrency)]
    for q in queries:  # views created before timing, as the server's warm pool has them
        calls[0](q)

    def worker(q) -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            calls[i % len(calls)](q)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker, args=(q,)) for q in queries]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for q in queries:
        q.close()
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "throughput_rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(1e3 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "mean_ms": round(1e3 * statistics.fmean(ordered), 2),
    }


def bench(n_symbols: int, requests: int, pool_size: int) -> dict:
    from intake_bfa.query import Query
    from intake_bfa.testing.loadgen import run_load
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.serve_process import ServeProcess
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-serve-"))
    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ["BFA_REPO"] = SAMPLE_REPO
    for name in ("BFA_OFFLINE", "GITHUB_TOKEN"):
        os.environ.pop(name, None)
    samples = SampleReleases(work / "releases", n_symbols=n_symbols)
    samples.dated(VERSION)
    with ReleaseServer() as server:
        os.environ["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[VERSION])
        with Query(VERSION) as q:
            lo, hi = q.coverage
            span = (hi - lo).days
            dates = [lo + dt.timedelta(days=int(span * (0.5 + 0.5 * i / 19))) for i in range(20)]
            symbols = q.top(hi, n=10).symbol.tolist()
            da_bytes = q.path("daily_availability").stat().st_size
        env = dict(os.environ)
        args = ["--version", VERSION, "--access-log", "off", "--pool-size", str(pool_size)]
        results: dict = {"snapshot": {}, "timeline": {}}
        with ServeProcess(args, env=env) as proc:
            pid = proc.proc.pid
            rss_start_kb = _rss_kb(pid, "VmRSS")
            questions = {
                "snapshot": (
                    [f"/v1/snapshot?date={d}" for d in dates],
                    [lambda q, d=d: q.snapshot(d) for d in dates],
                ),
                "timeline": (
                    [f"/v1/timeline/{s}" for s in symbols],
                    [lambda q, s=s: q.timeline(s) for s in symbols],
                ),
            }
            for name, (paths, calls) in questions.items():
                run_load(proc.url, paths, concurrency=4, requests=len(paths) * 2)  # warm up
                for c in CONCURRENCY:
                    n = requests if c == 1 else requests * 2
                    http = run_load(proc.url, paths, concurrency=c, requests=n).summary()
                    assert set(http["statuses"]) == {200} and not http["errors"], http
                    direct = _direct(VERSION, calls, c, n)
                    results[name][c] = {
                        "server": http,
                        "direct": direct,
                        "throughput_ratio": round(
                            http["throughput_rps"] / direct["throughput_rps"], 3
                        ),
                        "p50_ratio": round(http["p50_ms"] / direct["p50_ms"], 2),
                        "p99_ratio": round(http["p99_ms"] / direct["p99_ms"], 2),
                    }
            peak_kb = _rss_kb(pid, "VmHWM")
    return {
        "n_symbols": n_symbols,
        "daily_availability_mb": da_bytes / 1e6,
        "coverage": [str(lo), str(hi)],
        "server_rss_after_start_mb": rss_start_kb / 1024,
        "server_peak_rss_mb": peak_kb / 1024,
        "pool_size": pool_size,
        "questions": results,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols, few requests")
    parser.add_argument(
        "--pool-size", type=int, default=8, help="bfa serve --pool-size (default 8, as bfa serve)"
    )
    args = parser.parse_args()
    res = bench(100 if args.quick else 1000, 40 if args.quick else 300, args.pool_size)
    res["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    res["python"] = sys.version.split()[0]
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        name = "serve.json" if args.pool_size == 8 else f"serve-pool{args.pool_size}.json"
        (RESULTS / name).write_text(json.dumps(res, indent=1))
    print(
        f"{res['n_symbols']} symbols ({res['coverage'][0]} .. {res['coverage'][1]}), "
        f"daily_availability.parquet {res['daily_availability_mb']:.1f} MB, {res['cpus']} CPUs; "
        f"--pool-size {res['pool_size']}; server RSS after start "
        f"{res['server_rss_after_start_mb']:.0f} MB, "
        f"peak {res['server_peak_rss_mb']:.0f} MB\n"
    )
    print("| question | clients | server req/s | direct req/s | ratio | server p50 / p99 (ms) "
          "| direct p50 / p99 (ms) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, by_c in res["questions"].items():
        for c, r in by_c.items():
            s, d = r["server"], r["direct"]
            print(
                f"| {name} | {c} | {s['throughput_rps']:.0f} | {d['throughput_rps']:.0f} | "
                f"{r['throughput_ratio']:.2f} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | "
                f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
