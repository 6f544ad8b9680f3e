"""The query commands through the real ``bfa`` CLI, against the local release server."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa.cli.output import render_table
from intake_bfa.testing.releases import SAMPLE_REPO, publish_rolling

from .conftest import V_NEW, V_OLD, run_cli

QUERY_COMMANDS = [
    "snapshot", "range", "timeline", "lifetime", "listings", "delistings", "counts", "gaps",
    "top", "rank", "universe", "sql",
]  # fmt: skip


def ok(*args: str) -> str:
    out = run_cli(*args, "-q")
    assert out.returncode == 0, out.stderr
    return out.stdout


def as_json(*args: str) -> list[dict]:
    return json.loads(ok(*args, "--format", "json"))


def fails(*args: str, status: int = 1) -> str:
    out = run_cli(*args)
    assert out.returncode == status, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    if status == 1:
        assert len(lines) == 1 and lines[0].startswith("bfa: error: "), out.stderr
        assert "Traceback" not in out.stderr
    return out.stderr


@pytest.fixture
def da(published):
    return intake_bfa.read("daily_availability", V_NEW)


def test_every_query_command_has_help_with_an_example():
    # (that every command's description has an example: tests/test_cli.py)
    for name in QUERY_COMMANDS:
        out = run_cli(name, "--help")
        text = " ".join(out.stdout.split())  # argparse wraps lines
        assert out.returncode == 0 and "Example: bfa " + name in text, name
        assert "Exit status: 0 when the query ran" in text


def test_snapshot_table_json_csv(published, da):
    day = da[(da.date == dt.date(2021, 3, 4)) & da.available]
    want = sorted(day.symbol)
    table = ok("snapshot", "2021-03-04")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["date", "symbol"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[-1] == f"({len(want)} rows; version {V_NEW})"
    # Aligned: every row's symbol starts in the header's column.
    col = lines[0].index("symbol")
    assert [line[col:].split()[0] for line in lines[2:-1]] == want
    records = as_json("snapshot", "2021-03-04")
    assert [r["symbol"] for r in records] == want
    assert records[0]["date"] == "2021-03-04"
    rows = list(csv.DictReader(io.StringIO(ok("snapshot", "2021-03-04", "--format", "csv"))))
    assert [r["symbol"] for r in rows] == want
    usdc = as_json("snapshot", "2021-03-04", "--quote", "USDC", "--columns", "symbol")
    assert usdc == [{"symbol": "BTCUSDC"}, {"symbol": "PUXOTYGUSDC"}]


def test_range_timeline_lifetime_rank(published, da):
    got = as_json("range", "2020-03-01", "2020-03-31")
    window = da[(da.date >= dt.date(2020, 3, 1)) & (da.date <= dt.date(2020, 3, 31)) & da.available]
    assert [r["symbol"] for r in got] == sorted(window.symbol.unique())
    timeline = as_json("timeline", "币安人生USDT", "--start", "2021-06-25")
    assert [r["date"] for r in timeline] == [f"2021-06-{d}" for d in range(25, 31)]
    assert all(r["symbol"] == "币安人生USDT" for r in timeline)
    life = as_json("lifetime", "BTCUSDT_210625")
    assert life[0]["last_date"] == "2021-06-25" and life[0]["listed_now"] is False
    rank = as_json("rank", "ETHUSDT", "--start", "2021-06-28")
    assert [r["rank"] for r in rank] == [2, 2, 2]


def test_listings_delistings_counts_gaps(published):
    assert [r["symbol"] for r in as_json("listings", "--on", "2021-06-17")] == ["LEWAWOLUSDT"]
    since = as_json("listings", "--start", "2021-06-01")
    assert [r["symbol"] for r in since] == ["BTCDOMUSDT", "LEWAWOLUSDT"]
    assert as_json("listings", "--on", "2021-06-18") == []  # empty answer: still exit 0
    dl = as_json("delistings", "--on", "2021-06-25")
    assert {r["symbol"] for r in dl} == {"BTCUSDT_210625", "ETHUSDT_210625"}
    old = as_json("delistings", "--start", "2021-06-20", "--data-version", V_OLD)
    assert "WEMYWUUSDT" in {r["symbol"] for r in old}
    counts = as_json("counts", "--start", "2021-06-28")
    assert [c["date"] for c in counts] == ["2021-06-28", "2021-06-29", "2021-06-30"]
    assert counts[0]["delistings"] == 1  # WEMYWUUSDT's last day
    gaps = as_json("gaps", "VAVALUSDT")
    assert sum(g["days"] for g in gaps) == 14 and gaps[0]["start"] == "2020-05-21"


def test_top_universe_and_outputs(published, tmp_path):
    top = as_json("top", "2021-06-30", "-n", "3")
    assert [t["rank"] for t in top] == [1, 2, 3] and top[0]["symbol"] == "BTCUSDT"
    uni = as_json("universe", "2021-06-01", "2021-06-30", "--min-volume", "1e8")
    assert uni and all(u["days_available"] == 30 and u["avg_quote_volume"] >= 1e8 for u in uni)
    on = as_json("universe", "2021-06-01", "2021-06-30", "--on", "2021-06-15", "--quote", "USDC")
    assert {u["quote_asset"] for u in on} == {"USDC"}
    target = tmp_path / "universe.parquet"
    out = run_cli("universe", "2021-06-01", "2021-06-30", "--output", str(target))
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.startswith("wrote ") and "(parquet)" in out.stderr
    table = pq.read_table(target)
    assert table.column_names[0] == "symbol" and table.num_rows >= len(uni)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    csv_file = tmp_path / "top.csv"
    ok("top", "2021-06-30", "-o", str(csv_file))  # format from the extension
    assert pd.read_csv(csv_file).symbol[0] == "BTCUSDT"
    json_file = tmp_path / "top.txt"
    ok("top", "2021-06-30", "--format", "json", "--output", str(json_file))
    assert json.loads(json_file.read_text())[0]["rank"] == 1
    text_file = tmp_path / "top.out"
    ok("top", "2021-06-30", "-o", str(text_file))
    assert text_file.read_text().splitlines()[-1] == f"(10 rows; version {V_NEW})"


def test_max_rows_truncates_with_a_note(published):
    text = ok("snapshot", "2021-03-04", "--max-rows", "2")
    lines = text.splitlines()
    assert len(lines) == 2 + 2 + 1
    assert "rows, first 2 shown" in lines[-1] and "--max-rows 0" in lines[-1]


def test_render_table_for_a_terminal():
    import pyarrow as pa

    table = pa.table({"symbol": ["A", "BB"], "n": [1, 22], "url": ["x" * 80, None]})
    text = render_table(table, max_rows=1, cell_width=10, note="version v")
    lines = text.splitlines()
    assert lines[0] == "symbol  n  url"
    assert lines[2] == "A       1  xxxxxxxxx…"  # numbers right-aligned, long cells cut
    assert lines[3] == "(2 rows, first 1 shown: --max-rows 0, --format csv or --output FILE for all; version v)"  # fmt: skip


def test_errors_are_one_line_and_exit_1(published):
    assert "(2019-12-31 .. 2021-06-30)" in fails("snapshot", "2018-01-01")
    assert "did you mean BTCUSDT" in fails("timeline", "BTCUSD")
    assert "is after end" in fails("range", "2021-03-01", "2021-02-01")
    assert "not a dataset version" in fails("snapshot", "2021-03-04", "--data-version", "bogus")


def test_usage_errors_exit_2(published, tmp_path):
    assert "needs --output" in fails("top", "2021-06-30", "--format", "parquet", status=2)
    assert "--on cannot be combined" in fails(
        "listings", "--on", "2021-06-17", "--start", "2021-06-01", status=2
    )
    fails("universe", "2021-06-01", status=2)
    fails("universe", "2021-06-01", "2021-06-30", "--min-volume", "lots", status=2)
    fails("snapshot", "2021-03-04", "--format", "xml", status=2)
    # A malformed date is a usage error, named by argparse, on every command that takes one.
    assert "argument DATE: '2021-3-4' is not a date" in fails("snapshot", "2021-3-4", status=2)
    assert "argument END: '2021-02-30'" in fails("range", "2021-02-01", "2021-02-30", status=2)
    assert "argument --start: 'June'" in fails("listings", "--start", "June", status=2)
    assert "argument --on" in fails("delistings", "--on", "2021-6-1", status=2)
    # So is a column the answer does not have (known once answered, still a usage error).
    assert "--columns: no column(s) 'nope'" in fails(
        "snapshot", "2021-03-04", "--columns", "nope", status=2
    )


def test_sql_queries_the_dataset_views(published, da, tmp_path):
    got = as_json("sql", "SELECT COUNT(*) AS n FROM daily_availability WHERE available")
    assert got == [{"n": int(da.available.sum())}]
    kinds = as_json("sql", "SELECT contract_kind, COUNT(*) AS n FROM symbols GROUP BY 1 ORDER BY 1")
    assert [k["contract_kind"] for k in kinds] == ["delivery", "perpetual", "settled"]
    db = as_json("sql", "SELECT COUNT(*) AS n FROM db.daily_symbol_counts", "--database")
    assert db == [{"n": da.date.nunique()}]
    target = tmp_path / "v.parquet"
    ok("sql", "SELECT * FROM volume_rankings WHERE rank = 1", "-o", str(target))
    assert set(pq.read_table(target).column("rank").to_pylist()) == {1}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("COPY symbols TO '{out}/x.csv'", "not COPY"),
        ("COPY (SELECT 1) TO '{out}/x.parquet' (FORMAT parquet, USE_TMP_FILE false)", "not COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_csv_auto('{out}/../cache/CACHEDIR.TAG')", "Permission Error"),
        ("ATTACH '{out}/x.duckdb' AS x", "not ATTACH"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD httpfs", "not LOAD"),
        ("CREATE TABLE t AS SELECT * FROM symbols", "not CREATE"),
        ("SET enable_external_access = true", "not SET"),
        ("SELEC 1", "Parser Error"),
        ("SELECT * FROM nope", "there is no table 'nope'; the tables are daily_availability"),
    ],
)
def test_sql_safety(published, tmp_path, query, fragment):
    out = tmp_path / "out"
    out.mkdir()
    message = fails("sql", query.format(out=out))
    assert fragment in message
    assert not list(out.iterdir())  # nothing written


# --- bfa sql --remote ----------------------------------------------------------------------

COUNT = "SELECT count(*) AS n FROM daily_availability"


def test_sql_remote_equals_local_and_downloads_nothing(published, samples, cache_dir):
    out = run_cli("sql", "--remote", COUNT, "--format", "json", "-v")
    assert out.returncode == 0, out.stderr
    remote_answer = json.loads(out.stdout)
    # Nothing downloaded (only the small manifest is cached).
    assert not list(cache_dir.rglob("daily_availability.parquet"))
    assert not list(cache_dir.rglob("*.parquet*"))
    # -v: the bytes transferred, at most each file once (count(*) reads only footers).
    match = re.search(rf"INFO: remote query of {V_NEW}: ([\d,]+) bytes transferred", out.stderr)
    assert match, out.stderr
    sizes = sum(p.stat().st_size for p in samples.dated(V_NEW).glob("*.parquet"))
    assert 0 < int(match[1].replace(",", "")) <= sizes
    assert "bytes transferred" not in run_cli("sql", "--remote", COUNT).stderr  # without -v
    assert remote_answer == as_json("sql", COUNT)  # the local answer (downloads)
    assert remote_answer[0]["n"] > 0
    joined = (
        "SELECT s.contract_kind, count(*) AS n FROM daily_availability AS a "
        "JOIN symbols AS s USING (symbol) GROUP BY 1 ORDER BY 1"
    )
    assert as_json("sql", "--remote", joined) == as_json("sql", joined)
    help_text = " ".join(run_cli("sql", "--help").stdout.split())
    assert "Example: bfa sql --remote" in help_text


REMOTE = "bfa-remote://" + SAMPLE_REPO


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_text('file:///etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_csv_auto('{out}/../cache/CACHEDIR.TAG')", "Permission Error"),
        ("SELECT * FROM read_text('{api}/')", "Permission Error"),  # the network
        (f"SELECT * FROM '{REMOTE}/{V_OLD}/daily_availability.parquet'", "Permission Error"),
        (f"SELECT * FROM glob('{REMOTE}/{V_NEW}/*')", "Permission Error"),
        (f"SELECT * FROM read_text('{REMOTE}/{V_NEW}/manifest.json')", "Permission Error"),
        ("COPY symbols TO '{out}/x.csv'", "not COPY"),
        ("ATTACH '{out}/x.duckdb' AS x", "not ATTACH"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD httpfs", "not LOAD"),
        ("SET enable_external_access = true", "not SET"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
    ],
)
def test_sql_remote_safety(published, tmp_path, query, fragment):
    out = tmp_path / "out"
    out.mkdir()
    message = fails("sql", "--remote", query.format(out=out, api=published.api_url))
    assert fragment in message
    assert not list(out.iterdir())  # nothing written


def test_sql_remote_lockdown_holds_without_the_statement_check(published, tmp_path):
    """DuckDB itself refuses what check_select would: the second layer stands alone."""
    import duckdb

    from intake_bfa.config import get_settings
    from intake_bfa.query.sql import locked_remote_connection

    con, version = locked_remote_connection("latest", get_settings())
    assert version == V_NEW
    assert con.sql("SELECT count(*) FROM volume_rankings").fetchall()[0][0] > 0
    allowed = f"{REMOTE}/{V_NEW}/symbols.parquet"
    for statement, why in (
        ("SET enable_external_access = true", "has been locked"),
        ("SET allowed_paths = ['/etc/passwd']", "has been locked"),
        ("RESET lock_configuration", "has been locked"),
        (f"COPY symbols TO '{tmp_path}/x.csv'", "Permission Error"),
        (f"ATTACH '{tmp_path}/x.duckdb' AS x", "Permission Error"),
        ("INSTALL httpfs", "Permission Error"),
        ("LOAD httpfs", "Permission Error"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        # The one writable-looking path: our filesystem is read-only.
        (f"COPY symbols TO '{allowed}' (FORMAT parquet, USE_TMP_FILE false)", "read-only"),
    ):
        with pytest.raises(duckdb.Error, match=why):
            con.execute(statement)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.duckdb").exists()
    assert con.sql("SELECT count(*) FROM symbols").fetchall()[0][0] > 0
    con.close()


def test_sql_remote_usage_and_offline(published, monkeypatch):
    assert "cannot be combined with --remote" in fails(
        "sql", "--remote", "--database", COUNT, status=2
    )
    ok("sql", "--remote", COUNT)  # caches the manifest: offline, only the data is missing
    assert "needs the network" in fails("sql", "--remote", COUNT, "--offline")


def test_a_rolling_release_without_rankings_answers_everything_else(server, samples, monkeypatch):
    """The upstream's rankings step may fail alone: only what needs the file fails, saying so."""
    from .conftest import ROLLING_END, ROLLING_REPO

    release = samples.rolling(ROLLING_END)
    server.add_release(
        ROLLING_REPO, "latest", {"availability.duckdb.gz": release / "availability.duckdb.gz"}
    )
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", ROLLING_REPO)

    out = run_cli("sql", "SELECT count(*) AS n FROM daily_availability", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.splitlines()[1]) > 0
    for args in (["sql", "SELECT * FROM volume_rankings"], ["top", "2021-03-04"]):
        out = run_cli(*args)
        assert out.returncode == 1, out.stdout
        assert "volume-rankings-timeseries.parquet" in out.stderr, out.stderr
    out = run_cli("sql", "SELECT * FROM nope")
    assert out.returncode == 1
    assert "there is no table 'nope'; the tables are daily_availability, symbols" in out.stderr
    assert "pg_enum" not in out.stderr


