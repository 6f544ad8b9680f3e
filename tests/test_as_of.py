"""Point-in-time answers (``as_of``, ``lag``): from a release whose events were collected for
real (moto's S3 server shaped like Binance Vision, changed between two collect runs), from the
sample releases and from the public project's rolling layout.

moto stamps Last-Modified at upload time, so the data days are the last week (real UTC
dates) and the instants compared are real times taken between the uploads.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import intake_bfa
from intake_bfa import asof
from intake_bfa.asof import AsOf, parse_as_of
from intake_bfa.errors import QueryError
from intake_bfa.producer.release import build_from_state
from intake_bfa.query import Query
from intake_bfa.schema import DAILY_AVAILABILITY_COLUMNS
from intake_bfa.testing.releases import SAMPLE_REPO, publish_dated

from .conftest import run_cli
from .test_collect import Vision, days, m1_key
from .test_observation_history import s3_object, seed, utc_now

D = dt.date


def stamp(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds") + "Z"


def pause() -> None:
    """S3's Last-Modified has one-second resolution: keep the stages apart."""
    time.sleep(1.1)


@pytest.fixture(scope="module")
def history(moto_endpoint, tmp_path_factory):
    """A release collected in two runs, with a late file, a replacement and a deletion
    between them; the instants before (``before``) and after (``after``) the changes."""
    tmp = tmp_path_factory.mktemp("as-of")
    today = utc_now().date()
    yesterday = today - dt.timedelta(days=1)
    window = (today - dt.timedelta(days=8), yesterday)
    late, replaced, deleted = (
        ("AAAUSDT", yesterday),
        ("BBBUSDT", today - dt.timedelta(days=3)),
        ("BBBUSDT", today - dt.timedelta(days=5)),
    )
    bucket = Vision(moto_endpoint, "as-of")
    seed(bucket, {"AAAUSDT": days(*window), "BBBUSDT": days(*window)}, missing=(late,))
    state = tmp / "state"
    bucket.run(state, today=today, full_every=0)
    old = s3_object(bucket, *replaced)
    pause()
    before = utc_now()
    pause()
    bucket.put(
        {
            m1_key(*late): b"uploaded late",
            m1_key(*replaced): b"replaced in place, much longer than before",
        }
    )
    bucket.delete(m1_key(*deleted))
    bucket.run(state, today=today, full_every=0)
    pause()
    after = utc_now()
    result = build_from_state(state, tmp / "rel", version=str(today))
    assert result.report.ok, [f.message for f in result.report.findings]
    return {
        "release": tmp / "rel",
        "version": str(today),
        "before": before,
        "after": after,
        "late": late,
        "replaced": replaced,
        "deleted": deleted,
        "old": old,
        "new": s3_object(bucket, *replaced),
        "today": today,
    }


@pytest.fixture
def release(history, server, monkeypatch):
    publish_dated(server, SAMPLE_REPO, history["release"])
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    return history


def row(frame, symbol: str, day: dt.date) -> dict:
    dates = pd.to_datetime(frame["date"]).dt.date
    (found,) = frame[(frame["symbol"] == symbol) & (dates == day)].to_dict("records")
    return found


def test_late_replaced_and_deleted_files_as_of_two_instants(release):
    h = release
    then, now = Query(as_of=h["before"]), Query(as_of=stamp(h["after"]))
    for q in (then, now):
        assert q.as_of is not None and q.label.startswith(f"{h['version']} as of ")
        assert "as_of=" in repr(q)
    tl_then = then.timeline("BBBUSDT")
    tl_now = now.timeline("BBBUSDT")
    assert list(tl_then.columns) == list(DAILY_AVAILABILITY_COLUMNS)
    # Replaced in place: the old size before the replacement, the new one after.
    old, new = row(tl_then, *h["replaced"]), row(tl_now, *h["replaced"])
    assert old["file_size_bytes"] == h["old"]["file_size_bytes"] != h["new"]["file_size_bytes"]
    assert old["last_modified"] == h["old"]["last_modified"]
    assert new["file_size_bytes"] == h["new"]["file_size_bytes"]
    assert old["first_seen"] == new["first_seen"] == h["old"]["last_modified"]
    # Deleted: present before its disappearance, absent after (volumes unknown then).
    gone_then, gone_now = row(tl_then, *h["deleted"]), row(tl_now, *h["deleted"])
    assert gone_then["available"] and gone_then["status_code"] == 200
    assert not gone_now["available"] and gone_now["file_size_bytes"] is None
    assert pd.isna(gone_now["first_seen"])
    # Back-filled late: absent before its upload, present after.
    day = h["late"][1]
    assert "AAAUSDT" not in set(then.snapshot(day)["symbol"])
    assert "AAAUSDT" in set(now.snapshot(day)["symbol"])
    assert row(then.timeline("AAAUSDT"), "AAAUSDT", day)["available"] is False
    # The same through the other questions.
    assert then.counts(day)["available_symbols"].tolist() == [1]
    assert now.counts(day)["available_symbols"].tolist() == [2]
    assert set(then.universe(day, day)["symbol"]) == {"BBBUSDT"}
    assert set(now.universe(day, day)["symbol"]) == {"AAAUSDT", "BBBUSDT"}
    assert then.top(day, 5).empty and now.top(day, 5).empty  # no volumes in this bucket
    # As of then, AAAUSDT's last file was the day before (still listed: within the last two).
    assert then.lifetime("AAAUSDT")["last_date"][0].date() == day - dt.timedelta(days=1)
    assert now.lifetime("AAAUSDT")["last_date"][0].date() == day
    assert then.lifetime("AAAUSDT")["listed_now"][0]
    first_day = h["today"] - dt.timedelta(days=8)
    assert set(then.listings(first_day)["symbol"]) == {"AAAUSDT", "BBBUSDT"}
    # User SQL sees the same tables.
    sql = "SELECT count(*) AS n FROM daily_availability WHERE available"
    assert then.sql(sql)["n"][0] == now.sql(sql)["n"][0]  # one late file in, one deleted out
    events = "SELECT count(*) AS n FROM availability_events"
    assert then.sql(events)["n"][0] < now.sql(events)["n"][0]


