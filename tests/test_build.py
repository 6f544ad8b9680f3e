"""``bfa build``: state -> release folder, the Parquet layout, and the validation gates."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from intake_bfa.derive import derived_sql
from intake_bfa.parquet_layout import row_group_bounds
from intake_bfa.producer.release import build_from_state
from intake_bfa.producer.state import (
    empty_state,
    load_state,
    merge_availability,
    merge_volume,
    save_state,
    seed_from_table,
    to_daily_availability,
)
from intake_bfa.producer.validate import ValidationReport, check_continuity
from intake_bfa.testing.synthetic import generate_daily_availability

END = dt.date(2021, 6, 30)


@pytest.fixture(scope="module")
def table():
    return generate_daily_availability(n_symbols=45, end=END)


@pytest.fixture
def state_dir(tmp_path, table):
    folder = tmp_path / "state"
    save_state(folder, seed_from_table(table))
    return folder


def open_db(release_dir, tmp_path):
    db = tmp_path / "check.duckdb"
    with gzip.open(release_dir / "availability.duckdb.gz") as src, open(db, "wb") as out:
        shutil.copyfileobj(src, out)
    return duckdb.connect(str(db), read_only=True)


def test_state_round_trip_rebuilds_the_grid(state_dir, table):
    grid = to_daily_availability(load_state(state_dir), END)
    assert grid.num_rows == table.num_rows
    for column in ("available", "file_size_bytes", "last_modified", "url", "quote_volume_usdt"):
        ours = grid.sort_by([("date", "ascending"), ("symbol", "ascending")])[column]
        theirs = table.sort_by([("date", "ascending"), ("symbol", "ascending")])[column]
        assert ours.equals(theirs.cast(ours.type)), column


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_build_writes_a_complete_validated_release(state_dir, tmp_path, umask_022):
    result = build_from_state(state_dir, tmp_path / "rel", today=dt.date(2021, 7, 1))
    out = tmp_path / "rel"
    assert result.report.ok and result.version == "2021-07-01"
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "catalog.yaml", "RELEASE_NOTES.md", "validation.json"} <= names
    catalog = (out / "catalog.yaml").read_text()
    assert "pinned_version: '2021-07-01'" in catalog or "pinned_version: 2021-07-01" in catalog
    assert "2019-12-31 .. 2021-06-30" in (out / "RELEASE_NOTES.md").read_text()
    # Ordinary files, readable like any file the umask (022 here) allows: never 0600.
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o644}, modes


def test_parquet_and_duckdb_agree_row_for_row(state_dir, tmp_path):
    build_from_state(state_dir, tmp_path / "rel", today=dt.date(2021, 7, 1))
    con = open_db(tmp_path / "rel", tmp_path)
    for table in ("daily_availability", "volume_rankings", "symbols", "availability_events"):
        path = str(tmp_path / "rel" / f"{table}.parquet")
        # The database's daily_availability has the upstream columns; first_seen comes from
        # its availability_events table, as a consumer deriving the file computes it.
        db = f"({derived_sql(con, table)})" if table == "daily_availability" else table
        for a, b in ((db, "read_parquet(?)"), ("read_parquet(?)", db)):
            diff = con.execute(
                f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})", [path]
            ).fetchall()[0][0]
            assert diff == 0, table
    pk = con.sql("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = "
                 "'daily_availability'").fetchall()  # fmt: skip
    assert ("PRIMARY KEY",) in pk


def test_parquet_is_readable_by_pyarrow_duckdb_and_polars(state_dir, tmp_path):
    import polars as pl

    build_from_state(state_dir, tmp_path / "rel", today=dt.date(2021, 7, 1))
    path = tmp_path / "rel" / "daily_availability.parquet"
    arrow = pq.read_table(path)
    duck = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(path)]).to_arrow_table()
    polars = pl.read_parquet(path).to_arrow()
    assert arrow.num_rows == duck.num_rows == polars.num_rows
    key = [("date", "ascending"), ("symbol", "ascending")]
    assert arrow.sort_by(key)["url"].equals(duck.sort_by(key)["url"])
    assert arrow.sort_by(key)["url"].equals(polars.sort_by(key)["url"].cast(pa.string()))


def test_row_groups_are_tiles_of_whole_symbols_within_a_half_year(state_dir, tmp_path):
    build_from_state(state_dir, tmp_path / "rel", today=dt.date(2021, 7, 1))
    meta = pq.ParquetFile(tmp_path / "rel" / "daily_availability.parquet").metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    d, s = names.index("date"), names.index("symbol")
    seen: dict[tuple, int] = {}
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        lo, hi = rg.column(d).statistics.min, rg.column(d).statistics.max
        assert (lo.year, lo.month > 6) == (hi.year, hi.month > 6)  # one half-year
        sym_lo, sym_hi = rg.column(s).statistics.min, rg.column(s).statistics.max
        key = (lo.year, lo.month > 6)
        for sym in {sym_lo, sym_hi}:
            seen[(key, sym)] = seen.get((key, sym), 0) + 1
    assert max(seen.values()) == 1  # no symbol spans two row groups of one half-year
    # Only key columns carry statistics: every row group's footer entry stays small.
    url = names.index("url")
    assert not meta.row_group(0).column(url).is_stats_set


def test_row_group_bounds_cut_only_at_symbol_or_block_changes():
    dates = [dt.date(2020, 6, 29), dt.date(2020, 6, 30), dt.date(2020, 7, 1)]
    table = pa.table(
        {
            "date": pa.array([dates[0], dates[1], dates[0], dates[1], dates[2]], pa.date32()),
            "symbol": ["A", "A", "B", "B", "A"],
        }
    )
    assert row_group_bounds(table, target=1) == [(0, 2), (2, 4), (4, 5)]
    assert row_group_bounds(table, target=100) == [(0, 4), (4, 5)]


def test_t1_incomplete_newest_day_is_trimmed(tmp_path, table):
    state = seed_from_table(table)
    # The newest day: only 2 files uploaded so far (T+1 in progress).
    last = pc.equal(state.availability["date"], pa.scalar(END, pa.date32()))
    keep = pc.or_(pc.invert(last), pc.is_in(state.availability["symbol"],
                                            value_set=pa.array(["BTCUSDT", "ETHUSDT"])))  # fmt: skip
    state.availability = state.availability.filter(keep)
    save_state(tmp_path / "state", state)
    result = build_from_state(tmp_path / "state", tmp_path / "rel", today=dt.date(2021, 7, 1))
    assert result.trimmed_t1 and result.coverage[1] == "2021-06-29"
    assert (
        "left out: still being uploaded (T+1)"
        in (tmp_path / "rel" / "RELEASE_NOTES.md").read_text()
    )


def test_strict_completeness_fails_on_interior_outages(state_dir, tmp_path):
    result = build_from_state(state_dir, tmp_path / "rel", today=dt.date(2021, 7, 1), strict=True)
    assert not result.report.ok  # the synthetic sample has market-wide outage days
    doc = json.loads((tmp_path / "rel" / "validation.json").read_text())
    assert not doc["ok"] and any(f["level"] == "error" for f in doc["findings"])


def test_continuity_gate_reports_missing_dates():
    report = ValidationReport("x")
    d0 = dt.date(2021, 1, 1)
    check_continuity(report, [(d0, 3, 3), (d0 + dt.timedelta(days=2), 3, 2)])
    assert not report.ok and "1 dates missing" in report.findings[0].message


def test_diff_against_the_previous_release(tmp_path, table):
    state = seed_from_table(table)
    save_state(tmp_path / "s1", state)
    build_from_state(tmp_path / "s1", tmp_path / "v1", today=dt.date(2021, 7, 1))
    # A late back-fill for one symbol-day, and one object that vanished.
    gone_symbol, gone_date = "BTCUSDT", dt.date(2021, 6, 10)
    listed = state.availability.filter(
        pc.and_(
            pc.equal(state.availability["symbol"], "BTCUSDT"),
            pc.greater_equal(
                state.availability["date"], pa.scalar(dt.date(2021, 6, 1), pa.date32())
            ),
        )
    )
    listed = listed.filter(pc.not_equal(listed["date"], pa.scalar(gone_date, pa.date32())))
    merge_availability(state, listed, {"BTCUSDT": dt.date(2021, 6, 1)})
    missing = to_daily_availability(state, END)
    hole = missing.filter(pc.invert(missing["available"])).slice(0, 1)
    backfill = pa.table({
        "symbol": hole["symbol"], "date": hole["date"],
        "file_size_bytes": pa.array([1234], pa.int64()),
        "last_modified": pa.array([dt.datetime(2021, 6, 30, 12)], pa.timestamp("us")),
        "etag": pa.array(["x"]), "probe_timestamp": pa.array([dt.datetime(2021, 7, 1)], pa.timestamp("us")),
    })  # fmt: skip
    merge_availability(state, backfill, {})
    save_state(tmp_path / "s2", state)
    result = build_from_state(
        tmp_path / "s2",
        tmp_path / "v2",
        today=dt.date(2021, 7, 2),
        previous=tmp_path / "v1" / "daily_availability.parquet",
    )
    diff = next(f for f in result.report.findings if f.check == "diff")
    assert diff.details["disappeared"] == 1 and diff.details["backfilled"] == 1
    notes = (tmp_path / "v2" / "RELEASE_NOTES.md").read_text()
    assert f"| {gone_symbol} | {gone_date} | True → False |" in notes
    changes = json.loads((tmp_path / "v2" / "changes.json").read_text())
    assert changes["changes"]["disappeared"] == changes["changes"]["backfilled"] == 1
    assert changes["examples"]["disappeared"][0]["symbol"] == gone_symbol


def test_rank_changes_look_back_over_ranked_days_negative_when_rising(tmp_path, table):
    state = seed_from_table(table)
    # Remove ETHUSDT's 2021-03-04 file: the next day compares with 2021-03-03, its previous
    # ranked day (the publishing project's convention: LAG over the symbol's ranked rows).
    gap = dt.date(2021, 3, 4)
    drop = pc.and_(pc.equal(state.availability["symbol"], "ETHUSDT"),
                   pc.equal(state.availability["date"], pa.scalar(gap, pa.date32())))  # fmt: skip
    state.availability = state.availability.filter(pc.invert(drop))
    save_state(tmp_path / "state", state)
    build_from_state(tmp_path / "state", tmp_path / "rel", today=dt.date(2021, 7, 1))
    path = str(tmp_path / "rel" / "volume_rankings.parquet")
    rows = duckdb.sql(
        "SELECT date, rank, rank_change_1d, rank_change_7d, percentile, days_available "
        "FROM read_parquet(?) WHERE symbol = 'ETHUSDT' ORDER BY date",
        params=[path],
    ).fetchall()
    days = [r[0] for r in rows]
    assert gap not in days
    at = days.index(dt.date(2021, 3, 5))
    assert days[at - 1] == dt.date(2021, 3, 3)
    assert rows[at][2] == rows[at][1] - rows[at - 1][1]  # today's rank minus the previous one
    assert rows[at][3] == rows[at][1] - rows[at - 7][1]  # 7 ranked rows back, not 7 days
    assert rows[0][2] is None and rows[6][3] is None and rows[7][3] is not None
    assert [r[5] for r in rows[:31]] == [*range(1, 31), 30]  # ranked rows so far, capped at 30
    # Rising is negative: find a day ETHUSDT improved its rank.
    rose = next(i for i in range(1, len(rows)) if rows[i][1] < rows[i - 1][1])
    assert rows[rose][2] < 0
    # Percentile in percent, 0 = top.
    top = duckdb.sql(
        "SELECT MIN(percentile), MAX(percentile), MIN(percentile) FILTER (WHERE rank = 1) "
        "FROM read_parquet(?)",
        params=[path],
    ).fetchall()[0]
    assert top == (0.0, 100.0, 0.0)


def test_volume_is_never_erased_by_availability_rechecks(table):
    state = empty_state()
    seeded = seed_from_table(table)
    merge_volume(state, seeded.volume)
    before = state.volume.num_rows
    merge_availability(state, seeded.availability, {"BTCUSDT": dt.date(2021, 1, 1)})
    assert state.volume.num_rows == before
