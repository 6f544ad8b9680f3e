"""``bfa diff`` / ``intake_bfa.diff`` and ``bfa check`` / ``intake_bfa.check`` on real releases.

Two releases are built by the package from the same synthetic rows, the second with one
change of every kind a late re-listing finds (a back-fill, a vanished file, a replaced file,
a volume that arrived, a revised volume, a new and a delisted symbol), published on the
local release server and compared through the public API and the real CLI. The expected
answers are computed here with pandas, independently of the SQL under test.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa.quality import check_files
from intake_bfa.testing.releases import build_dated, build_rolling, publish_dated, publish_rolling

from .conftest import run_cli

REPO = "audit/binance-futures-availability"
OLD, NEW = "2021-06-28", "2021-07-01"
NEWCOIN = "NEWCOINUSDT"


def _frames(samples):
    """The new release's rows, and the old release as the same rows up to its last date."""
    new = samples.table(dt.date.fromisoformat(NEW)).to_pandas()
    old = new[new.date <= dt.date.fromisoformat(OLD)].copy()
    return old, new


def _row(df, mask):
    (index,) = df.index[mask][:1]
    return index


def _with_changes(samples):
    """The old and new tables (pandas), the new one carrying one change of every kind."""
    old, new = _frames(samples)
    day = pd.Timestamp("2021-03-04").date()
    on = lambda df, d, s: (df.date == d) & (df.symbol == s)  # noqa: E731
    up = new[(new.date == day) & new.available & new.quote_volume_usdt.notna()].symbol.tolist()
    down = new[(new.date == day) & ~new.available].symbol.tolist()
    gone, replaced, revised, filled = up[:4]
    back = down[0]
    i = _row(new, on(new, day, back))
    new.loc[i, ["available", "status_code", "file_size_bytes"]] = [True, 200, 4321]
    new.loc[i, "last_modified"] = pd.Timestamp("2021-06-30 12:00")
    i = _row(new, on(new, day, gone))
    new.loc[i, ["available", "status_code", "file_size_bytes"]] = [False, 404, None]
    new.loc[i, ["last_modified", "quote_volume_usdt"]] = [pd.NaT, None]
    i = _row(new, on(new, day, replaced))
    new.loc[i, "file_size_bytes"] = 1358
    new.loc[i, "last_modified"] = pd.Timestamp("2021-06-29 08:00")
    i = _row(new, on(new, day, revised))
    new.loc[i, "quote_volume_usdt"] = new.loc[i, "quote_volume_usdt"] * 1.5
    i = _row(old, on(old, day, filled))  # the old release had no volume for it yet
    old.loc[i, ["quote_volume_usdt", "trade_count"]] = [None, None]
    # A symbol listed at the old release's end goes away after it: delisted.
    listed = set(old[(old.date >= pd.Timestamp(OLD).date() - dt.timedelta(days=1))
                     & old.available].symbol)  # fmt: skip
    delisted = sorted(s for s in listed if not s.endswith("SETTLED"))[0]
    new.loc[(new.symbol == delisted) & (new.date > pd.Timestamp(OLD).date()), "available"] = False
    # A brand-new symbol appears in the new dates.
    template = new[new.date > pd.Timestamp(OLD).date()].drop_duplicates("date")
    fresh = template.assign(symbol=NEWCOIN, available=True, status_code=200)
    new = pd.concat([new, fresh], ignore_index=True)
    who = {"backfilled": back, "disappeared": gone, "replaced": replaced,
           "volume_revised": revised, "volume_filled": filled, "delisted": delisted}  # fmt: skip
    return old, new, who


def _table(df, schema) -> pa.Table:
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


@pytest.fixture
def changed(samples, server, tmp_path, monkeypatch):
    """Both releases published on the local server; the consumer points at it."""
    old, new, who = _with_changes(samples)
    schema = samples.table(dt.date.fromisoformat(NEW)).schema
    for version, df in ((OLD, old), (NEW, new)):
        folder = build_dated(_table(df, schema), tmp_path / version, version)
        publish_dated(server, REPO, folder)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", REPO)
    return old, new, who


def _expected_new_symbols(old, new) -> list[str]:
    end = new.date.max()
    listed = set(new[(new.date >= end - dt.timedelta(days=1)) & new.available].symbol)
    listed = {s for s in listed if not s.endswith("SETTLED")}
    return sorted(listed - set(old[old.available].symbol))


def test_diff_names_every_kind_of_change(changed):
    old, new, who = changed
    d = intake_bfa.diff(OLD, NEW)
    assert (d.old, d.new) == (OLD, NEW)
    assert d.changes == {"backfilled": 1, "disappeared": 1, "replaced": 1,
                         "volume_filled": 1, "volume_revised": 1}  # fmt: skip
    for kind in d.changes:
        assert [e["symbol"] for e in d.examples[kind]] == [who[kind]], kind
    replaced = d.examples["replaced"][0]
    assert replaced["file_size_bytes"][1] == 1358
    assert replaced["last_modified"][1] == "2021-06-29T08:00:00"
    assert d.new_dates == 3 and d.removed_rows == 0
    assert d.added_rows == len(new) - len(old)
    assert NEWCOIN in d.new_symbols and d.new_symbols == _expected_new_symbols(old, new)
    assert who["delisted"] in d.delisted_symbols
    assert d.old_coverage == ("2019-12-31", OLD) and d.new_coverage == ("2019-12-31", NEW)
    # A version compared with itself: nothing changed.
    same = intake_bfa.diff(NEW, NEW)
    assert same.late_changes == 0 and same.new_dates == 0 and not same.new_symbols


