"""Server memory under hostile SQL: peak RSS of ``bfa serve`` for a huge result.

Run:  python benchmarks/bench_serve_memory.py [--quick] [--baseline-src DIR]

The real ``bfa serve`` (default limits: 1 GB DuckDB memory, 64 MiB response cap,
10000 rows, 10 s, 4 SQL queries at once) serves a small synthetic sample; one
``POST /v1/sql`` asks for ``SELECT repeat('x', 200000) AS s FROM range(10000)``
(2 GB of strings, 10000 rows: within the row cap, 30x over the byte cap). Measured,
each on a fresh server (``VmHWM`` is a high-water mark): the RSS after start (the
baseline of this run), the peak RSS and the time to the answer for that request
alone and for 8 concurrent copies, and the bound the server is meant to keep,
``memory limit + response cap`` above its baseline. With ``--baseline-src DIR``
(a checkout of an earlier commit, e.g. ``git worktree add /tmp/old HEAD~1``) the
same request alone is also sent to that code's server, in the same run (its
8-copy run is skipped: it would build 4 results of ~6 GB at once). ``--quick``
(the slow group's smoke run) sends a 10x smaller request; nothing is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VERSION = "2026-11-23"
FULL_SQL = "SELECT repeat('x', 200000) AS s FROM range(10000)"
QUICK_SQL = "SELECT repeat('x', 20000) AS s FROM range(10000)"
MEMORY_LIMIT = 1 << 30
RESPONSE_CAP = 64 << 20


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (listed under the thread that started each)."""
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return [p for p in pids if "State:\tZ" not in Path(f"/proc/{p}/status").read_text()]


def _post(url: str, sql: str) -> tuple[int, float, str]:
    data = json.dumps({"sql": sql}).encode()
    request = urllib.request.Request(
        url + "/v1/sql", data=data, headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return response.status, time.perf_counter() - t0, "ok"
    except urllib.error.HTTPError as err:
        code = json.loads(err.read())["error"]["code"]
        return err.code, time.perf_counter() - t0, code


def _measure(env: dict, src: Path, sql: str, copies: int) -> dict:
    """A fresh server of the code in ``src``; ``copies`` concurrent requests; its RSS."""
    from intake_bfa.testing.serve_process import ServeProcess

    # -P: the code of PYTHONPATH, not of the working directory or an editable install.
    command = [sys.executable, "-P", "-m", "intake_bfa.cli", "serve", "--port", "0"]
    args = ["--version", VERSION, "--access-log", "off"]
    with ServeProcess(args, env=dict(env, PYTHONPATH=str(src)), command=command) as proc:
        pid = proc.proc.pid
        _post(proc.url, "SELECT 1")  # warm: the SQL connection exists before measuring
        start_kb = _rss_kb(pid, "VmHWM")
        answers: list[tuple[int, float, str]] = []
        threads = [
            threading.Thread(target=lambda: answers.append(_post(proc.url, sql)))
            for _ in range(copies)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak_kb = _rss_kb(pid, "VmHWM")
        workers = _children(pid)
        worker_kb = [_rss_kb(w, "VmHWM") for w in workers]
    return {
        "copies": copies,
        "baseline_mb": round(start_kb / 1024),
        "peak_mb": round(peak_kb / 1024),
        "growth_mb": round((peak_kb - start_kb) / 1024),
        # SQL runs in worker processes (intake_bfa.serve.sql_workers): their peaks too
        # (a worker killed or restarted after a failure is not counted).
        "workers": len(workers),
        "worker_peak_mb": round(max(worker_kb, default=0) / 1024),
        "answers": sorted({f"{s} {c}" for s, _, c in answers}),
        "slowest_s": round(max(t for _, t, _ in answers), 2),
    }


def bench(quick: bool, baseline_src: str | None) -> dict:
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-bench-serve-memory-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFA_")}
    env.pop("GITHUB_TOKEN", None)
    env.update(BFA_CACHE_DIR=str(work / "cache"), BFA_REPO=SAMPLE_REPO)
    samples = SampleReleases(work / "releases", n_symbols=40)
    samples.dated(VERSION)
    sql = QUICK_SQL if quick else FULL_SQL
    out: dict = {"sql": sql, "bound_mb": (MEMORY_LIMIT + RESPONSE_CAP) >> 20, "runs": {}}
    with ReleaseServer() as server:
        env["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[VERSION])
        out["runs"]["this code, alone"] = _measure(env, ROOT, sql, 1)
        out["runs"]["this code, 8 concurrent"] = _measure(env, ROOT, sql, 8)
        if baseline_src:
            old = Path(baseline_src).resolve()
            out["runs"]["baseline code, alone"] = _measure(env, old, sql, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller request")
    parser.add_argument("--baseline-src", help="also measure the server code of this checkout")
    args = parser.parse_args()
    res = bench(args.quick, args.baseline_src)
    res["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    res["cpus"] = os.cpu_count()
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "serve_memory.json").write_text(json.dumps(res, indent=1))
    print(f"{res['sql']}; bound: memory limit + response cap = {res['bound_mb']} MB\n")
    print("| run | baseline RSS (MB) | peak RSS (MB) | growth (MB) | growth / bound | answers "
          "| slowest (s) | SQL workers: count, largest peak RSS (MB) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for name, r in res["runs"].items():
        print(
            f"| {name} | {r['baseline_mb']} | {r['peak_mb']} | {r['growth_mb']} | "
            f"{r['growth_mb'] / res['bound_mb']:.2f} | {', '.join(r['answers'])} | "
            f"{r['slowest_s']} | {r['workers']}, {r['worker_peak_mb']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
