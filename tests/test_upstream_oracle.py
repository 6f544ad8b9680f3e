"""The upstream project's own code as the oracle, on a release its own code built.

The database is written by ``binance-futures-availability`` (from the package index, in a
venv of its own: :func:`tests.conftest.upstream_python`) with its schema and
``insert_batch``, gzipped like its workflow, published in its rolling layout on the local
release server, and read through intake-bfa. Every answer of :class:`intake_bfa.query.Query`
must equal the upstream's own query classes on the same file (``tests/upstream/oracle.py``):
snapshot, symbols in a range, timeline, first and last available date, daily counts, new
listings, top symbols and every rank history of the rankings file the upstream's own generator
(``.github/scripts/generate_volume_rankings.py``, from its sdist) wrote.

The other way round, ``publish --rolling`` of a release *our* producer built must be what the
upstream's users and package expect: the generator on our database finds no differing row
in our rankings, which pass its ``validate_rankings_table``; its query classes answer on our
database as on its own; and its ``insert_batch`` goes on from our database.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_bfa.config import get_settings
from intake_bfa.producer.build import build_release
from intake_bfa.producer.github_write import GitHubWriter
from intake_bfa.producer.publish import publish
from intake_bfa.query import Query
from intake_bfa.testing.releases import publish_rolling
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROLLING_END, ROLLING_REPO, ROOT, UPSTREAM_VENV

pytestmark = pytest.mark.slow  # the upstream venv and its own releases: ~20 s; runs in .ci/run

ORACLE = ROOT / "tests" / "upstream" / "oracle.py"
GENERATOR = UPSTREAM_VENV / "source" / ".github" / "scripts" / "generate_volume_rankings.py"
DATES = ["2019-12-31", "2020-06-30", "2021-03-04", "2021-05-13", "2021-06-30", "2021-07-01"]
#: Every day of the sample but the first: the upstream's delistings of each.
DELISTING_DATES = [
    (dt.date(2020, 1, 1) + dt.timedelta(days=i)).isoformat()
    for i in range((ROLLING_END - dt.date(2020, 1, 1)).days + 1)
]
RANGES = [("2020-01-01", "2020-03-31"), ("2021-06-01", "2021-06-30")]


#: Added to the sample: a pair with rows but never a file (like ETHBTC upstream), a
#: twice-settled name, and the real quirky names, traded in June 2021 (one with a gap, one
#: with a zero-volume day: the upstream ranks it).
NEVER, TWICE_SETTLED = "NEVERUSDT", "AERGOUSDTSETTLEDSETTLED"
QUIRKY = ("1000PEPEUSDT", "BTCUSDT_240329", "BNXUSDTSETTLED", "币安人生USDT")
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
    for k, symbol in enumerate(QUIRKY):
        for i in range(25):
            day = dt.date(2021, 6, 1) + dt.timedelta(days=i)
            up = not (symbol == "1000PEPEUSDT" and i in (10, 11))
            volume = (
                0.0 if (symbol == "BNXUSDTSETTLED" and i == 5) else (1 + (i * 7 + k) % 13) * 3e6
            )
            url = f"https://data.binance.vision/data/futures/um/daily/klines/{symbol}/1m/x.zip"
            extra.append(
                {
                    **template,
                    "date": day,
                    "symbol": symbol,
                    "available": up,
                    "status_code": 200 if up else 404,
                    "file_size_bytes": 50_000 + i if up else None,
                    "last_modified": dt.datetime(2021, 6, 2) + dt.timedelta(days=i) if up else None,
                    "url": url,
                    "quote_volume_usdt": volume if up else None,
                    "trade_count": int(volume // 1000) if up else None,
                }
            )
    # The sample's dense grid already has rows for some of these names: ours replace them.
    replaced = {(r["date"], r["symbol"]) for r in extra}
    rows = [r for r in table.to_pylist() if (r["date"], r["symbol"]) not in replaced]
    # A tie in volume on TIE_DAY between the 2nd and 3rd symbols: ranks differ on purpose.
    day_rows = [r for r in rows if r["date"] == TIE_DAY and r["quote_volume_usdt"]]
    second, third = sorted(day_rows, key=lambda r: -r["quote_volume_usdt"])[1:3]
    third["quote_volume_usdt"] = second["quote_volume_usdt"]
    return pa.Table.from_pylist(rows + extra, schema=table.schema)


def _plain(values) -> list:
    """Values as Python numbers, None for every kind of missing (NaN, NA, None)."""
    import pandas as pd

    return [None if pd.isna(v) else float(v) for v in values]


def _day(value) -> str:
    """A date as ``YYYY-MM-DD`` (pandas gives Timestamps, DuckDB dates)."""
    return str(value)[:10]


def _assert_documented_conventions(ranks) -> None:
    """What docs/datasets.md says of the rankings, checked on the generator's own file."""
    rose = fell = 0
    for _, rows in ranks.sort_values("date").groupby("symbol"):
        r = rows["rank"].tolist()
        change_1, change_7 = rows.rank_change_1d.tolist(), rows.rank_change_7d.tolist()
        days = rows.days_available.tolist()
        for i in range(len(r)):
            # A row lag over the symbol's ranked days (not calendar days); negative = rose.
            want_1 = r[i] - r[i - 1] if i >= 1 else None
            want_7 = r[i] - r[i - 7] if i >= 7 else None
            assert _plain([change_1[i], change_7[i]]) == _plain([want_1, want_7])
            assert days[i] == min(30, i + 1)  # ranked rows so far, capped at 30
            rose += bool(i and r[i] < r[i - 1] and change_1[i] < 0)
            fell += bool(i and r[i] > r[i - 1] and change_1[i] > 0)
    assert rose and fell
    # Percentile: PERCENT_RANK in percent, 0 = the top of the day, 100 = its bottom.
    for _, day in ranks.groupby("date"):
        if len(day) > 1:
            top, bottom = day.nsmallest(1, "rank"), day.nlargest(1, "rank")
            assert float(top.percentile.iloc[0]) == 0.0
            assert float(bottom.percentile.iloc[0]) == 100.0 or day["rank"].max() == 1
    # Rows of a symbol with a gap are consecutive ranked days: 1000PEPEUSDT skipped two.
    pepe = ranks[ranks.symbol == "1000PEPEUSDT"].sort_values("date")
    steps = pepe.date.diff().dropna().map(lambda d: d.days).tolist()
    assert 3 in steps  # a 3-day step, yet its rank_change_1d compares with that row