def test_sql_remote_on_the_rolling_layout_reads_its_parquet_asset(server, samples, monkeypatch):
    """The rankings Parquet is read by range requests; what only the database holds says so."""
    from .conftest import ROLLING_END, ROLLING_REPO

    publish_rolling(server, ROLLING_REPO, samples.rolling(ROLLING_END))
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", ROLLING_REPO)
    server.clear_requests()
    out = run_cli("sql", "--remote", "SELECT count(*) AS n FROM volume_rankings", "--format", "csv")
    assert out.returncode == 0, out.stderr
    want = pq.read_metadata(samples.rolling(ROLLING_END) / "volume-rankings-timeseries.parquet")
    assert int(out.stdout.splitlines()[1]) == want.num_rows
    fetched = [r.path for r in server.requests if r.origin == "objects"]
    assert fetched and not any("duckdb" in p for p in fetched)  # the database is never read
    out = run_cli("sql", "--remote", "SELECT count(*) FROM daily_availability")
    assert out.returncode == 1
    assert "daily_availability of version rolling-" in out.stderr, out.stderr
    assert "without --remote; the tables are volume_rankings" in out.stderr


def test_json_is_an_alias_of_format_json_everywhere(published):
    for command in (["versions"], ["datasets"], ["cache", "status"], ["snapshot", "2021-03-04"]):
        a, b = run_cli(*command, "--json"), run_cli(*command, "--format", "json")
        assert a.returncode == b.returncode == 0, (command, a.stderr, b.stderr)
        assert json.loads(a.stdout) == json.loads(b.stdout), command