def test_a_fixed_instant_keeps_only_the_days_that_had_ended(release):
    h = release
    start = dt.datetime.combine(h["today"], dt.time()) - dt.timedelta(days=3)
    q = Query(as_of=start)
    assert q.coverage[1] == h["today"] - dt.timedelta(days=4)
    with pytest.raises(QueryError, match=r"outside the coverage of version .* as of"):
        q.snapshot(h["today"] - dt.timedelta(days=2))
    with pytest.raises(QueryError, match="before the first day"):
        Query(as_of="2019-06-01T00:00Z")


def test_publication_lag_excludes_the_late_file(release):
    h = release
    # Each day as known at the time of `before` the next day: yesterday's late file had
    # not arrived then, every other file had.
    lag = h["before"] - dt.datetime.combine(h["today"], dt.time())
    day = h["late"][1]
    for q in (Query(lag=lag), Query(as_of=f"D+1T{lag_clock(lag)}Z")):
        assert str(q.as_of).startswith("D+1T")
        assert set(q.snapshot(day)["symbol"]) == {"BBBUSDT"}
        assert set(q.universe(day, day)["symbol"]) == {"BBBUSDT"}
        # The day before: its files were uploaded (today) long after 09:00 the next day.
        assert q.universe(day - dt.timedelta(days=1), day).empty
    assert set(Query().snapshot(day)["symbol"]) == {"AAAUSDT", "BBBUSDT"}
    # Read and to_duckdb give the same rows.
    frame = intake_bfa.read("daily_availability", lag=lag, symbols="AAAUSDT")
    assert list(frame.columns) == list(DAILY_AVAILABILITY_COLUMNS)
    assert row(frame, "AAAUSDT", day)["available"] is False
    rel = intake_bfa.to_duckdb("daily_availability", as_of=h["after"], start=day, end=day)
    assert sorted(rel.filter("available").df()["symbol"]) == ["AAAUSDT", "BBBUSDT"]
    with pytest.raises(QueryError, match="as_of applies to daily_availability"):
        intake_bfa.read("symbols", as_of=h["after"])


def lag_clock(lag: dt.timedelta) -> str:
    seconds = int(lag.total_seconds())  # rounded down: after the first uploads (see pause)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def test_cli_as_of(release):
    h = release
    day = str(h["late"][1])
    before = run_cli("snapshot", day, "--as-of", stamp(h["before"]), "--format", "csv")
    after = run_cli("snapshot", day, "--as-of", stamp(h["after"]), "--format", "csv")
    assert before.returncode == 0, before.stderr
    assert "AAAUSDT" not in before.stdout and "AAAUSDT" in after.stdout
    bad = run_cli("counts", "--as-of", "yesterday")
    assert bad.returncode == 1 and "as_of='yesterday'" in bad.stderr


