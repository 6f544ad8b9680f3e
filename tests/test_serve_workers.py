"""``bfa serve`` runs user SQL in memory-capped worker processes.

One value built outside DuckDB's buffer manager (a 1 GB string, a 200-million-element
list, a doubling recursive string) is not bounded by ``--memory-limit``; the worker's
``RLIMIT_DATA`` is. One real server for the module: 256 MB of DuckDB memory, an 8 MiB
response cap, 768 MiB per worker past its start-up footprint, 2 workers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.serve_process import ServeProcess

from .conftest import SERVE_SECRET, V_NEW, base_env

WORKER_MB = 768
TIMEOUT = 10.0

HOSTILE = {
    "long_string": "SELECT repeat('x', 1000000000) AS s",
    "long_list": "SELECT range(200000000) AS r",
    "doubling_recursion": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL "
        "SELECT n + 1, s || s FROM r WHERE n < 40) SELECT max(length(s)) AS m FROM r"
    ),
    "string_agg": (
        "SELECT length(string_agg(repeat('x', 1000), ',')) AS m FROM range(100000) a, range(100) b"
    ),
}


@pytest.fixture(scope="module")
def capped(serve_release, tmp_path_factory):
    cache = tmp_path_factory.mktemp("workers-cache")
    env = base_env(
        BFA_API_URL=serve_release.api_url,
        BFA_REPO=SAMPLE_REPO,
        BFA_CACHE_DIR=str(cache),
        GITHUB_TOKEN=SERVE_SECRET,
    )
    args = ["--data-version", V_NEW, "--access-log", "off", "--memory-limit", "256MB"]
    args += ["--max-response-bytes", str(8 << 20), "--sql-worker-memory", f"{WORKER_MB}MiB"]
    args += ["--timeout", str(TIMEOUT), "--max-concurrent-sql", "2"]
    with ServeProcess(args, env=env) as proc:
        yield proc
    assert proc.returncode == 0, "\n".join(proc.lines[-20:])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def workers(proc: ServeProcess) -> list[int]:
    """Process ids of the server's SQL workers (its children, alive)."""
    pids = []
    for task in Path(f"/proc/{proc.proc.pid}/task").iterdir():  # per spawning thread
        try:
            pids += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended
            continue
    return [p for p in pids if "State:\tZ" not in Path(f"/proc/{p}/status").read_text()]


def post(proc: ServeProcess, sql: str) -> tuple[int, dict]:
    data = json.dumps({"sql": sql}).encode()
    status, _, body = proc.get("/v1/sql", {"Content-Type": "application/json"}, data)
    return status, json.loads(body)


def test_workers_run_the_sql_with_a_memory_cap_and_no_token(capped):
    pids = workers(capped)
    assert len(pids) == 2
    for pid in pids:
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max data size"))
        cap = int(line.split()[3])  # the start-up footprint plus the allowance
        assert WORKER_MB << 20 < cap < (WORKER_MB << 20) + (8 << 30), line
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"GITHUB_TOKEN=" not in environ and SERVE_SECRET.encode() not in environ


@pytest.mark.parametrize("name", list(HOSTILE))
def test_one_huge_value_is_refused_and_the_server_stays_small(capped, name):
    baseline_kb = status_kb(capped.proc.pid, "VmHWM")
    t0 = time.monotonic()
    status, doc = post(capped, HOSTILE[name])
    elapsed = time.monotonic() - t0
    assert status == 422, doc
    assert doc["error"]["code"] in ("result_too_large", "query_timeout"), doc
    assert elapsed < TIMEOUT + 10  # answered, not built for minutes
    # The server process itself never holds the value (its peak grows by far less
    # than the 1 GB+ the query asked for).
    assert status_kb(capped.proc.pid, "VmHWM") - baseline_kb < 128 << 10
    # ... and keeps answering SQL, on the restarted worker too.
    for _ in range(3):
        status, doc = post(capped, "SELECT count(*) AS n FROM symbols")
        assert status == 200 and doc["rows"][0]["n"] > 0, doc


def test_a_worker_killed_from_outside_is_replaced(capped):
    for pid in workers(capped):
        os.kill(pid, 9)
    # At most one request per dead worker is refused while the pool notices.
    answers = [post(capped, "SELECT 42 AS x") for _ in range(4)]
    assert answers[-1] == (200, answers[-1][1]) and answers[-1][1]["rows"] == [{"x": 42}]
    for status, doc in answers:
        assert status == 200 or doc["error"]["code"] == "result_too_large", doc
    deadline = time.monotonic() + 60
    while len(workers(capped)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers(capped)) == 2
