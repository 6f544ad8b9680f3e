"""``bfa serve`` over real HTTP on 127.0.0.1: the real CLI in a subprocess, real data.

One server process per module (started with ``--port 0``) serves two pinned versions
of the sample release, fetched at start from the local release server with a
GITHUB_TOKEN set; answers are compared with the Python query API on the same cache.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from intake_bfa.config import get_settings
from intake_bfa.query import Query
from intake_bfa.testing.loadgen import run_load
from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.serve_process import ServeProcess

from .conftest import ROOT, V_NEW, V_OLD, base_env, run_cli
from .conftest import SERVE_SECRET as SECRET

DAY = "2021-03-04"


def local_query(api, version: str) -> Query:
    settings = get_settings(
        repo=SAMPLE_REPO, api_url="http://127.0.0.1:9", cache_dir=api.cache, offline=True
    )
    return Query(version, settings=settings)


def get_json(api, path: str, **headers: str):
    status, head, body = api.get(path, headers)
    assert head["content-type"].startswith("application/json"), (path, head)
    return status, head, json.loads(body)


def error_of(api, path: str, status: int, code: str, data: bytes | None = None, **headers):
    got, head, body = api.get(path, headers, data=data)
    assert got == status, (path, got, body[:300])
    assert head["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert err["code"] == code and err["status"] == status and err["message"], err
    return err


# --- catalogue ---------------------------------------------------------------------------------


def test_health_and_versions_are_pinned(api):
    status, _, health = get_json(api, "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["default_version"] == V_NEW and health["versions"] == [V_NEW, V_OLD]
    status, _, versions = get_json(api, "/v1/versions")
    by = {v["version"]: v for v in versions["versions"]}
    assert versions["default"] == V_NEW
    assert by[V_OLD]["coverage"]["end"] < by[V_NEW]["coverage"]["end"]
    served = {"daily_availability", "symbols", "volume_rankings", "availability_events"}
    assert set(by[V_NEW]["datasets"]) == served
    status, _, datasets = get_json(api, "/v1/datasets")
    names = {d["name"]: d for d in datasets["datasets"]}
    assert names["daily_availability"]["served"] is True
    assert any(c["name"] == "available" for c in names["daily_availability"]["columns"])


def test_openapi_schema_lists_every_endpoint(api):
    status, _, schema = get_json(api, "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {"/health", "/v1/versions", "/v1/snapshot", "/v1/timeline/{symbol}"} <= paths
    assert {"/v1/universe", "/v1/sql"} <= paths
    assert set(schema["paths"]["/v1/sql"]) == {"get", "post"}
    # Every error status is documented with the JSON error model.
    assert {"400", "403", "404", "422", "429"} <= set(
        schema["paths"]["/v1/sql"]["get"]["responses"]
    )


# --- answers ------------------------------------------------------------------------------------


def test_snapshot_equals_the_query_api(api):
    status, head, doc = get_json(api, f"/v1/snapshot?date={DAY}")
    assert status == 200 and head["x-bfa-version"] == V_NEW and doc["version"] == V_NEW
    with local_query(api, V_NEW) as q:
        expected = q.snapshot(DAY)
    assert doc["row_count"] == len(expected) == int(head["x-bfa-rows"]) > 0
    assert [r["symbol"] for r in doc["rows"]] == expected.symbol.tolist()
    assert [c["name"] for c in doc["columns"]] == list(expected.columns)
    assert {r["date"] for r in doc["rows"]} == {DAY}
    assert head["cache-control"] == "no-cache"  # the default version moves with restarts


def test_formats_csv_and_parquet_hold_the_same_rows(api):
    _, _, doc = get_json(api, f"/v1/snapshot?date={DAY}&quote=USDT")
    status, head, body = api.get(f"/v1/snapshot?date={DAY}&quote=USDT&format=csv")
    assert status == 200 and head["content-type"].startswith("text/csv")
    assert 'filename="snapshot-2021-03-04.csv"' in head["content-disposition"]
    csv_table = pcsv.read_csv(io.BytesIO(body))
    status, head, body = api.get(
        f"/v1/snapshot?date={DAY}&quote=USDT", {"Accept": "application/vnd.apache.parquet"}
    )
    assert status == 200 and head["content-type"] == "application/vnd.apache.parquet"
    parquet_table = pq.read_table(io.BytesIO(body))
    symbols = [r["symbol"] for r in doc["rows"]]
    assert csv_table.column("symbol").to_pylist() == symbols
    assert parquet_table.column("symbol").to_pylist() == symbols
    assert parquet_table.schema.field("date").type == pa.date32()
    assert all(q == "USDT" for q in parquet_table.column("quote_asset").to_pylist())


def test_timeline_pinned_version_and_window(api):
    path = f"/v1/timeline/BTCUSDT?start=2021-01-01&end=2021-01-31&version={V_OLD}"
    status, head, doc = get_json(api, path)
    assert status == 200 and head["x-bfa-version"] == V_OLD
    assert head["cache-control"] == "public, max-age=31536000, immutable"
    with local_query(api, V_OLD) as q:
        expected = q.timeline("BTCUSDT", "2021-01-01", "2021-01-31")
    assert doc["row_count"] == 31 == len(expected)
    assert [r["available"] for r in doc["rows"]] == expected.available.tolist()
    # The whole coverage by default: the old version ends earlier than the new one.
    _, _, old = get_json(api, f"/v1/timeline/BTCUSDT?version={V_OLD}")
    _, _, new = get_json(api, "/v1/timeline/BTCUSDT")
    assert old["rows"][-1]["date"] < new["rows"][-1]["date"]


def test_universe_equals_the_query_api(api):
    path = "/v1/universe?start=2021-01-01&end=2021-03-31&min_volume=1000000&quote=USDT"
    status, _, doc = get_json(api, path)
    assert status == 200
    with local_query(api, V_NEW) as q:
        expected = q.universe("2021-01-01", "2021-03-31", min_volume=1e6, quote="USDT")
    assert [r["symbol"] for r in doc["rows"]] == expected.symbol.tolist()
    _, _, any_day = get_json(api, "/v1/universe?start=2021-01-01&end=2021-03-31&every_day=false")
    assert any_day["row_count"] >= doc["row_count"]


def test_universe_by_contract_equals_the_query_api(api):
    path = "/v1/universe?start=2020-01-01&end=2021-06-30&every_day=false&by=contract"
    status, _, doc = get_json(api, path)
    assert status == 200
    with local_query(api, V_NEW) as q:
        expected = q.universe("2020-01-01", "2021-06-30", every_day=False, by="contract")
    got = [(r["symbol"], r["ticker"], r["predecessor"], r["successor"]) for r in doc["rows"]]
    want = expected[["symbol", "ticker", "predecessor", "successor"]].astype(object)
    assert got == [tuple(None if v != v else v for v in row) for row in want.to_numpy()]
    assert ("BNXUSDT", "BNXUSDT", "BNXUSDTSETTLED", None) in got
    _, _, schema = get_json(api, "/openapi.json")
    (by,) = [p for p in schema["paths"]["/v1/universe"]["get"]["parameters"] if p["name"] == "by"]
    assert by["schema"]["default"] == "symbol"


# --- SQL ----------------------------------------------------------------------------------------


def test_sql_get_and_post(api):
    q = urllib.parse.quote("SELECT count(*) AS n FROM daily_availability WHERE available")
    status, head, doc = get_json(api, f"/v1/sql?q={q}&version={V_OLD}")
    assert status == 200 and head["x-bfa-version"] == V_OLD
    with local_query(api, V_OLD) as local:
        expected = local.sql("SELECT count(*) AS n FROM daily_availability WHERE available")
    assert doc["rows"] == [{"n": int(expected.n[0])}]
    body = json.dumps({"sql": "SELECT symbol FROM symbols ORDER BY 1 LIMIT 3", "format": "csv"})
    status, head, raw = api.get("/v1/sql", {"Content-Type": "application/json"}, body.encode())
    assert status == 200 and raw.decode().splitlines()[0] == '"symbol"'
    assert len(raw.decode().splitlines()) == 4
    # Values JSON cannot hold: NaN and infinities become null; decimals, dates, blobs are kept.
    sql = "SELECT 'nan'::DOUBLE a, 'inf'::DOUBLE b, 1.5 c, DATE '2021-01-02' d, 'ab'::BLOB e"
    _, _, doc = get_json(api, "/v1/sql?q=" + urllib.parse.quote(sql))
    assert doc["rows"] == [{"a": None, "b": None, "c": 1.5, "d": "2021-01-02", "e": "YWI="}]
    # Integers beyond 64 bits stay exact; NaN inside a list becomes null too.
    sql = "SELECT 170141183460469231731687303715884105727::HUGEINT h, [1.5, 'nan'::DOUBLE] l"
    status, _, doc = get_json(api, "/v1/sql?q=" + urllib.parse.quote(sql))
    assert status == 200
    assert doc["rows"] == [{"h": 170141183460469231731687303715884105727, "l": [1.5, None]}]


@pytest.mark.parametrize(
    ("sql", "status", "code"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", 403, "forbidden"),
        ("SELECT * FROM glob('/*')", 403, "forbidden"),
        ("SELECT * FROM read_parquet('/etc/hostname')", 403, "forbidden"),
        ("ATTACH '/tmp/x.duckdb' AS x", 400, "invalid_query"),
        ("COPY symbols TO '/tmp/leak.csv'", 400, "invalid_query"),
        ("INSTALL httpfs", 400, "invalid_query"),
        ("SET enable_external_access = true", 400, "invalid_query"),
        ("CREATE TABLE t AS SELECT 1", 400, "invalid_query"),
        ("CONNECT", 400, "invalid_query"),  # found by fuzzing: DuckDB raised ValueError
        ("SELECT 1; SELECT 2", 400, "invalid_query"),
        ("SELEC * FROM symbols", 400, "invalid_query"),
        ("SELECT * FROM no_such_table", 400, "invalid_query"),
        ("SELECT getenv('GITHUB_TOKEN')", 403, "forbidden"),  # settings are private
        ("SELECT * FROM daily_availability", 422, "result_too_large"),
        ("SELECT count(*) FROM range(1000000000000)", 422, "query_timeout"),
        ("SELECT " + "1+" * 6000 + "1", 413, "sql_too_long"),
    ],
)
def test_sql_refusals_are_json_4xx(api, sql, status, code):
    error_of(api, "/v1/sql?q=" + urllib.parse.quote(sql), status, code)


def test_sql_database_needs_the_flag(api):
    error_of(api, "/v1/sql?database=true&q=SELECT%201", 400, "invalid_query")


def test_server_survives_refusals_and_keeps_answering(api):
    read = urllib.parse.quote("SELECT * FROM read_csv('/etc/passwd')")
    slow = urllib.parse.quote("SELECT count(*) FROM range(1000000000000)")
    for _ in range(3):
        error_of(api, f"/v1/sql?q={read}", 403, "forbidden")
        error_of(api, f"/v1/sql?q={slow}", 422, "query_timeout")
    status, _, doc = get_json(api, "/v1/sql?q=" + urllib.parse.quote("SELECT 42 AS x"))
    assert status == 200 and doc["rows"] == [{"x": 42}]


# --- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/snapshot", 422, "invalid_parameter"),
        ("/v1/snapshot?date=yesterday", 422, "invalid_parameter"),
        ("/v1/snapshot?date=2021-02-30", 422, "invalid_parameter"),
        ("/v1/snapshot?date=2031-01-01", 400, "invalid_query"),
        ("/v1/snapshot?date=2021-03-04&format=xml", 422, "invalid_parameter"),
        ("/v1/snapshot?date=2021-03-04&kind=spot", 422, "invalid_parameter"),
        ("/v1/snapshot?date=2021-03-04&quote=XYZ", 400, "invalid_query"),
        ("/v1/snapshot?date=2021-03-04&quote=%27%3B--", 422, "invalid_parameter"),
        ("/v1/snapshot?date=2021-03-04&version=2021-06-27", 404, "not_found"),
        ("/v1/snapshot?date=2021-03-04&version=..%2F..%2Fetc", 404, "not_found"),
        ("/v1/timeline/BTCUSDX", 404, "unknown_symbol"),
        ("/v1/timeline/BTC%2F..%2Fx", 404, "not_found"),
        ("/v1/timeline/BTCUSDT?start=2021-03-01&end=2021-02-01", 400, "invalid_query"),
        ("/v1/universe?start=2021-01-01", 422, "invalid_parameter"),
        ("/v1/universe?start=2021-01-01&end=2021-02-01&min_volume=-1", 422, "invalid_parameter"),
        ("/v1/universe?start=2021-01-01&end=2021-02-01&min_volume=nan", 422, "invalid_parameter"),
        ("/v1/universe?start=2021-01-01&end=2021-02-01&on=2021-03-01", 400, "invalid_query"),
        ("/v1/universe?start=2021-01-01&end=2021-02-01&by=ticker", 422, "invalid_parameter"),
        ("/v1/sql", 422, "invalid_parameter"),
        ("/v1/sql?q=", 422, "invalid_parameter"),
        ("/v1/nothing", 404, "not_found"),
    ],
)
def test_malformed_requests_get_json_4xx(api, path, status, code):
    error_of(api, path, status, code)


def test_malformed_bodies_and_methods(api):
    json_type = {"Content-Type": "application/json"}
    error_of(api, "/v1/sql", 422, "invalid_parameter", b"{not json", **json_type)
    error_of(api, "/v1/sql", 422, "invalid_parameter", b'{"sql": 5}', **json_type)
    error_of(
        api, "/v1/sql", 422, "invalid_parameter", b'{"sql": "SELECT 1", "format": "x"}', **json_type
    )
    error_of(api, "/v1/snapshot?date=2021-03-04", 405, "method_not_allowed", b"{}", **json_type)


def test_symbols_in_any_script(api):
    status, _, doc = get_json(api, "/v1/timeline/" + urllib.parse.quote("币安人生USDT"))
    with local_query(api, V_NEW) as q:
        assert status == 200 and doc["row_count"] == len(q.timeline("币安人生USDT")) > 0
    _, _, csv_body = api.get("/v1/timeline/" + urllib.parse.quote("币安人生USDT") + "?format=csv")
    assert "币安人生USDT" in csv_body.decode("utf-8")


def test_unknown_symbol_suggests_the_real_spelling(api):
    err = error_of(api, "/v1/timeline/btcusd", 404, "unknown_symbol")
    assert "BTCUSDT" in err["suggestions"]


# --- logs and secrets ---------------------------------------------------------------------------


def test_access_log_is_structured_and_redacted(api):
    status, head, _ = api.get("/health?access_token=abc123&x=1", {"X-Request-ID": "req-42"})
    assert status == 200 and head["x-request-id"] == "req-42"
    api.get(f"/v1/snapshot?date={DAY}&version={V_OLD}")
    api.get("/v1/timeline/NOPE1")
    wait_for(lambda: len([r for r in api.access_records() if r["path"] == "/v1/timeline/NOPE1"]))
    records = api.access_records()
    mine = next(r for r in records if r["request_id"] == "req-42")
    assert mine["query"] == "access_token=%2A%2A%2A&x=1" and "abc123" not in json.dumps(records)
    snap = [r for r in records if r["path"] == "/v1/snapshot" and r["version"] == V_OLD][-1]
    assert snap["status"] == 200 and snap["bytes"] > 0 and snap["duration_ms"] > 0
    assert snap["method"] == "GET" and snap["client"].startswith("127.0.0.1:")
    assert [r for r in records if r["path"] == "/v1/timeline/NOPE1"][-1]["status"] == 404
    assert {"ts", "request_id", "user_agent"} <= set(snap)


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_token_is_never_exposed(api, serve_release):
    # The token was sent to the API at start (proof the server had it)...
    assert any(SECRET in str(r.headers) for r in serve_release.requests if r.origin == "api")
    # ...and no endpoint, error or log line shows it.
    bodies = []
    for path in ["/health", "/v1/versions", "/v1/datasets", "/openapi.json", "/docs",
                 "/v1/sql?q=SELECT%20*%20FROM%20duckdb_settings()",
                 "/v1/sql?q=SELECT%20getenv('GITHUB_TOKEN')",
                 "/v1/snapshot?date=bad", "/v1/nothing"]:  # fmt: skip
        _, head, body = api.get(path)
        bodies.append(json.dumps(head) + body.decode("utf-8", "replace"))
    assert SECRET not in "\n".join(bodies)
    assert SECRET not in "\n".join(api.lines)


# --- load ---------------------------------------------------------------------------------------


def test_bounded_load_at_32_clients_all_answered(api):
    paths = [f"/v1/snapshot?date=2021-0{m}-1{m}" for m in range(1, 7)]
    paths += ["/v1/timeline/BTCUSDT", f"/v1/timeline/ETHUSDT?version={V_OLD}"]
    result = run_load(api.url, paths, concurrency=32, requests=400)
    assert result.errors == {} and result.statuses == {200: 400}, result.summary()
    assert len(result.latencies) == 400 and result.bytes > 0
    status, _, health = get_json(api, "/health")
    assert status == 200 and health["status"] == "ok"


# --- the command ---------------------------------------------------------------------------------


def test_offline_with_nothing_cached_is_a_one_line_error(tmp_path):
    out = run_cli("serve", "--offline", "--port", "0", env={"BFA_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bfa: error:") and "cache" in lines[0].lower()


def test_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run_cli("serve", "--offline", "--port", str(port))
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr


@pytest.mark.parametrize(
    "args", [["--max-rows", "0"], ["--timeout", "-1"], ["--port", "70000"], ["--port", "x"]]
)
def test_bad_options_are_usage_errors(args):
    out = run_cli("serve", *args)
    assert out.returncode == 2 and "bfa serve: error:" in out.stderr


def test_offline_serves_what_is_cached_and_stops_cleanly(api, serve_release):
    env = base_env(
        BFA_CACHE_DIR=str(api.cache), BFA_REPO=SAMPLE_REPO, BFA_API_URL="http://127.0.0.1:9"
    )
    before = len(serve_release.requests)
    with ServeProcess(
        ["--offline", "--data-version", V_OLD, "--access-log", "off"], env=env
    ) as proc:
        status, head, _ = proc.get(f"/v1/snapshot?date={DAY}")
        assert status == 200 and head["x-bfa-version"] == V_OLD
    assert proc.returncode == 0
    assert len(serve_release.requests) == before  # no request at start or while serving
    assert not proc.access_records()


@contextmanager
def one_slot_taken(api, *limit: str):
    """An offline server with ``limit`` (e.g. ``--pool-size 1``) whose only slot a 3 s query
    holds; yields ``(server, thread of that query)``."""
    env = base_env(BFA_CACHE_DIR=str(api.cache), BFA_REPO=SAMPLE_REPO)
    args = ["--offline", "--data-version", V_OLD, "--access-log", "off", *limit]
    args += ["--queue-timeout", "0.2", "--timeout", "3"]
    slow = "/v1/sql?q=" + urllib.parse.quote("SELECT count(*) FROM range(1000000000000)")
    with ServeProcess(args, env=env) as proc:
        first = threading.Thread(target=proc.get, args=(slow,))
        first.start()
        time.sleep(0.5)  # the slow query now holds the only slot, for 3 s
        yield proc, first


@pytest.mark.slow  # ~5 s of concurrent queries
def test_busy_sql_gets_429_with_retry_after(api):
    """One SQL slot, taken by a slow query: the next SQL request waits, then gets 429."""
    with one_slot_taken(api, "--max-concurrent-sql", "1") as (proc, slow):
        status, head, body = proc.get("/v1/sql?q=SELECT%201")
        assert status == 429 and head["retry-after"] == "1", body
        assert json.loads(body)["error"]["code"] == "busy"
        # Snapshots do not queue behind SQL.
        assert proc.get(f"/v1/snapshot?date={DAY}")[0] == 200
        slow.join()
        assert proc.get("/v1/sql?q=SELECT%201")[0] == 200  # the slot is free again


@pytest.mark.slow  # ~6 s of concurrent queries
def test_pool_bounds_concurrent_queries(api):
    """--pool-size 1: while a slow SQL query holds the only Query, a snapshot waits, then 429."""
    with one_slot_taken(api, "--pool-size", "1") as (proc, slow):
        err = error_of(proc, f"/v1/snapshot?date={DAY}", 429, "busy")
        assert "1 queries of version" in err["message"]
        slow.join()
        assert proc.get(f"/v1/snapshot?date={DAY}")[0] == 200


def test_bad_memory_limit_fails_the_start(api):
    env = {"BFA_CACHE_DIR": str(api.cache), "BFA_REPO": SAMPLE_REPO}
    out = run_cli("serve", "--offline", "--port", "0", "--memory-limit", "lots", env=env)
    assert out.returncode == 1 and "--memory-limit" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_serve_extra_fails_before_any_download(tmp_path):
    """Without FastAPI (a plain `pip install .`), the error comes first and names the extra."""
    code = (
        "import sys; sys.modules['fastapi'] = None; from intake_bfa.cli import main; "
        "sys.exit(main(['serve', '--port', '0']))"
    )
    env = base_env(BFA_CACHE_DIR=str(tmp_path / "cache"), BFA_API_URL="http://127.0.0.1:9")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 1
    assert "pip install 'intake-bfa[serve]'" in out.stderr and "fastapi" in out.stderr
    assert not (tmp_path / "cache").exists()  # nothing resolved or fetched


def test_serve_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "intake_bfa.cli", "serve", "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and "/v1/snapshot" in out.stdout


@pytest.mark.slow
def test_benchmark_script_runs():
    """benchmarks/bench_serve.py --quick: the server answers every request at 1/8/32 clients."""
    from .conftest import run_benchmark

    stdout = run_benchmark("bench_serve.py")
    rows = [line for line in stdout.splitlines() if line.startswith(("| snapshot", "| timeline"))]
    assert len(rows) == 6, stdout
    assert "peak" in stdout
