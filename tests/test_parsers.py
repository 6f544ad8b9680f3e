"""The pure parsers, at the layer that owns them: known cases plus hypothesis fuzzing.

Retry-After and backoff (``http``), Content-Range (``http``), durations and booleans
(``config``), dates and filters (``filters``). Every parser either returns a value or raises
the package's typed error; none may raise anything else, whatever the input.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake_bfa.config import get_settings, parse_bool, parse_duration
from intake_bfa.errors import ConfigError, DownloadError, QueryError, RateLimitError
from intake_bfa.filters import as_date, plan_filters, quote_identifier, select_sql
from intake_bfa.http import delay_for, parse_content_range, parse_retry_after
from intake_bfa.schema import get_spec

NOW = 1_800_000_000.0


# --- Retry-After ------------------------------------------------------------------------------


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 7 ", NOW) == 7.0
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(later, NOW) == pytest.approx(30.0)
    earlier = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0.0  # a date in the past: retry now
    for value in (None, "", "soon", "-5", "1.5e3", "Mon, 99 Foo 2026"):
        assert parse_retry_after(value, NOW) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value):
    wait = parse_retry_after(value, NOW)
    assert wait is None or wait >= 0


# --- backoff ----------------------------------------------------------------------------------


@given(attempt=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_within_the_cap(attempt, seed):
    settings = get_settings()
    err = DownloadError("x", retryable=True)
    delay = delay_for(err, attempt, settings, random.Random(seed))
    assert 0 <= delay <= min(30.0, settings.retry_backoff * 2 ** (attempt - 1))


def test_backoff_honours_retry_after_then_the_rate_limit_reset():
    settings = get_settings()
    rng = random.Random(0)
    assert delay_for(DownloadError("x", retry_after="3"), 1, settings, rng) == 3.0
    import time

    reset = time.time() + 50
    wait = delay_for(RateLimitError("x", reset=reset), 1, settings, rng)
    assert 45 < wait <= 50


# --- Content-Range ----------------------------------------------------------------------------


def test_content_range():
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range(" bytes 10-10/* ") == (10, 10, None)
    for value in (None, "", "bytes */1000", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2"):
        assert parse_content_range(value) is None


@given(st.integers(0, 2**40), st.integers(0, 2**20), st.integers(1, 2**20))
def test_content_range_round_trips(start, length, extra):
    end = start + length
    total = end + extra
    assert parse_content_range(f"bytes {start}-{end}/{total}") == (start, end, total)


@given(st.text(max_size=40))
def test_content_range_never_raises(value):
    parsed = parse_content_range(value)
    assert parsed is None or parsed[0] <= parsed[1]


# --- configuration ----------------------------------------------------------------------------


def test_durations_and_booleans():
    assert parse_duration("ttl", "90") == 90.0
    assert parse_duration("ttl", "30m") == 1800.0
    assert parse_duration("ttl", "24h") == 86400.0
    assert parse_duration("ttl", 2.5) == 2.5
    assert parse_bool("BFA_OFFLINE", "yes") is True
    assert parse_bool("BFA_OFFLINE", "0") is False
    with pytest.raises(ConfigError, match="BFA_TTL"):
        parse_duration("BFA_TTL", "a day")
    with pytest.raises(ConfigError, match="negative"):
        parse_duration("ttl", -1)


@given(st.one_of(st.text(max_size=20), st.floats(allow_nan=False), st.integers()))
def test_duration_is_a_non_negative_number_or_a_config_error(raw):
    try:
        seconds = parse_duration("BFA_TTL", raw)
    except ConfigError as err:
        assert "BFA_TTL" in str(err) or "ttl" in str(err).lower()
    else:
        assert seconds >= 0


@given(st.text(max_size=12))
def test_bool_is_a_bool_or_a_config_error(raw):
    try:
        assert parse_bool("BFA_OFFLINE", raw) in (True, False)
    except ConfigError as err:
        assert "BFA_OFFLINE" in str(err)


def test_settings_follow_the_environment_at_every_call(monkeypatch):
    first = get_settings()
    assert get_settings() is first  # validated once while nothing changed
    monkeypatch.setenv("BFA_TTL", "5m")
    assert get_settings().ttl == 300.0
    monkeypatch.setenv("BFA_REPO", "someone/else")
    assert get_settings().repo == "someone/else"
    assert get_settings(repo="a/b").repo == "a/b"  # an argument beats the environment


# --- dates and filters ------------------------------------------------------------------------


def test_dates():
    assert as_date("2021-03-04", "start") == dt.date(2021, 3, 4)
    assert as_date(dt.datetime(2021, 3, 4, 23, 59), "end") == dt.date(2021, 3, 4)
    with pytest.raises(QueryError, match=r"start='2021-02-30' is not a date"):
        as_date("2021-02-30", "start")


@given(st.text(max_size=16))
def test_a_date_parses_or_names_the_argument(text):
    try:
        day = as_date(text, "start")
    except QueryError as err:
        assert "start=" in str(err) and "YYYY-MM-DD" in str(err)
    else:
        assert isinstance(day, dt.date)


@given(
    start=st.one_of(st.none(), st.dates()),
    end=st.one_of(st.none(), st.dates()),
    symbols=st.one_of(st.none(), st.text(max_size=8), st.lists(st.text(max_size=8), max_size=3)),
)
def test_filter_plans_are_valid_or_refused(start, end, symbols):
    spec = get_spec("daily_availability")
    try:
        filters = plan_filters(spec, start, end, symbols)
    except QueryError:
        assert (start and end and start > end) or symbols is not None
        return
    sql, params = select_sql(["symbol", 'we"ird'], filters)
    assert sql.startswith('SELECT "symbol", "we""ird" FROM read_parquet(?)')
    # One bound value per placeholder: a date bound, or each symbol of an IN list.
    expected = sum(len(v) if op == "in" else 1 for _, op, v in filters)
    assert len(params) == expected == sql.count("?") - 1


@given(st.text(max_size=20))
def test_identifiers_cannot_escape_their_quotes(name):
    quoted = quote_identifier(name)
    assert quoted[0] == quoted[-1] == '"'
    assert quoted[1:-1].replace('""', "").count('"') == 0


def test_non_ascii_digits_are_not_numbers(monkeypatch):
    # str.isdigit() accepts "²" and "٣"; float() and int() do not. Found by hypothesis.
    assert parse_retry_after("²", NOW) is None
    assert parse_retry_after("٣", NOW) is None
    monkeypatch.setenv("BFA_RETRIES", "²")
    with pytest.raises(ConfigError, match="BFA_RETRIES"):
        get_settings()
