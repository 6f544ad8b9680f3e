"""Unknown symbols raise one clear error everywhere; any case reads the real symbol.

Every read path taking symbols (``read``, ``to_arrow``, ``to_duckdb``, ``to_polars``,
``to_dask``, the intake readers and catalog parameters, :class:`~intake_bfa.query.Query`
and the CLI through it) matches them with :func:`intake_bfa.symbols.match_symbols`,
against the real files of a sample release served on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import os
import string

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import intake_bfa
from intake_bfa import datasets
from intake_bfa.errors import QueryError
from intake_bfa.query import Query
from intake_bfa.symbols import cached_symbols, fold, match_symbols, parquet_symbols

from .conftest import V_NEW, V_OLD, run_cli


@pytest.fixture
def cat(published):
    return intake_bfa.open_catalog()


def real_symbols() -> set[str]:
    return set(intake_bfa.read("daily_availability", V_NEW, columns=["symbol"]).symbol)


# --- the read functions and the intake readers -------------------------------------------------


def test_unknown_symbol_raises_with_suggestions_in_the_real_spelling(cat):
    with pytest.raises(QueryError) as info:
        cat.daily_availability.read(symbols=["btcusd"])
    err = info.value
    assert isinstance(err, ValueError)
    assert str(err).startswith(
        f"unknown symbol 'btcusd' in daily_availability of version {V_NEW}; did you mean BTCUSDT"
    )
    assert "\n" not in str(err)
    assert err.symbols == ["btcusd"] and err.symbol == "btcusd" and err.version == V_NEW
    assert err.dataset == "daily_availability"
    assert err.suggestions[0] == "BTCUSDT" and len(err.suggestions) <= 3
    assert set(err.suggestions) <= real_symbols()


@pytest.mark.parametrize(
    ("asked", "real"),
    [
        ("btcusdt", "BTCUSDT"),
        ("1000pepeusdt", "1000PEPEUSDT"),
        ("btcusdt_210625", "BTCUSDT_210625"),
        ("币安人生usdt", "币安人生USDT"),
        ("Icpusdt_Settled", "ICPUSDT_SETTLED"),
    ],
)
def test_any_case_reads_the_same_rows_as_the_real_spelling(cat, asked, real):
    expected = cat.daily_availability.read(symbols=real)
    assert len(expected) > 0 and set(expected.symbol) == {real}
    pd.testing.assert_frame_equal(cat.daily_availability.read(symbols=asked), expected)
    pd.testing.assert_frame_equal(cat.daily_availability.read(symbols=[asked, real]), expected)


def test_mixed_known_and_unknown_names_only_the_unknown(cat):
    with pytest.raises(QueryError) as info:
        cat.daily_availability.read(symbols=["BTCUSDT", "NOPEUSDT", "ethusdt", "ZZZQQQ"])
    err = info.value
    assert err.symbols == ["NOPEUSDT", "ZZZQQQ"]
    message = str(err)
    assert message.startswith(f"unknown symbols in daily_availability of version {V_NEW}: ")
    assert "'NOPEUSDT' (did you mean " in message and "'ZZZQQQ'" in message
    assert "'BTCUSDT'" not in message and "ethusdt" not in message
    assert set(err.suggested) == {"NOPEUSDT", "ZZZQQQ"}
    assert all(1 <= len(s) <= 3 for s in err.suggested.values())


def test_symbols_spelled_as_in_the_file_are_read_without_listing_the_file(published):
    path = intake_bfa.local_path("daily_availability")
    exact = intake_bfa.read("daily_availability", symbols=["BTCUSDT", "1000PEPEUSDT"])
    assert set(exact.symbol) == {"BTCUSDT", "1000PEPEUSDT"}
    assert cached_symbols(path) is None  # every symbol showed up: nothing else was read
    again = intake_bfa.read("daily_availability", symbols=["btcusdt", "1000PEPEUSDT"])
    assert cached_symbols(path) == real_symbols()  # listed once, for the other spelling
    pd.testing.assert_frame_equal(again, exact)
    # A real symbol with no row in the window (not ranked before its listing) is no error.
    ranked = intake_bfa.read("volume_rankings", symbols="BTCUSDT_210924")
    assert ranked.date.min() > dt.date(2020, 1, 1)
    early = intake_bfa.read("volume_rankings", start="2020-01-01", symbols="BTCUSDT_210924",
                            end=ranked.date.min() - dt.timedelta(days=1))  # fmt: skip
    assert len(early) == 0


def test_every_output_checks_the_symbols(published):
    expected = intake_bfa.to_arrow("daily_availability", symbols="BTCUSDT")
    rel = intake_bfa.to_duckdb("daily_availability", symbols="btcUSDT")
    assert rel.to_arrow_table().equals(expected)
    lazy = datasets.to_polars("daily_availability", symbols="btcusdt")
    assert lazy.collect().to_arrow().column("symbol").to_pylist() == ["BTCUSDT"] * len(expected)
    frame = datasets.to_dask("daily_availability", symbols=["btcusdt"]).compute()
    assert len(frame) == len(expected) and set(frame.symbol) == {"BTCUSDT"}
    calls = [
        lambda: intake_bfa.to_arrow("daily_availability", symbols="NOPEUSDT"),
        lambda: intake_bfa.to_duckdb("daily_availability", symbols="NOPEUSDT"),
        lambda: datasets.to_polars("daily_availability", symbols="NOPEUSDT"),
        lambda: datasets.to_dask("daily_availability", symbols="NOPEUSDT"),
        lambda: intake_bfa.read("volume_rankings", V_OLD, symbols="NOPEUSDT"),
        lambda: intake_bfa.read("symbols", symbols="NOPEUSDT"),
    ]
    for call in calls:
        with pytest.raises(QueryError, match="unknown symbol 'NOPEUSDT' in "):
            call()


def test_every_intake_reader_and_catalog_parameter_checks_the_symbols(cat):
    entry = cat.daily_availability
    for outtype in ("pandas", "pyarrow", "duckdb", "polars", "dask"):
        reader = entry.data.to_reader(outtype=outtype)
        with pytest.raises(QueryError, match="unknown symbol 'NOPEUSDT'"):
            reader.read(symbols="NOPEUSDT")
    where = f"unknown symbol 'NOPEUSDT' in volume_rankings of version {V_OLD}"
    with pytest.raises(QueryError, match=where):
        cat(version=V_OLD, symbols="NOPEUSDT").volume_rankings.read()
    rows = cat(symbols="ethusdt").symbols.read()
    assert rows.symbol.tolist() == ["ETHUSDT"]
    assert len(entry.to_duckdb(symbols="eThUsDt").fetchall()) > 0


def test_remote_relation_filters_as_given_without_reading_the_symbols(published, cache_dir):
    """Listing a remote file's symbols would read its whole column: remote reads skip it."""
    rel = intake_bfa.to_duckdb("daily_availability", symbols="NOPEUSDT", remote=True)
    assert rel.fetchall() == []
    assert not (cache_dir.exists() and any(cache_dir.rglob("daily_availability.parquet")))


