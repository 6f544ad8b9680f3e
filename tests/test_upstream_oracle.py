"""The upstream project's own code as the oracle, on a release its own code built.

The database is written by ``binance-futures-availability`` (from the package index, in a
venv of its own: :func:`tests.conftest.upstream_python`) with its schema and
``insert_batch``, gzipped like its workflow, published in its rolling layout on the local
release server, and read through intake-bfa. Every answer of :class:`intake_bfa.query.Query`
must equal the upstream's own query classes on the same file (``tests/upstream/oracle.py``):
snapshot, symbols in a range, timeline, first and last available date, daily counts, new
listings. Not compared here yet: rankings (the upstream's generator ships in its sdist only).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess

import pyarrow.parquet as pq

from intake_bfa.query import Query
from intake_bfa.testing.releases import build_rolling, publish_rolling

from .conftest import ROLLING_END, ROLLING_REPO, ROOT

ORACLE = ROOT / "tests" / "upstream" / "oracle.py"
DATES = ["2019-12-31", "2020-06-30", "2021-03-04", "2021-05-13", "2021-06-30", "2021-07-01"]
#: Every day of the sample but the first: the upstream's delistings of each.
DELISTING_DATES = [
    (dt.date(2020, 1, 1) + dt.timedelta(days=i)).isoformat()
    for i in range((ROLLING_END - dt.date(2020, 1, 1)).days + 1)
]
RANGES = [("2020-01-01", "2020-03-31"), ("2021-06-01", "2021-06-30")]


#: Added to the sample: a pair with rows but never a file (like ETHBTC upstream), and a
#: twice-settled name.
NEVER, TWICE_SETTLED = "NEVERUSDT", "AERGOUSDTSETTLEDSETTLED"
TIE_DAY = dt.date(2021, 3, 4)


def _with_quirks(table):
    """The sample plus rows for :data:`NEVER` (all 404) and :data:`TWICE_SETTLED`."""
    import pyarrow as pa

    template = table.slice(0, 1).to_pylist()[0]
    extra = []
    for i in range(20):
        day = dt.date(2021, 6, 1) + dt.timedelta(days=i)
        url = f"https://data.binance.vision/data/futures/um/daily/klines/X/1m/X-1m-{day}.zip"
        extra.append(
            {
                **template,
                "date": day,
                "symbol": NEVER,
                "available": False,
                "status_code": 404,
                "file_size_bytes": None,
                "last_modified": None,
                "url": url.replace("X", NEVER),
                "quote_volume_usdt": None,
                "trade_count": None,
            }
        )
        extra.append(
            {
                **template,
                "date": day,
                "symbol": TWICE_SETTLED,
                "available": i < 15,
                "status_code": 200 if i < 15 else 404,
                "url": url.replace("X", TWICE_SETTLED),
            }
        )
    rows = table.to_pylist()
    # A tie in volume on TIE_DAY between the 2nd and 3rd symbols: ranks differ on purpose.
    day_rows = [r for r in rows if r["date"] == TIE_DAY and r["quote_volume_usdt"]]
    second, third = sorted(day_rows, key=lambda r: -r["quote_volume_usdt"])[1:3]
    third["quote_volume_usdt"] = second["quote_volume_usdt"]
    return pa.Table.from_pylist(rows + extra, schema=table.schema)


def _day(value) -> str:
    """A date as ``YYYY-MM-DD`` (pandas gives Timestamps, DuckDB dates)."""
    return str(value)[:10]


def _upstream(python, *args: str) -> str:
    out = subprocess.run(
        [str(python), str(ORACLE), *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_query_answers_equal_the_upstream_packages_on_its_own_database(
    upstream_python, server, samples, tmp_path, monkeypatch
):
    table = _with_quirks(samples.table(ROLLING_END))
    records = tmp_path / "records.parquet"
    pq.write_table(table, records)
    release = tmp_path / "release"
    assert json.loads(_upstream(upstream_python, "build", str(records), str(release))) == {
        "rows": table.num_rows
    }
    # The rankings file: ours, from the same rows (the upstream's generator ships only in
    # its sdist; its file's conventions are not compared here yet).
    ours = build_rolling(table, tmp_path / "ours")
    shutil.copyfile(
        ours / "volume-rankings-timeseries.parquet", release / "volume-rankings-timeseries.parquet"
    )
    symbols = sorted(set(table.column("symbol").to_pylist()))
    questions = tmp_path / "questions.json"
    questions.write_text(
        json.dumps(
            {
                "dates": DATES,
                "ranges": RANGES,
                "symbols": symbols,
                "top_n": 5,
                "delisting_dates": DELISTING_DATES,
            }
        )
    )
    want = json.loads(
        _upstream(upstream_python, "ask", str(release / "availability.duckdb"), str(questions))
    )

    publish_rolling(server, ROLLING_REPO, release)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", ROLLING_REPO)
    compared = 0
    with Query() as q:
        assert q.version.startswith("rolling-")
        for day in DATES:
            got = sorted(q.snapshot(day)["symbol"]) if day <= str(ROLLING_END) else []
            assert got == want["snapshot"][day], day
            compared += 1
        for start, end in RANGES:
            got = sorted(q.available_in(start, end)["symbol"])
            assert got == want["range"][f"{start}..{end}"], (start, end)
            compared += 1
        for symbol in symbols:
            timeline = q.timeline(symbol)
            pairs = zip(timeline.date, timeline.available, strict=True)
            got = [[_day(d), bool(a)] for d, a in pairs]
            assert got == want["timeline"][symbol], symbol
            life = q.lifetime(symbol)  # empty for a symbol that never had a file
            first = _day(life.first_date[0]) if len(life) else None
            last = _day(life.last_date[0]) if len(life) else None
            assert (first, last) == (want["first"][symbol], want["last"][symbol]), symbol
            compared += 3
        counts = q.counts()
        pairs = zip(counts.date, counts.available_symbols, strict=True)
        got = {_day(d): int(n) for d, n in pairs if n}
        assert got == want["counts"]
        compared += len(got)
        for day in DATES:
            if day > str(ROLLING_END):
                continue
            got = sorted(q.listings(day, day)["symbol"])
            assert got == want["new_listings"][day], day
            compared += 1
        for day in DATES:
            if day > str(ROLLING_END):
                continue
            top = q.top(day, 5)
            got = [[s, int(r)] for s, r in zip(top.symbol, top["rank"], strict=True)]
            # On purpose (docs/datasets.md): our ranks are dense (a tie does not skip the
            # next rank), the upstream's are RANK(); ties are ordered by symbol here.
            theirs = sorted(want["top"][day], key=lambda sr: (sr[1], sr[0]))
            ranks = sorted({r for _, r in theirs})
            dense = [[sym, ranks.index(r) + 1] for sym, r in theirs]
            assert got == dense, day
            compared += 1
            if day == str(TIE_DAY):
                assert [r for _, r in theirs] == [1, 2, 2, 4, 5]
                assert [r for _, r in got] == [1, 2, 2, 3, 4]
        gone = 0
        for day in DELISTING_DATES:
            # On purpose (docs/datasets.md): the upstream's delisting on D is any symbol
            # available on D-1 and not on D; ours is the last day of a symbol that never
            # came back. Ours on D-1 is theirs on D less the symbols that came back.
            before = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
            ours_ = set(q.delistings(before, before)["symbol"])
            theirs = set(want["delistings"][day])
            assert ours_ <= theirs, day
            for symbol in theirs - ours_:
                later = q.timeline(symbol, day)
                assert later.available.any() or symbol in set(q.symbols(listed_now=True).symbol)
            gone += len(theirs)
            compared += 1
        assert gone > 0, "no delisting or gap in the compared days: the check would be vacuous"
        twice = q.lifetime(TWICE_SETTLED)  # both SETTLED suffixes stripped from the pair
        assert (twice.quote_asset[0], twice.contract_kind[0]) == ("USDT", "settled")
        # A pair that never had a file has a timeline although ``symbols`` lacks it.
        assert NEVER not in set(q.symbols().symbol) and len(q.timeline(NEVER)) == 20
    print(f"compared {compared} answers with the upstream package")  # shown with -s
    assert compared > 3 * len(symbols)
