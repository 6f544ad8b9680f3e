"""Tests of the synthetic ``daily_availability`` generator (intake_bfa.testing.synthetic)."""

from __future__ import annotations

import datetime as dt
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from intake_bfa.testing import synthetic as syn

EXPECTED_SCHEMA = [
    ("date", pa.date32()),
    ("symbol", pa.string()),
    ("available", pa.bool_()),
    ("file_size_bytes", pa.int64()),
    ("last_modified", pa.timestamp("us")),
    ("url", pa.string()),
    ("status_code", pa.int32()),
    ("probe_timestamp", pa.timestamp("us")),
    ("quote_volume_usdt", pa.float64()),
    ("trade_count", pa.int64()),
    ("volume_base", pa.float64()),
    ("taker_buy_volume_base", pa.float64()),
    ("taker_buy_quote_volume_usdt", pa.float64()),
    ("open_price", pa.float64()),
    ("high_price", pa.float64()),
    ("low_price", pa.float64()),
    ("close_price", pa.float64()),
]
KLINE_COLUMNS = [name for name, _ in EXPECTED_SCHEMA[8:]]
QUIRKS = {
    "BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "1MBABYDOGEUSDT", "0GUSDT", "AUSDT", "BTCUSDC",
    "ETHBUSD", "ETHBTC", "BTCDOMUSDT", "BNXUSDTSETTLED", "BNXUSDT", "ICPUSDT_SETTLED",
    "ICPUSDT", "币安人生USDT",
}  # fmt: skip
QUARTERLY = re.compile(r"^(BTC|ETH)USDT_(\d{6})$")
FULL_END = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def small() -> pa.Table:
    return syn.small_sample()


@pytest.fixture(scope="module")
def full() -> pa.Table:
    # Full scale takes ~1-3 s here, so it is generated once for the module.
    t0 = time.perf_counter()
    table = syn.full_sample(FULL_END)
    print(f"\nfull_sample({FULL_END}): {table.num_rows} rows in {time.perf_counter() - t0:.2f} s")
    return table


def spans(table: pa.Table) -> dict[str, tuple[dt.date, dt.date, int]]:
    """symbol -> (first available date, last available date, available days)."""
    avail = table.filter(table["available"])
    grouped = avail.group_by("symbol").aggregate(
        [("date", "min"), ("date", "max"), ("date", "count")]
    )
    return {
        row["symbol"]: (row["date_min"], row["date_max"], row["date_count"])
        for row in grouped.to_pylist()
    }


def live_counts(table: pa.Table, days: list[dt.date]) -> list[int]:
    avail = table.filter(table["available"])
    return [pc.sum(pc.equal(avail["date"], pa.scalar(d, pa.date32()))).as_py() for d in days]


def test_schema_is_exact(small: pa.Table) -> None:
    assert [(f.name, f.type) for f in small.schema] == EXPECTED_SCHEMA
    assert small.schema.metadata[b"intake_bfa.synthetic"].decode() == syn.SYNTHETIC_NOTE
    small.validate(full=True)