# --- Query and the CLI ---------------------------------------------------------------------------


def test_query_matches_the_case_and_shares_the_error(published):
    with Query(V_NEW) as q:
        pd.testing.assert_frame_equal(q.timeline("btcusdt"), q.timeline("BTCUSDT"))
        assert q.lifetime("币安人生usdt").symbol.tolist() == ["币安人生USDT"]
        with pytest.raises(QueryError) as info:
            q.gaps("NOPEUSDT")
    err = info.value
    assert str(err).startswith(f"unknown symbol 'NOPEUSDT' in version {V_NEW}; did you mean ")
    assert err.symbols == ["NOPEUSDT"] and 1 <= len(err.suggestions) <= 3


def test_cli_prints_one_line_with_the_suggestion(published):
    out = run_cli("timeline", "btcusd")
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("bfa: error: unknown symbol 'btcusd' in version ")
    assert "did you mean BTCUSDT" in lines[0]
    ok = run_cli("timeline", "btcusdt", "--format", "csv", "-q")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("BTCUSDT") > 500 and "btcusdt" not in ok.stdout


# --- the matching function ---------------------------------------------------------------------


def test_a_case_only_ambiguity_names_the_candidates_in_their_case():
    known = {"BTCUSDT", "btcUSDT", "ETHUSDT"}
    assert match_symbols(["btcUSDT", "BTCUSDT", "ethusdt"], known) == [
        "btcUSDT",
        "BTCUSDT",
        "ETHUSDT",
    ]
    with pytest.raises(QueryError) as info:
        match_symbols(["BtcUsdt"], known, version="2026-11-20")
    err = info.value
    assert str(err) == (
        "symbol 'BtcUsdt' is ambiguous in version 2026-11-20: it matches BTCUSDT, btcUSDT, "
        "which differ only by case; use the exact spelling"
    )
    assert err.ambiguous == ["BtcUsdt"] and err.suggestions == ["BTCUSDT", "btcUSDT"]
    with pytest.raises(QueryError, match=r"'btcusdt' \(matches BTCUSDT, btcUSDT, .*'NOPE'"):
        match_symbols(["btcusdt", "NOPE"], known)


