"""Download-engine benchmarks: throughput vs curl, peak memory, cache-hit costs.

Run:  python benchmarks/bench_download.py [--quick]

* Verified download (stream to .part, sha256, fsync, os.replace) of a 200 MB asset
  from the local release server vs ``curl -L`` of the same URL, interleaved runs,
  throughput ratio (goal: >= 0.8).
* Peak RSS of a process doing that download, minus the same process idle (goal: < 100 MB).
* Warm cache hit: resolving ``bfa://daily_availability`` to a local path (goal: < 1 ms).
* Cold process: ``bfa fetch`` of a cached asset vs ``python -c "import intake"`` (ratio).

Only 127.0.0.1 is contacted. Results: printed as Markdown and written to
benchmarks/results/download.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# ru_maxrss survives exec (it would report the parent's peak): read VmHWM after
# resetting it through /proc/self/clear_refs instead.
RSS_CHILD = """
import json, sys
from pathlib import Path
from intake_bfa.config import get_settings
from intake_bfa.fetch import download
def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
url, dest, size, sha = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
idle = hwm_kb()
download([url], dest, get_settings(), size=size, sha256=sha)
print(json.dumps({"idle_kb": idle, "peak_kb": hwm_kb()}))
"""

# The server runs in its own process: in-process, its event loop would compete with
# the downloader for the GIL, which curl (a separate process) never has to.
SERVER_CHILD = """
import sys, time
from intake_bfa.testing.server import ReleaseServer
server = ReleaseServer(chunk_size=1 << 20).start()
server.add_release("bench/blob", "data-2026-11-23", {"blob.bin": sys.argv[1]})
print(server.api_url, server.web_url, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin
server.stop()
"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _engine_download(url: str, dest: Path, size: int, sha: str) -> float:
    from intake_bfa.config import get_settings
    from intake_bfa.fetch import download

    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    download([url], dest, get_settings(), size=size, sha256=sha)
    return time.perf_counter() - started


def _curl_download(url: str, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-L", "-o", str(dest), url], check=True)
    return time.perf_counter() - started


def bench_throughput(work: Path, size_mb: int, repeats: int) -> dict:
    blob = work / "blob.bin"
    with open(blob, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    size = blob.stat().st_size
    sha = _sha256(blob)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CHILD, str(blob)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        api_url, web_url = server.stdout.readline().split()
        url = f"{web_url}/bench/blob/releases/download/data-2026-11-23/blob.bin"
        os.environ["BFA_API_URL"] = api_url
        ours, curl = [], []
        for _ in range(repeats):
            ours.append(_engine_download(url, work / "ours.bin", size, sha))
            curl.append(_curl_download(url, work / "curl.bin"))
        assert _sha256(work / "curl.bin") == sha
        rss = json.loads(
            subprocess.run(
                [sys.executable, "-c", RSS_CHILD, url, str(work / "rss.bin"), str(size), sha],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    mb = size / 1e6
    return {
        "size_mb": mb,
        "ours_mb_s": mb / statistics.median(ours),
        "curl_mb_s": mb / statistics.median(curl),
        "ratio": statistics.median(curl) / statistics.median(ours),
        "rss_idle_mb": rss["idle_kb"] / 1024,
        "rss_peak_mb": rss["peak_kb"] / 1024,
        "rss_added_mb": (rss["peak_kb"] - rss["idle_kb"]) / 1024,
        "repeats": repeats,
    }


def bench_cache_hits(work: Path, repeats: int) -> dict:
    import fsspec

    import intake_bfa
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ["BFA_REPO"] = SAMPLE_REPO
    samples = SampleReleases(work / "releases", n_symbols=60)
    version = "2021-07-01"
    with ReleaseServer() as server:
        os.environ["BFA_API_URL"] = server.api_url
        samples.publish(server, SAMPLE_REPO, versions=[version])
        intake_bfa.local_path("daily_availability")
        fs = fsspec.filesystem("bfa")
        fs.info("daily_availability")
        server.clear_requests()
        hits = []
        for _ in range(500):
            started = time.perf_counter()
            fs.info("daily_availability")
            hits.append(time.perf_counter() - started)
        network = len(server.requests)
        cli, base = [], []
        env = dict(os.environ)
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "intake_bfa.cli", "fetch", "daily_availability",
                 "--version", version, "--quiet"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            cli.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import intake"], env=env, check=True)
            base.append(time.perf_counter() - started)
        network += len(server.requests)
    return {
        "bfa_url_hit_ms_median": 1e3 * statistics.median(hits),
        "bfa_url_hit_ms_p95": 1e3 * sorted(hits)[int(0.95 * len(hits))],
        "bfa_fetch_cached_ms": 1e3 * statistics.median(cli),
        "import_intake_ms": 1e3 * statistics.median(base),
        "fetch_vs_import_intake": statistics.median(cli) / statistics.median(base),
        "network_requests_on_hits": network,
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 MB asset, few repeats")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bfa-bench-dl-"))
    try:
        os.environ.pop("BFA_OFFLINE", None)
        os.environ["BFA_CACHE_DIR"] = str(work / "cache")
        throughput = bench_throughput(work, 20 if args.quick else 200, 2 if args.quick else 5)
        hits = bench_cache_hits(work, 3 if args.quick else 11)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "throughput": throughput,
        "cache_hits": hits,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "download.json").write_text(json.dumps(result, indent=1))
    t, h = throughput, hits
    print(f"| {t['size_mb']:.0f} MB from 127.0.0.1 (median of {t['repeats']}) | MB/s |")
    print("|---|---:|")
    print(f"| intake-bfa verified download (sha256 + fsync + replace) | {t['ours_mb_s']:.0f} |")
    print(f"| curl -L | {t['curl_mb_s']:.0f} |")
    print(f"\nthroughput ratio ours/curl: {t['ratio']:.2f}")
    print(
        f"peak RSS: idle {t['rss_idle_mb']:.0f} MB, during download {t['rss_peak_mb']:.0f} MB "
        f"(+{t['rss_added_mb']:.1f} MB)"
    )
    print(
        f"bfa:// cache hit (fs.info): median {h['bfa_url_hit_ms_median']:.3f} ms, "
        f"p95 {h['bfa_url_hit_ms_p95']:.3f} ms; network requests: {h['network_requests_on_hits']}"
    )
    print(
        f"cold `bfa fetch` on a cached asset: {h['bfa_fetch_cached_ms']:.0f} ms vs "
        f"`python -c 'import intake'` {h['import_intake_ms']:.0f} ms: "
        f"ratio {h['fetch_vs_import_intake']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
