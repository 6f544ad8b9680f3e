"""``bfa serve`` under hostile SQL: bounded memory for huge results, no server paths.

One real server (subprocess, port 0) for the module, with small limits: 256 MB of
DuckDB memory, an 8 MiB response cap, 50000 rows, 10 s; it also serves
``availability_db`` (``--with-database``), whose attached path is one more thing to hide.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.serve_process import ServeProcess

from .conftest import V_NEW, base_env

MEMORY_LIMIT_MB = 256
RESPONSE_CAP = 8 << 20
TIMEOUT = 10.0
#: 40000 rows of 50 kB: 2 GB if built whole; within the row cap, 250x over the byte cap.
HUGE = "SELECT repeat('x', 50000) AS s FROM range(40000)"


@pytest.fixture(scope="module")
def small(serve_release, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hostile-cache")
    env = base_env(
        BFA_API_URL=serve_release.api_url, BFA_REPO=SAMPLE_REPO, BFA_CACHE_DIR=str(cache)
    )
    args = ["--data-version", V_NEW, "--with-database", "--access-log", "off"]
    args += ["--memory-limit", f"{MEMORY_LIMIT_MB}MB", "--max-response-bytes", str(RESPONSE_CAP)]
    args += ["--max-rows", "50000", "--timeout", str(TIMEOUT), "--max-concurrent-sql", "2"]
    with ServeProcess(args, env=env) as proc:
        proc.cache = cache
        assert proc.get("/v1/sql?q=SELECT%201")[0] == 200  # the SQL connection exists
        yield proc
    assert proc.returncode == 0, "\n".join(proc.lines[-20:])


def vm_kb(proc: ServeProcess, field: str) -> int:
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def post(proc: ServeProcess, sql: str, **extra) -> tuple[int, bytes]:
    data = json.dumps({"sql": sql, **extra}).encode()
    status, _, body = proc.get("/v1/sql", {"Content-Type": "application/json"}, data)
    return status, body


def code_of(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


# --- bounded memory (first in the module: VmHWM is a high-water mark) ---------------------------


def test_huge_result_is_refused_early_within_the_memory_bound(small):
    baseline_kb = vm_kb(small, "VmHWM")  # started, warm, nothing big asked yet
    answers: list[tuple[int, bytes, float]] = []

    def one() -> None:
        t0 = time.monotonic()
        status, body = post(small, HUGE)
        answers.append((status, body, time.monotonic() - t0))

    one()
    alone_kb = vm_kb(small, "VmHWM")
    threads = [threading.Thread(target=one) for _ in range(4)]  # 2 run, 2 wait for a slot
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak_kb = vm_kb(small, "VmHWM")
    for status, body, elapsed in answers:
        assert status == 422 and code_of(body) == "result_too_large", body[:300]
        assert elapsed < 2 * TIMEOUT + 5  # answered, not built for minutes
    # One query may hold its memory limit plus the response cap (and one DuckDB vector
    # of 2048 rows, 100 MB here, counted in the margin); two run at once.
    bound_kb = (MEMORY_LIMIT_MB << 10) + (RESPONSE_CAP >> 10) + (256 << 10)
    assert alone_kb - baseline_kb < bound_kb, (baseline_kb, alone_kb)
    assert peak_kb - baseline_kb < 2 * bound_kb, (baseline_kb, peak_kb)


def test_big_but_allowed_results_still_arrive_whole(small):
    status, body = post(small, "SELECT range AS i, repeat('x', 100) AS s FROM range(20000)")
    assert status == 200
    doc = json.loads(body)
    assert doc["row_count"] == 20000 and len(doc["rows"]) == 20000
    assert doc["rows"][-1] == {"i": 19999, "s": "x" * 100}
    status, body = post(small, "SELECT range AS i FROM range(30000)", format="csv")
    assert status == 200 and body.decode().splitlines() == ['"i"', *map(str, range(30000))]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_body_over_the_cap_is_refused_in_every_format(small, fmt):
    # 11 MB of CSV and 30 MB of JSON from 0.25 MB of Arrow data: refused while written.
    flags = ", ".join(f"range % {k + 2} = 0 AS flag_{k:02}" for k in range(40))
    sql = f"SELECT {flags} FROM range(50000)"
    status, body = post(small, sql, format=fmt)
    if fmt == "parquet":  # compresses to a few kB: allowed
        assert status == 200
    else:
        assert status == 422 and code_of(body) == "result_too_large", body[:300]


def test_the_server_keeps_answering_after_refusals(small):
    for _ in range(3):
        assert post(small, HUGE)[0] == 422
    status, body = post(small, "SELECT count(*) AS n FROM symbols")
    assert status == 200 and json.loads(body)["rows"][0]["n"] > 0


# --- no server paths ----------------------------------------------------------------------------

INTROSPECTION = [
    "SELECT value FROM duckdb_settings() WHERE name = 'allowed_paths'",
    "SELECT name, value FROM duckdb_settings()",
    "SELECT current_setting('allowed_paths') AS p",
    "SELECT current_setting('temp_directory') AS p",
    "SELECT current_setting('home_directory') AS p",
    "SELECT current_setting('extension_directory') AS p",
    "SELECT current_setting('secret_directory') AS p",
    "SELECT current_setting('file_search_path') AS p",
    "SELECT hex(current_setting('allowed' || '_paths')) AS p",
    "SELECT sql FROM duckdb_views()",
    "FROM duckdb_views",
    "SELECT replace(sql, '/', '|') FROM duckdb_views()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_functions() WHERE function_name = 'read_parquet'",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT sql FROM sqlite_master",
    "SELECT view_definition FROM information_schema.views",
    "SELECT * FROM pg_catalog.pg_views",
    "SELECT * FROM db.information_schema.tables",
    "SELECT * FROM system.main.duckdb_views()",
    "FROM query('SELECT sql FROM duckdb_views()')",
    "FROM query_table('sqlite_master')",
    "SUMMARIZE SELECT * FROM duckdb_settings()",
    "SELECT * FROM symbols WHERE symbol IN (SELECT value FROM duckdb_settings())",
    "WITH sqlite_master AS (SELECT * FROM sqlite_master) SELECT * FROM sqlite_master",
    "SELECT * FROM (WITH sqlite_master AS (SELECT 1) SELECT 1), sqlite_master",
    "SELECT getenv('HOME') AS h",
    "SELECT * FROM parquet_metadata('x')",
]


def assert_no_paths(proc: ServeProcess, body: bytes) -> None:
    cache = str(proc.cache)
    text = body.decode("utf-8", "replace")
    for secret in (cache, str(Path(cache).parent)):
        assert secret not in text, text[:500]
        assert secret.encode().hex() not in text.lower(), text[:500]


@pytest.mark.parametrize("sql", INTROSPECTION)
def test_introspection_never_shows_server_paths(small, sql):
    for database in (False, True):
        status, body = post(small, sql, database=database)
        assert status in (400, 403), (status, body[:300])
        assert_no_paths(small, body)
        status, _, body = small.get(
            f"/v1/sql?database={str(database).lower()}&q={urllib.parse.quote(sql)}"
        )
        assert status in (400, 403) and json.loads(body)["error"]["message"]
        assert_no_paths(small, body)


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW TABLES",
        "SHOW ALL TABLES",
        "SHOW databases",
        "DESCRIBE daily_availability",
        "SUMMARIZE symbols",
        "SELECT * FROM db.daily_symbol_counts LIMIT 3",
        "WITH a AS (SELECT * FROM symbols) SELECT count(*) FROM a",
        "WITH RECURSIVE r AS (SELECT 1 AS x UNION ALL SELECT x + 1 FROM r WHERE x < 3) FROM r",
        "SELECT * FROM range(3), generate_series(1, 2), unnest([1, 2])",
    ],
)
def test_ordinary_sql_still_runs_and_shows_no_paths(small, sql):
    status, body = post(small, sql, database=True)
    assert status == 200, body[:300]
    assert_no_paths(small, body)


def test_errors_are_still_scrubbed(small):
    # A message that echoes a value holding the cache path shows <cache> instead.
    sql = f"SELECT CAST('{small.cache}/x' AS INTEGER)"
    status, body = post(small, sql)
    assert status == 400 and b"<cache>" in body, body[:300]
    assert_no_paths(small, body)


@pytest.mark.slow
def test_memory_benchmark_script_runs():
    """benchmarks/bench_serve_memory.py --quick: refused early, alone and 8 at once."""
    from .conftest import run_benchmark

    stdout = run_benchmark("bench_serve_memory.py")
    rows = [line for line in stdout.splitlines() if line.startswith("| this code")]
    assert len(rows) == 2 and all("422 result_too_large" in r for r in rows), stdout
