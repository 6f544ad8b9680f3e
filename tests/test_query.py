"""The query API against the local release server, cross-checked with plain pandas.

Every answer of :class:`intake_bfa.query.Query` is recomputed independently from the
datasets read with :func:`intake_bfa.read` (pandas only, no SQL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import duckdb
import pandas as pd
import pytest

import intake_bfa
from intake_bfa.errors import QueryError
from intake_bfa.query import Query
from intake_bfa.query.sql import locked_connection

from .conftest import V_NEW, V_OLD

END = dt.date(2021, 6, 30)  # coverage end of V_NEW
OLD_END = dt.date(2021, 6, 27)  # coverage end of V_OLD


@pytest.fixture
def q(published):
    with Query() as query:
        yield query


@pytest.fixture
def da(published):
    df = intake_bfa.read("daily_availability", V_NEW)
    df["date"] = pd.to_datetime(df["date"])
    return df


@pytest.fixture
def syms(published):
    return intake_bfa.read("symbols", V_NEW)


def _days(series) -> list[dt.date]:
    return [pd.Timestamp(v).date() for v in series]


def _available(da, day):
    return da[(da.date == pd.Timestamp(day)) & da.available]


# --- pinning ---------------------------------------------------------------------------------


def test_version_is_resolved_once_and_pinned(published, monkeypatch):
    monkeypatch.setenv("BFA_TTL", "0")  # "latest" is asked again on every resolution
    q = Query()
    assert q.version == V_NEW
    assert q.coverage == (dt.date(2019, 12, 31), END)
    before = q.snapshot("2021-06-29")
    published.delete_release("bfa-sample/binance-futures-availability", f"data-{V_NEW}")
    assert intake_bfa.resolve_version("latest") == V_OLD  # "latest" moved back
    # The pinned object keeps answering from its own version, coverage included.
    assert q.version == V_NEW
    pd.testing.assert_frame_equal(q.snapshot("2021-06-29"), before)
    assert len(q.timeline("BTCUSDT")) == 548
    fresh = Query()
    assert fresh.version == V_OLD
    assert fresh.coverage[1] == OLD_END
    with pytest.raises(QueryError, match=r"outside the coverage of version 2021-06-28"):
        fresh.snapshot("2021-06-29")
    q.close()
    fresh.close()


def test_pinned_old_version_answers_from_its_files(published):
    with Query(V_OLD) as old:
        old_da = intake_bfa.read("daily_availability", V_OLD)
        assert old.version == V_OLD
        assert len(old.timeline("ETHUSDT")) == len(old_da[old_da.symbol == "ETHUSDT"])
        avail = old_da[old_da.available & (old_da.symbol == "WEMYWUUSDT")]
        old_last = old.lifetime("WEMYWUUSDT").last_date[0].date()
        assert old_last == avail.date.max()
    with Query(V_NEW) as new:
        assert new.lifetime("WEMYWUUSDT").last_date[0].date() != old_last


# --- answers, cross-checked ------------------------------------------------------------------


@pytest.mark.parametrize("day", ["2019-12-31", "2020-03-27", "2021-03-04", "2021-06-30"])
def test_snapshot(q, da, day):
    got = q.snapshot(day)
    assert list(got.symbol) == sorted(_available(da, day).symbol)
    assert set(got.date) == {pd.Timestamp(day)}


def test_snapshot_filters(q, da, syms):
    day = "2021-03-04"
    ids = set(_available(da, day).symbol)
    usdc = set(syms[syms.quote_asset == "USDC"].symbol) & ids
    assert set(q.snapshot(day, quote="USDC").symbol) == usdc and usdc
    assert set(q.snapshot(day, quote="usdc").symbol) == usdc  # enumerations: any case
    delivery = set(syms[syms.contract_kind == "delivery"].symbol) & ids
    assert set(q.snapshot(day, kind="delivery").symbol) == delivery and delivery


def test_available_in(q, da):
    lo, hi = pd.Timestamp("2020-03-01"), pd.Timestamp("2020-06-30")
    window = da[(da.date >= lo) & (da.date <= hi) & da.available]
    want = window.groupby("symbol").date.agg(["min", "max", "count"]).sort_index()
    got = q.available_in("2020-03-01", "2020-06-30").set_index("symbol")
    assert list(got.index) == list(want.index)
    assert list(got.first_available) == list(want["min"])
    assert list(got.last_available) == list(want["max"])
    assert list(got.days_available) == list(want["count"])


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ICPUSDT_SETTLED", "币安人生USDT", "1000PEPEUSDT"])
def test_timeline(q, da, symbol):
    got = q.timeline(symbol)
    want = da[da.symbol == symbol].sort_values("date").reset_index(drop=True)
    assert list(got.columns) == list(da.columns)
    assert set(got.symbol) == {symbol}  # "_" is no wildcard
    assert list(got.date) == list(want.date)
    assert list(got.available) == list(want.available)
    pd.testing.assert_series_equal(
        got.quote_volume_usdt, want.quote_volume_usdt, check_dtype=False, check_index=False
    )
    part = q.timeline(symbol, "2021-01-01", "2021-01-31")
    assert _days(part.date) == [dt.date(2021, 1, d) for d in range(1, 32)]


def test_lifetime_and_symbols(q, da, syms):
    avail = da[da.available]
    for symbol in ("BTCUSDT", "VAVALUSDT", "BNXUSDTSETTLED", "BTCUSDT_210924"):
        row = q.lifetime(symbol).iloc[0]
        dates = avail[avail.symbol == symbol].date
        assert row.first_date == dates.min() and row.last_date == dates.max()
        listed = dates.max() >= pd.Timestamp(END - dt.timedelta(days=1))
        assert bool(row.listed_now) == (listed and not symbol.endswith("SETTLED"))
    everything = q.symbols()
    assert list(everything.symbol) == sorted(syms.symbol)
    listed = q.symbols(listed_now=True, quote="USDT")
    want = syms[syms.listed_now & (syms.quote_asset == "USDT")]
    assert set(listed.symbol) == set(want.symbol)


def _first_last(da):
    return da[da.available].groupby("symbol").date.agg(["min", "max"])


def test_listings(q, da):
    life = _first_last(da)
    one_day = q.listings("2021-06-17")
    assert list(one_day.symbol) == list(life[life["min"] == "2021-06-17"].index)
    got = q.listings("2021-01-01", "2021-03-31")
    want = life[(life["min"] >= "2021-01-01") & (life["min"] <= "2021-03-31")]
    assert sorted(got.symbol) == sorted(want.index)
    assert list(got.date) == sorted(got.date)
    assert len(q.listings()) == len(life)  # whole coverage: every symbol once


def test_delistings(q, da):
    """A delisting: last available date of a symbol not listed now."""
    life = _first_last(da)
    not_listed = life[
        (life["max"] < pd.Timestamp(END - dt.timedelta(days=1)))
        | life.index.str.endswith("SETTLED")
    ]
    got = q.delistings()
    assert sorted(got.symbol) == sorted(not_listed.index)
    for row in got.itertuples():
        assert row.date == not_listed.loc[row.symbol, "max"]
    june = q.delistings("2021-06-01", "2021-06-30")
    assert set(june.symbol) == set(not_listed[not_listed["max"] >= "2021-06-01"].index)
    assert set(q.delistings("2021-06-25").symbol) == {"BTCUSDT_210625", "ETHUSDT_210625"}


def test_counts(q, da):
    got = q.counts("2021-05-01", "2021-06-30").set_index("date")
    window = da[(da.date >= "2021-05-01") & (da.date <= "2021-06-30")]
    want = window.groupby("date").available.sum()
    assert list(got.index) == list(want.index)
    assert list(got.available_symbols) == list(want)
    life = _first_last(da)
    assert got.loc["2021-06-17", "listings"] == (life["min"] == "2021-06-17").sum() == 1
    assert len(q.counts()) == da.date.nunique()


def _gaps_pandas(dates: pd.Series) -> list[tuple[dt.date, dt.date, int]]:
    days = sorted(_days(dates))
    out = []
    for prev, cur in itertools.pairwise(days):
        if (cur - prev).days > 1:
            out.append(
                (prev + dt.timedelta(days=1), cur - dt.timedelta(days=1), (cur - prev).days - 1)
            )
    return out


def test_gaps(q, da, syms):
    avail = da[da.available]
    got = q.gaps("VAVALUSDT")
    want = _gaps_pandas(avail[avail.symbol == "VAVALUSDT"].date)
    assert list(zip(_days(got.start), _days(got.end), got.days, strict=True)) == want
    every = q.gaps()
    per_symbol = every.groupby("symbol").days.agg(["count", "sum"])
    table = syms.set_index("symbol")
    for symbol in table.index:
        count, total = per_symbol.loc[symbol] if symbol in per_symbol.index else (0, 0)
        assert count == table.loc[symbol, "gap_count"]
        assert total == table.loc[symbol, "missing_days"]
    assert q.gaps("BTCUSDT").empty


def test_top_and_rank_history(q, published):
    vr = intake_bfa.read("volume_rankings", V_NEW)
    day = vr[vr.date == dt.date(2021, 3, 4)].sort_values(["rank", "symbol"])
    got = q.top("2021-03-04", n=5)
    assert list(got.symbol) == list(day.symbol[:5])
    assert list(got["rank"]) == list(day["rank"][:5])
    assert len(q.top("2021-03-04", n=1000)) == len(day)
    hist = q.rank_history("ETHUSDT", "2021-06-01")
    want = vr[(vr.symbol == "ETHUSDT") & (vr.date >= dt.date(2021, 6, 1))].sort_values("date")
    assert list(hist["rank"]) == list(want["rank"])
    assert list(hist.market_share_pct) == pytest.approx(list(want.market_share_pct))


def test_universe_every_day(q, da):
    lo, hi = "2021-01-01", "2021-03-31"
    window = da[(da.date >= lo) & (da.date <= hi)]
    per = window.groupby("symbol").available.sum()
    n_days = window.date.nunique()
    got = q.universe(lo, hi)
    assert list(got.symbol) == sorted(per[per == n_days].index)
    assert set(got.window_days) == {n_days}
    # Survivorship-free: contracts delisted or expired later are members.
    assert {"BTCUSDT_210326", "VYUSDT"} <= set(q.universe("2021-03-01", "2021-03-20").symbol)


def test_universe_on_a_day_any_day_and_volume(q, da, syms):
    lo, hi = "2021-05-01", "2021-05-31"
    window = da[(da.date >= lo) & (da.date <= hi)]
    on_day = set(_available(da, "2021-05-22").symbol)
    assert set(q.universe(lo, hi, on="2021-05-22").symbol) == on_day
    assert set(q.universe(lo, hi, every_day=False).symbol) == set(window[window.available].symbol)
    avg = window[window.available].groupby("symbol").quote_volume_usdt.mean()
    ordered = sorted(avg)
    # Halfway between two averages: summation order cannot move a symbol across it.
    threshold = (ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1]) / 2
    got = q.universe(lo, hi, every_day=False, min_volume=threshold)
    assert set(got.symbol) == set(avg[avg >= threshold].index)
    usdt = set(syms[syms.quote_asset == "USDT"].symbol)
    assert set(q.universe(lo, hi, every_day=False, quote="USDT").symbol) <= usdt


def test_relation_variants_match_dataframes(q):
    calls = [
        ("snapshot", ("2021-03-04",), {"quote": "USDT"}),
        ("available_in", ("2020-03-01", "2020-03-31"), {}),
        ("timeline", ("BTCUSDT",), {}),
        ("lifetime", ("ETHUSDT",), {}),
        ("symbols", (), {"kind": "delivery"}),
        ("listings", ("2021-01-01", "2021-03-31"), {}),
        ("delistings", (), {}),
        ("counts", ("2021-06-01",), {}),
        ("gaps", ("LIMONOUSDT",), {}),
        ("top", ("2021-06-30",), {"n": 3}),
        ("rank_history", ("BTCUSDT",), {}),
        ("universe", ("2021-06-01", "2021-06-30"), {"min_volume": 1e6}),
    ]
    for name, args, kwargs in calls:
        rel = getattr(q, name)(*args, as_relation=True, **kwargs)
        assert isinstance(rel, duckdb.DuckDBPyRelation), name
        pd.testing.assert_frame_equal(rel.df(), getattr(q, name)(*args, **kwargs), obj=name)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda q: q.snapshot("2021-13-01"), "is not a date; use YYYY-MM-DD"),
        (lambda q: q.snapshot("2021/03/04"), "is not a date"),
        (lambda q: q.snapshot(20210304), "is not a date"),
        (lambda q: q.snapshot(None), "is not a date"),
        (lambda q: q.snapshot("2019-12-30"), "coverage of version 2021-07-01 (2019-12-31 .. 2021-06-30)"),
        (lambda q: q.available_in("2021-06-01", "2021-07-01"), "end 2021-07-01 is outside the coverage"),
        (lambda q: q.available_in("2021-03-01", "2021-02-01"), "start 2021-03-01 is after end 2021-02-01"),
        (lambda q: q.counts("2021-03-01", "2021-02-01"), "is after end"),
        (lambda q: q.timeline("BTCUSD"), "unknown symbol 'BTCUSD' in version 2021-07-01; did you mean BTCUSDT"),
        (lambda q: q.timeline("btcusd"), "did you mean BTCUSDT"),
        (lambda q: q.gaps("NOPE_NOPE"), "unknown symbol 'NOPE_NOPE'"),
        (lambda q: q.lifetime(""), "symbol must be a non-empty string"),
        (lambda q: q.top("2021-03-04", n=0), "n must be a whole number >= 1"),
        (lambda q: q.top("2021-03-04", n=True), "n must be a whole number"),
        (lambda q: q.snapshot("2021-03-04", kind="swap"), "unknown contract kind 'swap'"),
        (lambda q: q.snapshot("2021-03-04", quote="EUR"), "unknown quote asset 'EUR'; this version has BTC, BUSD, USDC, USDT"),
        (lambda q: q.universe("2021-01-01", "2021-01-31", on="2021-02-01"), "outside the window"),
        (lambda q: q.universe("2021-01-01", "2021-01-31", on="2021-01-05", every_day=False), "not both"),
        (lambda q: q.universe("2021-01-01", "2021-01-31", min_volume=-1), "min_volume must be a number >= 0"),
        (lambda q: q.universe("2021-01-01", "2021-01-31", min_volume=float("nan")), "min_volume"),
        (lambda q: q.universe("2021-01-01", "2021-01-31", min_volume="1e6"), "min_volume"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_query_error(q, call, fragment):
    with pytest.raises(QueryError) as info:
        call(q)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


HOSTILE = [
    "BTCUSDT' OR '1'='1",
    'BTCUSDT"; DROP VIEW symbols; --',
    "%",
    "_",
    "BTCUSDT'); COPY symbols TO '/tmp/bfa-pwned.csv'; --",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_data_not_sql(q, value, tmp_path):
    n = len(q.symbols())
    with pytest.raises(QueryError, match="unknown symbol"):
        q.timeline(value)
    with pytest.raises(QueryError, match="unknown quote asset"):
        q.snapshot("2021-03-04", quote=value)
    with pytest.raises(QueryError, match="is not a date"):
        q.snapshot(value)
    # A hostile value inside the user's own SQL is a string literal, nothing more.
    literal = value.replace("'", "''")
    assert q.sql(f"SELECT * FROM symbols WHERE symbol = '{literal}'").empty
    assert len(q.symbols()) == n  # nothing was dropped or changed


# --- user SQL --------------------------------------------------------------------------------


def test_sql_reads_the_views_and_optionally_the_database(q, da):
    got = q.sql("SELECT COUNT(*) AS n FROM daily_availability WHERE available")
    assert got.n[0] == da.available.sum()
    tables = set(q.sql("SHOW TABLES").name)
    assert tables == {"daily_availability", "volume_rankings", "symbols", "availability_events"}
    counts = q.sql("SELECT * FROM db.daily_symbol_counts ORDER BY date", database=True)
    assert list(counts.available_symbols) == list(da.groupby("date").available.sum())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("COPY symbols TO '/tmp/bfa-out.csv'", "not COPY"),
        ("ATTACH '/tmp/bfa.duckdb' AS x", "not ATTACH"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD httpfs", "not LOAD"),
        ("CREATE TABLE t AS SELECT * FROM symbols", "not CREATE"),
        ("SET enable_external_access = true", "not SET"),
        ("EXPLAIN ANALYZE COPY symbols TO '/tmp/bfa-out.csv'", "not EXPLAIN"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_text('/etc/hostname')", "Permission Error"),
        ("SELECT * FROM 'https://example.com/x.parquet'", "Permission Error"),
        ("SELEC 1", "Parser Error"),
        ("SELECT nope FROM symbols", "Binder Error"),
        ("CONNECT", "only read-only SELECT"),  # DuckDB 2.0 raised ValueError (fuzzing)
    ],
)
def test_sql_refuses_anything_but_reading_the_datasets(q, text, fragment):
    with pytest.raises(QueryError) as info:
        q.sql(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_locked_connection_blocks_even_without_the_statement_check(q, tmp_path):
    """Second layer: the connection itself refuses files, extensions and settings."""
    out = tmp_path / "out"
    out.mkdir()
    files = {name: q.path(name) for name in ("daily_availability", "symbols")}
    digest = hashlib.sha256(files["symbols"].read_bytes()).hexdigest()
    con = locked_connection(files)
    try:
        assert con.execute("SELECT COUNT(*) FROM symbols").fetchall() == [(40,)]
        for text, fragment in [
            (f"COPY symbols TO '{out / 'out.csv'}'", "Permission Error"),
            (f"ATTACH '{out / 'x.duckdb'}' AS x", "Permission Error"),
            ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
            ("LOAD httpfs", "disabled"),
            ("SET enable_external_access = true", "configuration has been locked"),
            ("SET lock_configuration = false", "configuration has been locked"),
            ("SET allowed_directories = ['/']", "configuration has been locked"),
        ]:
            with pytest.raises(duckdb.Error, match=fragment):
                con.execute(text)
    finally:
        con.close()
    assert not list(out.iterdir())
    # DuckDB lets COPY write to an allowed path: only the SELECT-only check stops that.
    with pytest.raises(QueryError, match="not COPY"):
        q.sql(f"COPY (SELECT 1 AS a) TO '{files['symbols']}' (FORMAT parquet, USE_TMP_FILE false)")
    assert hashlib.sha256(files["symbols"].read_bytes()).hexdigest() == digest


def test_rolling_layout_is_queried_too(rolling):
    """The public project's layout (no manifest; symbols derived locally) answers the same way."""
    with Query() as q:
        assert q.version.startswith("rolling-")
        lo, hi = q.coverage
        assert lo == dt.date(2019, 12, 31)
        da = intake_bfa.read("daily_availability", q.version)
        assert hi == da.date.max()
        day = da[(da.date == dt.date(2021, 3, 4)) & da.available]
        assert list(q.snapshot("2021-03-04").symbol) == sorted(day.symbol)
        assert q.lifetime("BTCUSDT").first_date[0] == pd.Timestamp("2019-12-31")
        assert set(q.sql("SHOW TABLES").name) == {
            "daily_availability",
            "volume_rankings",
            "symbols",
        }