def _generate_rankings(python, database, output) -> None:
    """Run the upstream's rankings generator script itself, as its workflow does."""
    out = subprocess.run(
        [str(python), str(GENERATOR), "--db-path", str(database), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _upstream(python, *args: str) -> str:
    out = subprocess.run(
        [str(python), str(ORACLE), *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@dataclass
class Upstream:
    """A release built by the upstream's own code, and its answers to our questions."""

    python: Path
    table: Any  # the rows (pyarrow), quirks included
    records: Path  # the same rows as Parquet
    release: Path  # availability.duckdb(.gz) + volume-rankings-timeseries.parquet
    questions: Path
    answers: dict


@pytest.fixture(scope="module")
def upstream(upstream_python, samples, tmp_path_factory) -> Upstream:
    root = tmp_path_factory.mktemp("upstream")
    table = _with_quirks(samples.table(ROLLING_END))
    records = root / "records.parquet"
    pq.write_table(table, records)
    release = root / "release"
    assert json.loads(_upstream(upstream_python, "build", str(records), str(release))) == {
        "rows": table.num_rows
    }
    # The rankings file: the upstream's own generator (from its sdist) on its own database.
    _generate_rankings(
        upstream_python,
        release / "availability.duckdb",
        release / "volume-rankings-timeseries.parquet",
    )
    symbols = sorted(set(table.column("symbol").to_pylist()))
    questions = root / "questions.json"
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
    answers = json.loads(
        _upstream(upstream_python, "ask", str(release / "availability.duckdb"), str(questions))
    )
    return Upstream(upstream_python, table, records, release, questions, answers)


def test_query_answers_equal_the_upstream_packages_on_its_own_database(
    upstream, server, monkeypatch
):
    table, release, want = upstream.table, upstream.release, upstream.answers
    rankings = release / "volume-rankings-timeseries.parquet"
    symbols = sorted(set(table.column("symbol").to_pylist()))
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
        # Rank history: the generator's rows, as the file has them, for every ranked symbol.
        theirs_ranks = pq.read_table(rankings).to_pandas()
        _assert_documented_conventions(theirs_ranks)
        for symbol in sorted(set(theirs_ranks.symbol)):
            mine = q.rank_history(symbol)
            want_rows = theirs_ranks[theirs_ranks.symbol == symbol].sort_values("date")
            for column in ("rank", "rank_change_1d", "rank_change_7d", "percentile"):
                assert _plain(mine[column]) == _plain(want_rows[column]), (symbol, column)
            compared += 1
        twice = q.lifetime(TWICE_SETTLED)  # both SETTLED suffixes stripped from the pair
        assert (twice.quote_asset[0], twice.contract_kind[0]) == ("USDT", "settled")
        # A pair that never had a file has a timeline although ``symbols`` lacks it.
        assert NEVER not in set(q.symbols().symbol) and len(q.timeline(NEVER)) == 20
    print(f"compared {compared} answers with the upstream package")  # shown with -s
    assert compared > 3 * len(symbols)


TOKEN = "ghp_upstreamoracletoken0123456789"
PUBLISH_REPO = "bfa-oracle/binance-futures-availability"


def _download_rolling(srv: ReleaseServer, dest: Path) -> dict[str, Path]:
    """Every asset of the rolling ``latest`` release, fetched as its users fetch them."""
    writer = GitHubWriter(get_settings(token=TOKEN, repo=PUBLISH_REPO))
    (latest,) = [r for r in writer.list_releases() if r["tag_name"] == "latest"]
    dest.mkdir()
    files = {}
    for asset in latest["assets"]:
        with urllib.request.urlopen(asset["browser_download_url"], timeout=60) as resp:
            (dest / asset["name"]).write_bytes(resp.read())  # a redirect to the object store
        files[asset["name"]] = dest / asset["name"]
    return files


def _differing_rows(ours: Path, theirs: Path) -> tuple[int, int]:
    """Rows (all columns but generation_timestamp) in only one of two Parquet files."""
    cols = "* EXCLUDE (generation_timestamp)"
    q = "SELECT COUNT(*) FROM (SELECT {c} FROM read_parquet(?) EXCEPT ALL SELECT {c} FROM read_parquet(?))"
    one = duckdb.execute(q.format(c=cols), [str(ours), str(theirs)]).fetchone()[0]
    two = duckdb.execute(q.format(c=cols), [str(theirs), str(ours)]).fetchone()[0]
    return one, two


def test_rolling_publish_is_what_the_upstreams_users_and_package_expect(
    upstream, tmp_path, monkeypatch
):
    """``bfa publish --rolling`` of a release *we* built, checked with the upstream's own code."""
    folder = tmp_path / "ours"
    build_release(upstream.table, folder, "2021-07-01")  # our producer, the same rows
    with ReleaseServer(token=TOKEN) as srv:
        srv.add_repo(PUBLISH_REPO)
        monkeypatch.setenv("BFA_API_URL", srv.api_url)
        settings = get_settings(token=TOKEN, repo=PUBLISH_REPO)
        report = publish(folder, settings=settings, rolling=True, keep_daily=None)
        assert report.rolling_refreshed and report.errors == [], report.errors
        files = _download_rolling(srv, tmp_path / "downloaded")
    assert set(files) == {
        "availability.duckdb",
        "availability.duckdb.gz",
        "volume-rankings-timeseries.parquet",
    }
    database = files["availability.duckdb"]
    assert gzip.decompress(files["availability.duckdb.gz"].read_bytes()) == database.read_bytes()

    # 1. The rankings: the upstream's generator run on the database we published finds the
    # very rows we published, and on its own database (the same rows, its own writer) too.
    theirs = tmp_path / "generated.parquet"
    _generate_rankings(upstream.python, database, theirs)
    published = files["volume-rankings-timeseries.parquet"]
    rows = pq.read_metadata(published).num_rows
    assert rows == pq.read_metadata(theirs).num_rows > 1000
    assert _differing_rows(published, theirs) == (0, 0)
    own = upstream.release / "volume-rankings-timeseries.parquet"
    assert _differing_rows(published, own) == (0, 0)
    # ... and passes its validate_rankings_table (exact schema, ranks >= 1).
    checked = json.loads(_upstream(upstream.python, "validate", str(published), str(GENERATOR)))
    assert checked["rows"] == rows

    # 2. The database answers the upstream package's own query classes as its own does.
    answers = json.loads(_upstream(upstream.python, "ask", str(database), str(upstream.questions)))
    assert answers == upstream.answers

    # 3. Its daily update can go on from our database: it opens it read-write (its
    # create_schema runs), upserts a re-probed row and a new day, and refreshes the counts.
    new_day = ROLLING_END + dt.timedelta(days=1)
    last = [r for r in upstream.table.to_pylist() if r["date"] == ROLLING_END and r["available"]]
    reprobed = {**last[0], "file_size_bytes": 1358, "probe_timestamp": dt.datetime(2021, 7, 2)}
    fresh = [{**r, "date": new_day, "probe_timestamp": dt.datetime(2021, 7, 2)} for r in last[:3]]
    batch = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pylist([reprobed, *fresh], schema=upstream.table.schema), batch)
    copy = tmp_path / "resumed.duckdb"
    shutil.copyfile(database, copy)
    after = json.loads(_upstream(upstream.python, "upsert", str(copy), str(batch)))
    assert after["rows"] == upstream.table.num_rows + 3
    assert after["counts"][new_day.isoformat()] == [3, 3]
    assert after["snapshot"][new_day.isoformat()] == sorted(r["symbol"] for r in fresh)
    with duckdb.connect(str(copy), read_only=True) as con:
        size = con.execute(
            "SELECT file_size_bytes FROM daily_availability WHERE date = ? AND symbol = ?",
            [ROLLING_END, reprobed["symbol"]],
        ).fetchone()
    assert size == (1358,)
