"""Property-based fuzzing of what a user types: CLI arguments and SQL (``bfa sql``, ``/v1/sql``).

The invariant, for any generated input: the CLI exits 0 (an answer), 1 (one
``bfa: error: ...`` line) or 2 (usage), never with a traceback; the server answers 2xx or a
JSON 4xx, never a 5xx; nothing is written outside the cache; each example within a time
bound. A few examples per test in the default run, many in the slow group.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake_bfa.testing.releases import SAMPLE_REPO

from .conftest import V_NEW, V_OLD, run_cli

_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=20, deadline=None, suppress_health_check=_HEALTH)
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=_HEALTH)
#: Per-example bound (a behaviour, not a benchmark: a hang or a runaway query would break it).
BOUND_S = 20.0
#: A path the SQL tries to write to; it must never appear.
LEAK = "/tmp/bfa-fuzz-leak.csv"

dates = st.one_of(
    st.dates().map(str),
    st.sampled_from(["2021-03-04", "2019-12-31", "2021-02-30", "20210304", "2021-3-4", "", "-"]),
    st.text(alphabet="0123456789-:T Z２", max_size=14),
)
symbols = st.one_of(
    st.sampled_from(["BTCUSDT", "btcusdt", "1000PEPEUSDT", "BTCUSDT_210326", "币安人生USDT"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=16),
)
versions = st.one_of(
    st.sampled_from(["latest", V_OLD, V_NEW, f"data-{V_OLD}", "2099-01-01", "rolling-x"]),
    st.text(max_size=12),
)
SQL_WORDS = [
    "SELECT", "*", "count(*)", "symbol", "date", "available", "FROM", "daily_availability",
    "symbols", "volume_rankings", "WHERE", "=", "<", "AND", "OR", "NOT", "'BTCUSDT'",
    "DATE '2021-03-04'", "GROUP BY", "ORDER BY", "LIMIT", "1", "5", "(", ")", ",", ";",
    "UNION ALL", "WITH t AS (SELECT 1)", "t", "read_csv('/etc/passwd')", "glob('/*')",
    f"COPY symbols TO '{LEAK}'", "ATTACH", "'/tmp/x.duckdb'", "PRAGMA", "SET", "getenv('HOME')",
    "current_setting('allowed_paths')", "duckdb_settings()", "--", "/*", "*/", "$1", "?",
    "range(5)", "repeat('x', 10)", "list_value(1,2)", "CAST", "AS", "INTEGER", "NULL",
]  # fmt: skip
sql_text = st.one_of(
    st.lists(st.sampled_from(SQL_WORDS), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=60),
)
commands = st.one_of(
    st.tuples(st.just("snapshot"), dates),
    st.tuples(st.just("range"), dates, dates),
    st.tuples(st.just("timeline"), symbols),
    st.tuples(st.just("lifetime"), symbols),
    st.tuples(st.just("gaps"), symbols),
    st.tuples(st.just("top"), dates, st.just("-n"), st.integers(-3, 50).map(str)),
    st.tuples(st.just("universe"), dates, dates),
    st.tuples(st.just("listings"), st.just("--start"), dates),
).flatmap(lambda cmd: versions.map(lambda v: (*cmd, "--data-version", v)))


def _check_cli(out) -> None:
    assert out.returncode in (0, 1, 2), out
    assert "Traceback" not in out.stderr, out.stderr
    if out.returncode == 1:
        assert out.stderr.strip().splitlines()[-1].startswith("bfa: error: "), out.stderr


@pytest.fixture
def online(published, monkeypatch):
    """The sample releases on the local server; cached after the first example."""
    monkeypatch.setenv("BFA_REPO", SAMPLE_REPO)
    return published


def _cli_args(online, args) -> None:
    started = time.monotonic()
    _check_cli(run_cli(*args, "--format", "json"))
    assert time.monotonic() - started < BOUND_S


def _cli_sql(online, sql) -> None:
    started = time.monotonic()
    _check_cli(run_cli("sql", sql, "--format", "json"))
    assert time.monotonic() - started < BOUND_S
    assert not __import__("os").path.exists(LEAK)


test_cli_arguments = FAST(given(args=commands)(_cli_args))
test_cli_arguments_many = pytest.mark.slow(SLOW(given(args=commands)(_cli_args)))
test_cli_sql = FAST(given(sql=sql_text)(_cli_sql))
test_cli_sql_many = pytest.mark.slow(SLOW(given(sql=sql_text)(_cli_sql)))


def _served_sql(api, sql) -> None:
    started = time.monotonic()
    status, _, raw = api.get("/v1/sql?q=" + urllib.parse.quote(sql, safe=""))
    assert status < 500, (status, raw[:500])
    if status >= 400:
        assert json.loads(raw)["error"]["code"], raw[:500]
    assert time.monotonic() - started < BOUND_S
    assert not __import__("os").path.exists(LEAK)


test_served_sql = FAST(given(sql=sql_text)(_served_sql))
test_served_sql_many = pytest.mark.slow(SLOW(given(sql=sql_text)(_served_sql)))