def test_timeline_shows_a_narrow_table_unless_asked(published):
    from intake_bfa.cli.query import TIMELINE_TABLE_COLUMNS
    from intake_bfa.schema import DAILY_AVAILABILITY_COLUMNS

    narrow = run_cli("timeline", "BTCUSDT", "--start", "2021-06-01", "--format", "table")
    assert narrow.returncode == 0, narrow.stderr
    header = narrow.stdout.splitlines()[0].split()
    assert header == list(TIMELINE_TABLE_COLUMNS) and "url" not in header
    hidden = len(DAILY_AVAILABILITY_COLUMNS) - len(TIMELINE_TABLE_COLUMNS)
    assert f"{hidden} more columns: --all-columns" in narrow.stdout
    wide = run_cli("timeline", "BTCUSDT", "--start", "2021-06-01", "--format", "table",
                   "--all-columns")  # fmt: skip
    assert wide.stdout.splitlines()[0].split() == list(DAILY_AVAILABILITY_COLUMNS)
    assert "more columns" not in wide.stdout
    picked = run_cli("timeline", "BTCUSDT", "--format", "table", "--columns", "date,url")
    assert picked.stdout.splitlines()[0].split() == ["date", "url"]
    rows = as_json("timeline", "BTCUSDT", "--start", "2021-06-01")  # other formats: all
    assert list(rows[0]) == list(DAILY_AVAILABILITY_COLUMNS)
