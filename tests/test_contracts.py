"""Contracts, not just tickers: a reused ticker's settled history and its successor.

When Binance lists a new contract under a ticker it used before, the old contract's folder
is renamed ``...SETTLED`` (``...SETTLEDSETTLED`` on a second reuse). ``symbols`` links each
history to the contract that took its ticker over, every layout computes the same links, and
``universe(by="contract")`` keeps the contracts of one ticker apart.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import intake_bfa
from intake_bfa.derive import SYMBOLS_SQL, derive
from intake_bfa.errors import QueryError
from intake_bfa.query import Query
from intake_bfa.schema import SYMBOLS_COLUMNS

from .conftest import V_NEW, run_cli

#: The synthetic sample's reused tickers: (settled history, the contract that replaced it).
REUSED = {"BNXUSDTSETTLED": "BNXUSDT", "ICPUSDT_SETTLED": "ICPUSDT"}
UNIVERSE_COLUMNS = [
    "symbol", "contract_kind", "quote_asset", "days_available", "window_days",
    "avg_quote_volume", "min_quote_volume", "first_date", "last_date", "listed_now",
]  # fmt: skip


def _links(sym: pd.DataFrame) -> dict[str, tuple]:
    rows = sym.set_index("symbol")[["ticker", "predecessor", "successor"]]
    return {s: tuple(None if pd.isna(v) else v for v in r) for s, r in rows.iterrows()}


def _ticker(symbol: str) -> str:
    while symbol.endswith("SETTLED"):
        symbol = symbol.removesuffix("SETTLED").removesuffix("_")
    return symbol


def _check_links(sym: pd.DataFrame) -> None:
    """What holds on every symbols table: tickers, and successor the inverse of predecessor."""
    by_symbol = sym.set_index("symbol")
    for symbol, row in by_symbol.iterrows():
        assert row.ticker == _ticker(symbol)
        if not pd.isna(row.successor):
            after = by_symbol.loc[row.successor]
            assert row.contract_kind == "settled" and after.ticker == row.ticker
            assert after.predecessor == symbol and after.first_date > row.last_date
        if not pd.isna(row.predecessor):
            assert by_symbol.loc[row.predecessor].successor == symbol


def test_a_settled_history_links_to_the_contract_that_took_its_ticker(published):
    sym = intake_bfa.read("symbols", V_NEW)
    assert list(sym.columns) == list(SYMBOLS_COLUMNS)
    links = _links(sym)
    for settled, plain in REUSED.items():
        assert links[settled] == (plain, None, plain)
        assert links[plain] == (plain, settled, None)
    # Every other contract is the only one of its ticker, dated quarterlies included.
    others = {s: v for s, v in links.items() if s not in {*REUSED, *REUSED.values()}}
    assert others and all(v == (s, None, None) for s, v in others.items())
    assert "BTCUSDT_210326" in others
    _check_links(sym)


def _database(path, lives: dict[str, tuple[int, int]]) -> None:
    """A database whose ``daily_availability`` holds ``lives``: symbol -> (first, last) day."""
    start = dt.date(2021, 1, 1)
    days = max(hi for _, hi in lives.values()) + 1
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE daily_availability (date DATE, symbol VARCHAR, available BOOLEAN)")
    rows = [
        (start + dt.timedelta(days=d), symbol, lo <= d <= hi)
        for symbol, (lo, hi) in lives.items()
        for d in range(days)
    ]
    con.executemany("INSERT INTO daily_availability VALUES (?, ?, ?)", rows)
    con.close()


def test_a_ticker_reused_twice_is_a_chain_of_three_contracts(tmp_path):
    lives = {
        "AERGOUSDTSETTLEDSETTLED": (0, 9),  # the first contract, renamed twice
        "AERGOUSDTSETTLED": (12, 20),
        "AERGOUSDT": (25, 40),
        "OLDUSDTSETTLED": (0, 5),  # a settled history whose ticker nobody took (yet)
        "BTCUSDT_210326": (0, 40),
    }
    _database(tmp_path / "a.duckdb", lives)
    # The consumer's own derivation (rolling layout), the SQL the producer's build runs too.
    derive("symbols", tmp_path / "a.duckdb", tmp_path / "symbols.parquet")
    sym = pd.read_parquet(tmp_path / "symbols.parquet")
    assert list(sym.columns) == list(SYMBOLS_COLUMNS)
    assert _links(sym) == {
        "AERGOUSDTSETTLEDSETTLED": ("AERGOUSDT", None, "AERGOUSDTSETTLED"),
        "AERGOUSDTSETTLED": ("AERGOUSDT", "AERGOUSDTSETTLEDSETTLED", "AERGOUSDT"),
        "AERGOUSDT": ("AERGOUSDT", "AERGOUSDTSETTLED", None),
        "OLDUSDTSETTLED": ("OLDUSDT", None, None),
        "BTCUSDT_210326": ("BTCUSDT_210326", None, None),
    }
    _check_links(sym)


@settings(max_examples=40, deadline=None)
@given(
    reuses=st.integers(0, 3),
    underscore=st.booleans(),
    lengths=st.lists(st.integers(1, 6), min_size=4, max_size=4),
    relisted=st.booleans(),
)
def test_the_contracts_of_a_ticker_are_chained_oldest_first(reuses, underscore, lengths, relisted):
    # Binance appends a suffix to a history each time the ticker is reused: the oldest
    # contract carries the most. The plain ticker may not be listed again (yet).
    suffix = "_SETTLED" if underscore else "SETTLED"
    names = [f"ZORKUSDT{suffix * (reuses - i)}" for i in range(reuses)]
    names += ["ZORKUSDT"] if relisted else []
    lives, day = {}, 0
    for name, n in zip(names, lengths, strict=False):
        lives[name] = (day, day + n - 1)
        day += n + 1
    lives["BTCUSDT"] = (0, day)
    con = duckdb.connect()
    con.execute("CREATE TABLE daily_availability (date DATE, symbol VARCHAR, available BOOLEAN)")
    con.executemany(
        "INSERT INTO daily_availability VALUES (?, ?, ?)",
        [
            (dt.date(2021, 1, 1) + dt.timedelta(days=d), s, True)
            for s, (lo, hi) in lives.items()
            for d in range(lo, hi + 1)
        ],
    )
    sym = con.sql(SYMBOLS_SQL).df()
    con.close()
    links = _links(sym)
    for i, name in enumerate(names):
        before = names[i - 1] if i else None
        after = names[i + 1] if i + 1 < len(names) else None
        assert links[name] == ("ZORKUSDT", before, after)
    assert links["BTCUSDT"] == ("BTCUSDT", None, None)


def test_universe_by_contract_keeps_a_reused_tickers_contracts_apart(published):
    with Query(V_NEW) as q:
        by_symbol = q.universe("2020-01-01", "2021-06-30", every_day=False)
        by_contract = q.universe("2020-01-01", "2021-06-30", every_day=False, by="contract")
        links = _links(q.symbols())
        with pytest.raises(QueryError, match="by='contract'"):
            q.universe("2020-01-01", "2021-06-30", by="ticker")
        for bad in (None, "contracts", ["symbol"]):
            with pytest.raises(QueryError, match="by must be one of 'symbol', 'contract'"):
                q.universe("2020-01-01", "2021-06-30", by=bad)
    assert list(by_symbol.columns) == UNIVERSE_COLUMNS  # unchanged by default
    assert by_symbol.symbol.is_monotonic_increasing
    assert list(by_contract.columns) == [
        "symbol", "ticker", *UNIVERSE_COLUMNS[1:], "predecessor", "successor"
    ]  # fmt: skip
    # The same rows and figures, never merged: one row per contract.
    same = by_contract.drop(columns=["ticker", "predecessor", "successor"])
    pd.testing.assert_frame_equal(
        same.sort_values("symbol").reset_index(drop=True), by_symbol.reset_index(drop=True)
    )
    for settled, plain in REUSED.items():
        rows = by_contract[by_contract.ticker == plain]
        assert rows.symbol.tolist() == [settled, plain]  # oldest first, two contracts
        assert (
            rows.days_available.tolist()
            == by_symbol.set_index("symbol").loc[[settled, plain], "days_available"].tolist()
        )
    for row in by_contract.itertuples():
        want = links[row.symbol]
        got = tuple(None if pd.isna(v) else v for v in (row.ticker, row.predecessor, row.successor))
        assert got == want
    assert by_contract.ticker.is_monotonic_increasing


def test_rolling_layout_derives_the_same_links(rolling):
    sym = intake_bfa.read("symbols")
    assert list(sym.columns) == list(SYMBOLS_COLUMNS)
    links = _links(sym)
    for settled, plain in REUSED.items():
        assert links[settled] == (plain, None, plain) and links[plain] == (plain, settled, None)
    _check_links(sym)


def test_cli_universe_by_contract(published):
    args = ("universe", "2020-01-01", "2021-06-30", "--any-day", "-q", "--format", "json")
    out = run_cli(*args, "--by", "contract")
    assert out.returncode == 0, out.stderr
    rows = {r["symbol"]: r for r in json.loads(out.stdout)}
    assert rows["BNXUSDTSETTLED"]["ticker"] == rows["BNXUSDT"]["ticker"] == "BNXUSDT"
    assert rows["BNXUSDTSETTLED"]["successor"] == "BNXUSDT"
    assert rows["BNXUSDT"]["predecessor"] == "BNXUSDTSETTLED"
    bad = run_cli(*args, "--by", "ticker")
    assert bad.returncode == 2 and "invalid choice: 'ticker'" in bad.stderr