def test_bfa_diff_cli_text_and_json(changed):
    _, _, who = changed
    res = run_cli("diff", OLD, NEW, "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["changes"]["replaced"] == 1 and doc["new_dates"] == 3
    assert doc["meanings"]["replaced"].startswith("the file was replaced")
    res = run_cli("diff", OLD)  # new defaults to latest
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert f"{OLD} (2019-12-31 .. {OLD}) -> {NEW}" in text
    assert who["replaced"] in text and "1358" in text and NEWCOIN in text
    res = run_cli("diff", OLD, "2021-06-29")
    assert res.returncode == 1 and "2021-06-29" in res.stderr and "Traceback" not in res.stderr


def test_check_reports_the_upstreams_defects_and_exits_1(samples, server, tmp_path, monkeypatch):
    df = samples.table(dt.date(2021, 6, 30)).to_pandas()
    day = dt.date(2021, 3, 4)
    up = df[(df.date == day) & df.available & df.quote_volume_usdt.notna()].index
    df.loc[up[0], "available"] = False  # the DuckDB 1.4 upsert bug: status 200, not available
    bugged = df.loc[up[0], "symbol"]
    df.loc[up[1], ["volume_base", "open_price"]] = [None, None]  # half-nulled volume
    early = df[df.date == df.date.min()].assign(date=dt.date(2019, 12, 30), available=False)
    df = pd.concat([early.head(2), df], ignore_index=True)
    schema = samples.table(dt.date(2021, 6, 30)).schema
    folder = build_rolling(_table(df, schema), tmp_path / "rolling")
    # The rankings stopped being regenerated five days before the volumes.
    rankings = pq.read_table(folder / "volume-rankings-timeseries.parquet").to_pandas()
    rankings = rankings[rankings.date <= dt.date(2021, 6, 25)]
    pq.write_table(
        pa.Table.from_pandas(rankings, preserve_index=False),
        folder / "volume-rankings-timeseries.parquet",
    )
    publish_rolling(server, REPO, folder)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", REPO)

    report = intake_bfa.check()
    found = {a.name: a.count for a in report.anomalies}
    assert found == {
        "unavailable_with_status_200": 1,
        "partial_volume": 1,
        "before_first_vision_date": 2,
        "rankings_end_early": 5,
    }
    assert not report.clean and report.rows == len(df)
    status = next(a for a in report.anomalies if a.name == "unavailable_with_status_200")
    assert status.examples == [{"date": "2021-03-04", "symbol": bugged}]
    res = run_cli("check", "--format", "json")
    assert res.returncode == 1, res.stderr
    assert {a["name"] for a in json.loads(res.stdout)["anomalies"]} == set(found)
    res = run_cli("check")
    assert res.returncode == 1 and "unavailable_with_status_200" in res.stdout
    assert "2021-03-04" in res.stdout


def test_rolling_anomalies_are_logged_once_on_first_read(
    samples, server, tmp_path, monkeypatch, caplog
):
    df = samples.table(dt.date(2021, 6, 30)).to_pandas()
    up = df[df.available].index
    df.loc[up[:3], "available"] = False
    folder = build_rolling(_table(df, samples.table(dt.date(2021, 6, 30)).schema), tmp_path / "r")
    publish_rolling(server, REPO, folder)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", REPO)
    with caplog.at_level(logging.WARNING, logger="intake_bfa"):
        intake_bfa.read("daily_availability", columns=["symbol"])
        intake_bfa.read("daily_availability", columns=["symbol"])
        intake_bfa.read("symbols")
    warned = [
        r.getMessage() for r in caplog.records if "unavailable_with_status_200" in r.getMessage()
    ]
    assert (
        len(warned) == 1
        and ": 3 " in warned[0]
        and "bfa check --data-version rolling-" in warned[0]
    )


def test_clean_release_checks_clean_and_exits_0(published):
    report = intake_bfa.check()
    assert report.clean and "duplicate_keys" in report.checked, report.anomalies
    res = run_cli("check")
    assert res.returncode == 0 and "clean" in res.stdout, res.stderr


def test_check_files_finds_duplicates_and_nulls_a_database_without_keys_can_hold(tmp_path):
    rows = {
        "date": [dt.date(2021, 1, 1)] * 3,
        "symbol": ["BTCUSDT", "BTCUSDT", "ETHUSDT"],
        "available": [True, True, None],
        "file_size_bytes": [10, 10, None],
        "url": ["u", "u", None],
        "status_code": [200, 200, 404],
        "probe_timestamp": [dt.datetime(2021, 1, 2)] * 3,
        "quote_volume_usdt": [1.0, 1.0, None],
    }
    path = tmp_path / "daily.parquet"
    pq.write_table(pa.table(rows), path)
    with pytest.raises(Exception, match="volume_base"):  # not a daily_availability file
        check_files(path)
    for name in ("trade_count", "volume_base", "taker_buy_volume_base",
                 "taker_buy_quote_volume_usdt", "open_price", "high_price", "low_price",
                 "close_price"):  # fmt: skip
        rows[name] = [1.0, 1.0, None]
    rows["last_modified"] = [dt.datetime(2021, 1, 2)] * 3
    pq.write_table(pa.table(rows), path)
    found = {a.name: a.count for a in check_files(path).anomalies}
    assert found == {"duplicate_keys": 1, "not_null_violations": 1}
