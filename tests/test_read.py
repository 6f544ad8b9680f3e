"""Reading every dataset through the catalog and the functions, on real files the package built."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa.errors import DatasetNotFoundError, QueryError
from intake_bfa.schema import DAILY_AVAILABILITY_COLUMNS, SYMBOLS_COLUMNS

from .conftest import V_NEW, V_OLD


@pytest.fixture
def cat(published):
    return intake_bfa.open_catalog()


def test_read_latest_matches_the_published_file(cat, published, samples):
    df = cat.daily_availability.read()
    expected = pd.read_parquet(samples.dated(V_NEW) / "daily_availability.parquet")
    # pandas' reader turns integer columns with nulls into float64; read() keeps them whole.
    for name in ("file_size_bytes", "trade_count"):
        assert str(df[name].dtype) == "Int64" and df[name].isna().any()
        expected[name] = expected[name].astype("Int64")
    # Likewise a boolean column with nulls (first_seen_exact on days without a file).
    assert str(df["first_seen_exact"].dtype) == "boolean" and df["first_seen_exact"].isna().any()
    expected["first_seen_exact"] = expected["first_seen_exact"].astype("boolean")
    pd.testing.assert_frame_equal(df, expected)
    assert list(df.columns) == list(DAILY_AVAILABILITY_COLUMNS)
    assert df["date"].max() == dt.date(2021, 6, 30)


def test_warm_read_makes_no_request(cat, published):
    cat.daily_availability.read()
    published.clear_requests()
    cat.daily_availability.read()
    cat.daily_availability.to_duckdb().aggregate("count(*)").fetchall()
    assert published.requests == []


def test_pinned_version_is_reproducible(cat):
    old = cat.daily_availability.read(version=V_OLD)
    assert old["date"].max() == dt.date(2021, 6, 27)
    again = intake_bfa.read("daily_availability", V_OLD)
    pd.testing.assert_frame_equal(old, again)


def test_downloaded_files_are_byte_identical_and_layout_is_readable(published, samples, cache_dir):
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == (samples.dated(V_OLD) / "daily_availability.parquet").read_bytes()
    parts = path.relative_to(cache_dir).parts
    assert parts == ("v1", "bfa-sample", "binance-futures-availability", V_OLD, path.name)
    assert (cache_dir / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172")
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_filters_and_columns(cat):
    day = cat.daily_availability.read(
        start="2021-03-04", end="2021-03-04", columns=["symbol", "available"]
    )
    assert list(day.columns) == ["symbol", "available"]
    full = cat.daily_availability.read()
    ref = full[full["date"] == dt.date(2021, 3, 4)]
    assert sorted(day["symbol"]) == sorted(ref["symbol"])
    assert day["available"].sum() == ref["available"].sum()

    btc = cat.daily_availability.read(symbols="BTCUSDT", start=dt.date(2021, 1, 1))
    assert set(btc["symbol"]) == {"BTCUSDT"}
    assert btc["date"].min() == dt.date(2021, 1, 1)
    two = cat.volume_rankings.read(symbols=["BTCUSDT", "ETHUSDT"], end="2020-01-31")
    assert set(two["symbol"]) == {"BTCUSDT", "ETHUSDT"} and two["date"].max() <= dt.date(
        2020, 1, 31
    )


def test_filters_are_pushed_down_to_the_parquet_reader(cat, published):
    # A pushed-down predicate lets pyarrow skip row groups by their statistics; the
    # file sorts by (symbol, date), so one symbol's rows live in few row groups.
    path = intake_bfa.local_path("daily_availability")
    meta = pq.ParquetFile(path).metadata
    stats = [meta.row_group(i).column(1).statistics for i in range(meta.num_row_groups)]
    assert all(s.has_min_max for s in stats)
    arrow = intake_bfa.to_arrow("daily_availability", symbols=["BTCUSDT"], columns=["symbol"])
    assert arrow.num_rows == len(cat.daily_availability.read(symbols="BTCUSDT"))


def test_to_duckdb_relation_binds_values(cat):
    rel = cat.daily_availability.to_duckdb(symbols=["BTCUSDT"], columns=["date", "available"])
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rel.columns == ["date", "available"]
    n = rel.aggregate("count(*)").fetchall()[0][0]
    assert n == len(cat.daily_availability.read(symbols="BTCUSDT"))
    # A hostile "symbol" is data, not SQL: a symbol the file does not have.
    evil = "x') OR 1=1 --"
    with pytest.raises(QueryError, match="unknown symbol") as info:
        cat.daily_availability.to_duckdb(symbols=[evil])
    assert info.value.symbols == [evil]


def test_to_arrow_and_reader_outputs(cat):
    table = cat.symbols.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == list(SYMBOLS_COLUMNS)
    entry = cat.daily_availability
    assert entry.output_instance == "pandas:DataFrame"
    assert Path(entry.local_path()).is_file()


def test_symbols_dataset_describes_each_contract(cat):
    sym = cat.symbols.read().set_index("symbol")
    assert sym.loc["BTCUSDT", "contract_kind"] == "perpetual"
    assert sym.loc["BTCUSDT", "quote_asset"] == "USDT"
    assert bool(sym.loc["BTCUSDT", "listed_now"])
    assert sym.loc["ETHBTC", "quote_asset"] == "BTC"
    settled = [s for s in sym.index if s.endswith("SETTLED")]
    assert settled and (sym.loc[settled, "contract_kind"] == "settled").all()
    assert not sym.loc[settled, "listed_now"].any()
    quarterly = [s for s in sym.index if s.startswith("BTCUSDT_")]
    assert quarterly and (sym.loc[quarterly, "contract_kind"] == "delivery").all()
    end = cat.daily_availability.read(columns=["date"])["date"].max()
    for s in quarterly:
        delivery = sym.loc[s, "delivery_date"]
        if delivery <= end:  # expired: its last file is its delivery day
            assert sym.loc[s, "last_date"] == delivery and not sym.loc[s, "listed_now"]
        else:  # still trading at the end of the coverage
            assert bool(sym.loc[s, "listed_now"])
    days = cat.daily_availability.read(columns=["symbol", "available"])
    counts = days[days["available"]].groupby("symbol").size()
    assert (sym["days_available"] == counts.reindex(sym.index)).all()


def test_availability_db_opens_read_only(cat):
    con = cat.availability_db.read()
    tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
    assert {"daily_availability", "symbols", "daily_symbol_counts", "volume_rankings"} <= tables
    n_db = con.sql("SELECT count(*) FROM daily_availability").fetchall()[0][0]
    assert n_db == len(cat.daily_availability.read())
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM daily_availability")
    path = intake_bfa.local_path("availability_db")
    assert path.suffix == ".duckdb"
    assert not path.with_name(path.name + ".gz").exists()  # verified, decompressed, then dropped


def test_polars_and_dask(cat):
    import polars as pl  # the dev extra installs polars and dask: no silent skip

    lazy = cat.daily_availability.to_polars(symbols=["BTCUSDT"], columns=["date", "symbol"])
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().height == len(cat.daily_availability.read(symbols="BTCUSDT"))
    ddf = cat.volume_rankings.to_dask(columns=["date", "rank"])
    assert len(ddf.compute()) == len(cat.volume_rankings.read())


def test_rolling_layout_derives_missing_datasets_once(rolling, samples):
    cat = intake_bfa.open_catalog()
    df = cat.daily_availability.read()
    sym = cat.symbols.read()
    ranks = cat.volume_rankings.read()
    assert df["date"].max() == dt.date(2021, 6, 30)
    # The derived symbols table equals the one our own build computes from the same data.
    built = pd.read_parquet(samples.dated("2021-07-01") / "symbols.parquet")
    pd.testing.assert_frame_equal(sym, built)
    assert len(ranks) > 0
    path = intake_bfa.local_path("symbols")
    mtime = os.stat(path).st_mtime_ns
    rolling.clear_requests()
    cat.symbols.read()
    assert os.stat(path).st_mtime_ns == mtime and rolling.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"start": "2021-13-01"}, "not a date"),
        ({"start": "2021-03-05", "end": "2021-03-04"}, "after end"),
        ({"symbols": []}, "non-empty"),
        ({"columns": ["nope"]}, "no column"),
    ],
)
def test_bad_read_arguments(cat, kwargs, fragment):
    with pytest.raises(QueryError, match=fragment):
        cat.daily_availability.read(**kwargs)


def test_date_filter_on_symbols_is_refused(cat):
    with pytest.raises(QueryError, match="no date column"):
        cat.symbols.read(start="2021-01-01")


def test_unknown_dataset(published):
    with pytest.raises(DatasetNotFoundError) as info:
        intake_bfa.read("daily_availabilty")
    assert "daily_availability" in str(info.value)  # suggestion
    assert isinstance(info.value, KeyError)


def test_nullable_integers_have_one_dtype_in_read_query_and_sql(published):
    from intake_bfa.query import Query

    day, cols = "2020-08-03", ["symbol", "file_size_bytes", "trade_count", "status_code"]
    read = intake_bfa.read("daily_availability", start=day, end=day, columns=cols)
    assert read.file_size_bytes.isna().any() and read.file_size_bytes.notna().any()
    with Query() as q:
        sql = q.sql(f"SELECT {', '.join(cols)} FROM daily_availability WHERE date = '{day}'")
    for name in ("file_size_bytes", "trade_count"):
        assert sql[name].dtype == read[name].dtype == pd.Int64Dtype(), name
    assert str(read.status_code.dtype) == "int32"  # no nulls: a plain integer, as DuckDB's
    big = pa.table({"n": pa.array([2**62 + 1, None], pa.int64())})
    assert intake_bfa.datasets.arrow_to_pandas(big).n[0] == 2**62 + 1  # never via float64


@pytest.mark.parametrize(
    ("call", "module", "extra"),
    [("to_polars", "polars", "polars"), ("to_dask", "dask.dataframe", "dask")],
)
def test_a_missing_extra_is_named_in_python_and_the_cli(
    published, monkeypatch, call, module, extra
):
    """A README install has no polars or dask: say which extra brings them."""
    from intake_bfa.errors import MissingDependencyError

    monkeypatch.setitem(__import__("sys").modules, module, None)
    cat = intake_bfa.open_catalog()
    with pytest.raises(
        MissingDependencyError, match=rf"pip install 'intake-bfa\[{extra}\]'"
    ) as err:
        getattr(cat.daily_availability, call)()
    assert isinstance(err.value, ImportError) and err.value.extra == extra
    with pytest.raises(MissingDependencyError, match=module.split(".")[0]):
        getattr(intake_bfa.datasets, call)("symbols")