def test_many_unknown_symbols_stay_one_short_line():
    with pytest.raises(QueryError) as info:
        match_symbols([f"NOPE{i}" for i in range(40)], {"BTCUSDT"}, version="v")
    assert len(info.value.symbols) == 40 and "and 35 more" in str(info.value)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_parquet_symbols_are_read_once_per_file_version(tmp_path):
    path = tmp_path / "daily.parquet"
    pq.write_table(pa.table({"symbol": ["B", "A", "B", None], "n": [1, 2, 3, 4]}), path)
    first = parquet_symbols(path)
    assert first == {"A", "B"} and parquet_symbols(path) is first  # memo hit
    pq.write_table(pa.table({"symbol": ["C"] * 3, "n": [1, 2, 3]}), path)
    os.utime(path, ns=(1, 1))  # another mtime even on a coarse clock
    assert parquet_symbols(path) == {"C"}


SYMBOL_CHARS = string.ascii_letters + string.digits + "_币安人生"
symbol_text = st.text(SYMBOL_CHARS, min_size=1, max_size=8)


def mutate_case(draw, symbol: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(symbol), max_size=len(symbol)))
    return "".join(c.swapcase() if f else c for c, f in zip(symbol, flips, strict=True))


@st.composite
def known_and_asked(draw):
    known = draw(st.sets(symbol_text, min_size=1, max_size=12))
    # Some real symbols differing only by case (ambiguous unless spelled exactly).
    for real in draw(st.lists(st.sampled_from(sorted(known)), max_size=3)):
        known.add(mutate_case(draw, real))
    asked = []
    for _ in range(draw(st.integers(1, 5))):
        choice = draw(st.sampled_from(["exact", "case", "other"]))
        if choice == "other":
            asked.append(draw(symbol_text))
        else:
            real = draw(st.sampled_from(sorted(known)))
            asked.append(real if choice == "exact" else mutate_case(draw, real))
    return known, asked


@given(known_and_asked())
def test_matching_property(case):
    known, asked = case
    groups: dict[str, set[str]] = {}
    for real in known:
        groups.setdefault(fold(real), set()).add(real)
    resolvable = [a in known or len(groups.get(fold(a), ())) == 1 for a in asked]
    try:
        result = match_symbols(asked, known, version="v")
    except QueryError as err:
        assert not all(resolvable)
        bad = [a for a, ok in zip(asked, resolvable, strict=True) if not ok]
        assert err.symbols == list(dict.fromkeys(bad))
        assert set(err.suggestions) <= known
        for symbol, suggested in err.suggested.items():
            if symbol in err.ambiguous:
                assert set(suggested) == groups[fold(symbol)] and len(suggested) > 1
            else:
                assert fold(symbol) not in groups and 1 <= len(suggested) <= 3
        return
    assert all(resolvable)
    assert len(result) == len(asked) and set(result) <= known
    for a, r in zip(asked, result, strict=True):
        assert r == a if a in known else fold(r) == fold(a)