def test_deterministic_byte_identical(small: pa.Table) -> None:
    def ipc(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    assert ipc(syn.small_sample()) == ipc(small)
    other = syn.small_sample(seed=8)
    assert not other.equals(small)
    kw = dict(start=syn.EARLIEST, end=dt.date(2022, 1, 1), seed=3)
    assert syn.make_symbols(80, **kw) == syn.make_symbols(80, **kw)


def test_dense_sorted_unique_grid(small: pa.Table) -> None:
    days = (dt.date(2021, 6, 30) - syn.EARLIEST).days + 1
    symbols = sorted(set(small["symbol"].to_pylist()))
    assert 40 <= len(symbols) <= 60
    assert small.num_rows == days * len(symbols)
    dates = small["date"].to_numpy()
    expected = np.repeat(
        np.arange(np.datetime64(syn.EARLIEST), days + np.datetime64(syn.EARLIEST)), len(symbols)
    )
    assert np.array_equal(dates.astype("datetime64[D]"), expected)
    # Within every date the symbols are the full sorted list (Python str order == byte order).
    assert small["symbol"].to_pylist() == symbols * days
    assert small.group_by(["date", "symbol"]).aggregate([]).num_rows == small.num_rows


def test_every_quirk_present(small: pa.Table) -> None:
    seen = spans(small)
    assert seen.keys() >= QUIRKS
    quarterlies = [s for s in seen if QUARTERLY.match(s)]
    assert {s[:3] for s in quarterlies} == {"BTC", "ETH"}
    assert any(s.startswith("1000") for s in seen if s not in QUIRKS)  # pseudo 1000-tickers too
    assert all(seen[s][2] > 0 for s in QUIRKS)


def test_quirks_squeezed_into_short_range() -> None:
    start, end = dt.date(2024, 1, 1), dt.date(2024, 2, 29)
    table = syn.generate_daily_availability(n_symbols=40, start=start, end=end, seed=1)
    seen = spans(table)
    assert seen.keys() >= QUIRKS
    assert any(QUARTERLY.match(s) for s in seen)
    assert seen["BNXUSDTSETTLED"][1] < seen["BNXUSDT"][0]
    assert seen["ICPUSDT_SETTLED"][1] < seen["ICPUSDT"][0]


@pytest.mark.parametrize("end", [dt.date(2021, 6, 30), dt.date(2024, 12, 31)])
def test_quarterlies_live_in_window_ending_on_delivery(end: dt.date) -> None:
    table = syn.generate_daily_availability(n_symbols=60, end=end, seed=5)
    quarterlies = {s: v for s, v in spans(table).items() if QUARTERLY.match(s)}
    assert len(quarterlies) >= 4
    for symbol, (first, last, _) in quarterlies.items():
        delivery = dt.datetime.strptime(QUARTERLY.match(symbol).group(2), "%y%m%d").date()
        assert delivery.weekday() == 4 and delivery.month % 3 == 0
        assert (delivery + dt.timedelta(days=7)).month != delivery.month  # last Friday
        assert delivery - dt.timedelta(days=181) <= first and last <= delivery
        if delivery <= end:
            assert last == delivery, symbol
        else:
            assert last == end, symbol


def test_settled_history_ends_before_relisting() -> None:
    table = syn.generate_daily_availability(n_symbols=40, end=dt.date(2024, 6, 30), seed=2)
    seen = spans(table)
    # Real dates fit this range: the old BNX history is renamed on 2023-02-14.
    assert seen["BNXUSDTSETTLED"][1] == dt.date(2023, 2, 14)
    assert seen["BNXUSDTSETTLED"][1] < seen["BNXUSDT"][0]
    assert seen["ICPUSDT_SETTLED"][1] < seen["ICPUSDT"][0]
    # ... and BUSD contracts are wound down in late 2023.
    assert seen["ETHBUSD"][1] == dt.date(2023, 12, 15)


def test_unavailable_rows_are_empty_404(small: pa.Table) -> None:
    gone = small.filter(pc.invert(small["available"]))
    assert gone.num_rows > 0
    assert pc.all(pc.equal(gone["status_code"], 404)).as_py()
    for name in ["file_size_bytes", "last_modified", *KLINE_COLUMNS]:
        assert gone[name].null_count == gone.num_rows, name
    assert gone["url"].null_count == 0 and gone["probe_timestamp"].null_count == 0


def test_available_rows_are_plausible(small: pa.Table) -> None:
    ok = small.filter(small["available"])
    # Files appear after the UTC day they hold.
    day_end = pc.add(
        pc.cast(ok["date"], pa.timestamp("us")), pa.scalar(86_400_000_000, pa.duration("us"))
    )
    ok = ok.append_column("date_end", day_end).to_pandas()
    assert (ok["status_code"] == 200).all()
    assert ok["file_size_bytes"].notna().all() and (ok["file_size_bytes"] > 1000).all()
    assert 20_000 < ok["file_size_bytes"].median() < 150_000
    assert (ok["last_modified"] > ok["date_end"]).all()
    assert (ok["probe_timestamp"] > ok["last_modified"]).all()
    null_share = ok["quote_volume_usdt"].isna().mean()
    assert 0.002 < null_share < 0.03
    assert (ok[KLINE_COLUMNS].isna().all(axis=1) == ok["quote_volume_usdt"].isna()).all()
    kl = ok.dropna(subset=["quote_volume_usdt"])
    share = kl["taker_buy_quote_volume_usdt"] / kl["quote_volume_usdt"]
    assert share.between(0.4, 0.6).all()
    assert (kl["trade_count"] >= 1).all()
    first = small.slice(0, 1).to_pylist()[0]
    sym, day = first["symbol"], first["date"].isoformat()
    assert first["url"] == f"{syn.URL_PREFIX}{sym}/1m/{sym}-1m-{day}.zip"


def test_btc_eth_complete_and_largest(small: pa.Table) -> None:
    days = (dt.date(2021, 6, 30) - syn.EARLIEST).days + 1
    seen = spans(small)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert seen[symbol] == (syn.EARLIEST, dt.date(2021, 6, 30), days)
    frame = small.to_pandas()
    median = frame.groupby("symbol")["quote_volume_usdt"].median().sort_values()
    assert set(median.index[-2:]) == {"BTCUSDT", "ETHUSDT"}
    assert frame.loc[frame["symbol"] == "BTCUSDT", "quote_volume_usdt"].notna().all()


def check_ohlc(table: pa.Table) -> None:
    o, h, lo, c = (table[f"{k}_price"] for k in ("open", "high", "low", "close"))
    assert pc.all(pc.greater_equal(h, pc.max_element_wise(o, c))).as_py()
    assert pc.all(pc.less_equal(lo, pc.min_element_wise(o, c))).as_py()
    assert pc.all(pc.greater(lo, 0)).as_py()


def test_high_low_bounds(small: pa.Table) -> None:
    check_ohlc(small)


def test_make_symbols_contract() -> None:
    specs = syn.make_symbols(300, start=syn.EARLIEST, end=FULL_END, seed=7)
    names = [s.symbol for s in specs]
    assert len(names) == len(set(names)) == 300
    assert all(
        s.listed <= FULL_END and (s.delisted is None or s.delisted > s.listed) for s in specs
    )
    assert {s.kind for s in specs} == {"perpetual", "delivery", "settled"}
    assert {s.quote for s in specs} >= {"USDT", "USDC", "BUSD", "BTC"}
    with pytest.raises(ValueError):
        syn.make_symbols(5, start=syn.EARLIEST, end=FULL_END, seed=7)
    with pytest.raises(ValueError):
        syn.make_symbols(100, start=FULL_END, end=syn.EARLIEST, seed=7)


def test_full_scale_shape_and_growth(full: pa.Table) -> None:
    symbols = pc.unique(full["symbol"])
    assert len(symbols) == 1000
    assert 2_400_000 <= full.num_rows <= 2_600_000
    assert full.num_rows == ((FULL_END - syn.EARLIEST).days + 1) * 1000
    years = [dt.date(2020, 1, 1), dt.date(2022, 1, 1), dt.date(2024, 1, 1), FULL_END]
    counts = live_counts(full, years)
    assert counts == sorted(counts)
    assert 10 <= counts[0] <= 40 and 550 <= counts[-1] <= 700
    check_ohlc(full)


def test_full_scale_gaps_and_delistings(full: pa.Table) -> None:
    seen = spans(full)
    assert len(seen) == 1000
    # Missing days strictly inside each symbol's life: ~0.2-0.5 %.
    inside = sum((last - first).days + 1 for first, last, _ in seen.values())
    missing = 1 - sum(n for *_, n in seen.values()) / inside
    assert 0.002 <= missing <= 0.006
    others = [s for s in seen if s not in QUIRKS and not QUARTERLY.match(s)]
    delisted = sum(seen[s][1] < FULL_END for s in others) / len(others)
    assert 0.25 <= delisted <= 0.4
    # Market-wide outages: some date where a large share of live symbols miss.
    avail = full.filter(full["available"])
    per_day = avail.group_by("date").aggregate([("symbol", "count")]).sort_by("date")
    n = per_day["symbol_count"].to_numpy().astype(float)
    assert (n[1:-1] < 0.6 * np.minimum(n[:-2], n[2:])).sum() >= 1