def test_rolling_layout_is_conservative_and_warns(rolling, caplog, monkeypatch):
    monkeypatch.setattr(asof, "_warned", False)
    caplog.set_level(logging.WARNING, logger="intake_bfa.asof")
    full = intake_bfa.read("daily_availability", start="2021-06-01")
    up = full[full["available"]]
    cut = up["last_modified"].sort_values().iloc[len(up) // 2]
    q = Query(as_of=cut.to_pydatetime())
    assert asof.ROLLING_WARNING in caplog.text
    known = q.sql("SELECT * FROM daily_availability WHERE date >= DATE '2021-06-01'")
    seen = known[known["available"]]
    # Exactly the files whose Last-Modified is not after the instant.
    assert set(zip(seen["symbol"], seen["date"], strict=True)) == {
        (s, d)
        for s, d, m in zip(up["symbol"], up["date"], up["last_modified"], strict=True)
        if m <= cut and d < cut.date()
    }
    assert (seen["first_seen"] <= cut).all()
    # There is no event history to show.
    with pytest.raises(QueryError, match="no event history"):
        q.sql("SELECT * FROM availability_events")


def test_sample_release_as_of_its_end_is_the_release(published):
    q, p = Query(as_of="2031-01-01"), Query()
    assert q.coverage == p.coverage
    assert q.counts().equals(p.counts())
    assert q.snapshot("2021-06-30").equals(p.snapshot("2021-06-30"))
    # Through the intake catalog: the reader passes as_of on.
    cat = intake_bfa.open_catalog()
    early = cat.daily_availability.read(as_of="2021-06-15", start="2021-06-13")
    assert early["date"].max() == D(2021, 6, 14)
    day = early[early["date"] == D(2021, 6, 14)]
    assert not day["available"].any()  # the day's files arrived on the 15th, after 00:00
    assert day["file_size_bytes"].isna().all() and day["quote_volume_usdt"].isna().all()


def test_top_ranks_only_the_files_known_then(published):
    day = D(2021, 6, 14)
    rows = intake_bfa.read("daily_availability", start=day, end=day)
    up = rows[rows["available"] & rows["quote_volume_usdt"].notna()]
    cut = up["last_modified"].sort_values().iloc[len(up) // 2].to_pydatetime()
    q = Query(as_of=cut)
    known = set(up[up["last_modified"] <= cut]["symbol"])
    assert known and known < set(up["symbol"])
    top = q.top(day, 100)
    assert set(top["symbol"]) == known and top["rank"].min() == 1
    assert set(Query().top(day, 100)["symbol"]) == set(up["symbol"])


# --- the parser -----------------------------------------------------------------------------


def test_parse_forms():
    utc9 = dt.datetime(2024, 3, 5, 9)
    assert parse_as_of() is None
    assert parse_as_of("2024-03-05T09:00Z") == AsOf(instant=utc9)
    assert parse_as_of("2024-03-05T10:00+01:00") == AsOf(instant=utc9)
    assert parse_as_of("2024-03-05 09:00") == AsOf(instant=utc9)
    assert parse_as_of(dt.datetime(2024, 3, 5, 9, tzinfo=dt.UTC)) == AsOf(instant=utc9)
    assert parse_as_of("2024-03-05") == AsOf(instant=dt.datetime(2024, 3, 5))
    assert parse_as_of(D(2024, 3, 5)) == AsOf(instant=dt.datetime(2024, 3, 5))
    nine = AsOf(lag=dt.timedelta(hours=9))
    assert parse_as_of("D+1T09:00Z") == parse_as_of(lag="09:00") == nine
    assert parse_as_of(lag=dt.timedelta(hours=9)) == nine
    assert parse_as_of("d+2T00:30") == AsOf(lag=dt.timedelta(days=1, minutes=30))
    assert str(nine) == "D+1T09:00Z" and str(AsOf(instant=utc9)) == "2024-03-05T09:00Z"
    assert nine.cutoff(D(2024, 3, 5)) == dt.datetime(2024, 3, 6, 9)


@pytest.mark.parametrize(
    "as_of, lag",
    [
        ("yesterday", None),
        ("D+0T09:00Z", None),
        ("D+1T25:00Z", None),
        ("2024-13-01", None),
        ("2024-03-05T09:00Z", "09:00"),
        ("D+1T09:00Z", "09:00"),
        (None, "-01:00"),
        (None, dt.timedelta(days=-1)),
        (None, dt.timedelta(days=40)),
        (None, 9),
        (True, None),
        (1709629200, None),
    ],
)
def test_bad_input_is_a_query_error(as_of, lag):
    with pytest.raises(QueryError):
        parse_as_of(as_of, lag)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"[Dd]\+[0-9]{1,3}T[0-9:]{0,9}Z?")))
def test_any_text_parses_or_is_a_query_error(text):
    try:
        spec = parse_as_of(text)
    except QueryError as err:
        assert "\n" not in str(err)
        return
    assert spec is not None and (spec.instant is None) != (spec.lag is None)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12) | st.timedeltas())
def test_any_lag_parses_or_is_a_query_error(lag):
    try:
        spec = parse_as_of(lag=lag)
    except QueryError:
        return
    assert spec is not None and dt.timedelta(0) <= spec.lag <= asof.MAX_LAG