def test_sql_limits_time_and_rows(q):
    """Query.sql(timeout=, max_rows=): the query is interrupted or refused, then usable."""
    with pytest.raises(QueryError, match=r"longer than 0\.3 s") as info:
        q.sql("SELECT count(*) FROM range(1000000000000)", timeout=0.3)
    assert info.value.context["reason"] == "timeout"
    with pytest.raises(QueryError, match="more than 10 rows") as info:
        q.sql("SELECT * FROM symbols", max_rows=10)
    assert info.value.context["reason"] == "too_many_rows"
    table = q.sql("SELECT * FROM symbols", max_rows=10_000, timeout=30, arrow=True)
    assert table.num_rows == len(q.sql("SELECT * FROM symbols"))
    with pytest.raises(QueryError, match="relations"):
        q.sql("SELECT 1", as_relation=True, timeout=1)


def test_sql_limits_are_locked_in(q):
    """Resource limits set before the lock cannot be raised by user SQL."""
    q.sql_limits = {"memory_limit": "300MB", "threads": 1}
    q.close()  # the next SQL connection is made with the limits
    try:
        sql = "SELECT current_setting('threads') AS t, current_setting('memory_limit') AS m"
        got = q.sql(sql)
        assert int(got.t[0]) == 1 and got.m[0].startswith("286")
        with pytest.raises(QueryError, match="not SET"):
            q.sql("SET threads = 4")
    finally:
        q.sql_limits = {}
        q.close()


def test_top_on_the_rolling_layout_reads_the_rankings_not_the_database(rolling):
    """``top`` and ``rank_history`` check dates against the rankings file's own coverage
    and a ranked symbol against the rankings: no database download."""
    with Query() as query:
        top = query.top("2021-03-04", 3)
        assert list(top["rank"]) == [1, 2, 3]
        with pytest.raises(QueryError, match="outside the coverage"):
            query.top("2030-01-01")
        history = query.rank_history("BTCUSDT", "2021-03-01", "2021-03-07")
        assert len(history) == 7 and history["rank"].notna().all()
    assert rolling.count(path_contains="availability.duckdb") == 0
    assert rolling.count(path_contains="volume-rankings-timeseries.parquet") >= 1
