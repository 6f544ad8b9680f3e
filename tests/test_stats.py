"""``bfa stats``: download counts measured on the wire of the local release server.

Every count here comes from real downloads (HTTP GETs through the github.com redirect to the
object store, which counts a download once its last byte is served); months come from
releases published at chosen dates and snapshots observed at chosen times.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from intake_bfa.cli import build_parser, main
from intake_bfa.config import get_settings
from intake_bfa.errors import ConfigError, RepoNotFoundError, StatsError
from intake_bfa.producer.stats.counts import collect_stats, observe
from intake_bfa.producer.stats.history import (
    HISTORY_HEADER,
    AssetCount,
    Snapshot,
    append_snapshot,
    read_history,
)
from intake_bfa.producer.stats.monthly import MonthTotal, evaluate, get_thresholds
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROLLING_REPO, ROOT, V_NEW, V_OLD, run_cli

UTC = dt.UTC
REPO = "o/r"
TOKEN = "ghp_statstoken0123456789abcdef"
HEADER = ",".join(HISTORY_HEADER) + "\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def at(year: int, month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, hour, 15, tzinfo=UTC)


def add(server, tag, when, **sizes) -> dict:
    """A small dated release: manifest.json plus a data file (sizes in bytes)."""
    assets = {"manifest.json": b"{}", "daily_availability.parquet": b"x" * sizes.get("data", 1000)}
    return server.add_release(REPO, tag, assets, created_at=when)


def url_of(release: dict, name: str) -> str:
    return next(a["browser_download_url"] for a in release["assets"] if a["name"] == name)


def download(release: dict, name: str, times: int) -> None:
    url = url_of(release, name)
    for _ in range(times):
        with urllib.request.urlopen(url) as resp:
            resp.read()


@pytest.fixture
def srv(server, monkeypatch):
    """The release server with BFA_* pointing at repository o/r on it."""
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", REPO)
    return server


def bfa(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``bfa stats ARGS`` in this process; (exit status, stdout, stderr)."""
    code = main(["stats", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def stats_json(capsys, *args: str) -> dict:
    code, out, err = bfa(capsys, "--json", *args)
    assert code == 0, err
    return json.loads(out)


# --- counts ------------------------------------------------------------------------------------


def test_counts_are_exactly_the_downloads_made(published, capsys):
    releases = {
        r["tag_name"]: r
        for r in json.loads(
            urllib.request.urlopen(f"{published.api_url}/repos/bfa-sample/"
                                   "binance-futures-availability/releases").read()
        )
    }  # fmt: skip
    new, old = releases[f"data-{V_NEW}"], releases[f"data-{V_OLD}"]
    download(new, "manifest.json", 3)
    download(new, "symbols.parquet", 2)
    download(old, "manifest.json", 1)

    report = stats_json(capsys)
    counts = {(a["tag"], a["asset"]): a["download_count"] for a in report["assets"]}
    assert counts[(f"data-{V_NEW}", "manifest.json")] == 3
    assert counts[(f"data-{V_NEW}", "symbols.parquet")] == 2
    assert counts[(f"data-{V_OLD}", "manifest.json")] == 1
    assert sum(counts.values()) == report["total_downloads"] == 6
    by_tag = {r["tag"]: r for r in report["releases"]}
    assert by_tag[f"data-{V_NEW}"]["downloads"] == 5
    assert by_tag[f"data-{V_NEW}"]["user_downloads"] == 3
    assert by_tag[f"data-{V_NEW}"]["layout"] == "dated"
    assert by_tag[f"data-{V_NEW}"]["published_at"].startswith(V_NEW)
    # No history: each count lands in its release's publication month, and says so.
    assert report["method"] == "approximation"
    months = {m["month"]: m for m in report["monthly"]}
    assert months["2021-06"]["downloads"] == 1 and months["2021-07"]["downloads"] == 5
    assert months["2021-07"]["active_users"] == 3
    assert "approximate" in report["verdicts"][0]["recommendation"]
    assert report["api_requests"] == 1 and report["rate_limit_remaining"] > 0

    code, out, _ = bfa(capsys)
    assert code == 0 and f"data-{V_NEW}" in out and "APPROXIMATE" in out
    assert "earlier month(s) not shown" in out  # 2021-06 .. today is more than 12 months


def test_rolling_layout_counts_its_database_as_the_user_proxy(rolling, capsys):
    (rel,) = json.loads(
        urllib.request.urlopen(f"{rolling.api_url}/repos/{ROLLING_REPO}/releases").read()
    )
    download(rel, "availability.duckdb.gz", 2)
    report = stats_json(capsys)
    (latest,) = report["releases"]
    assert latest["tag"] == "latest" and latest["layout"] == "rolling"
    assert latest["downloads"] == latest["user_downloads"] == 2
    assert report["monthly"][-1]["active_users"] == 2


def test_pagination_follows_every_page_and_skips_drafts(srv, capsys):
    start = at(2025, 1, 1)
    for i in range(230):
        srv.add_release(
            REPO, f"v{i:03d}", {"a.bin": b"a"}, created_at=start + dt.timedelta(hours=i)
        )
    srv.add_release(REPO, "rc", {"a.bin": b"a"}, prerelease=True)
    srv.add_release(REPO, "draft", {"a.bin": b"a"}, draft=True)
    srv.clear_requests()
    report = stats_json(capsys)
    tags = {r["tag"] for r in report["releases"]}
    assert len(tags) == 231 and "rc" in tags and "draft" not in tags
    assert report["api_requests"] == 3
    pages = [r.path for r in srv.requests if r.origin == "api"]
    assert len(pages) == 3 and "page=2" in pages[1] and "page=3" in pages[2]
    assert all("per_page=100" in p for p in pages)


def test_the_token_goes_to_the_api_only_and_is_never_written(tmp_path):
    with ReleaseServer(token=TOKEN) as server:
        rel = add(server, "data-2025-01-02", at(2025, 1, 2))
        server.add_release(REPO, "draft", {"a.bin": b"a"}, draft=True)  # authed: listed
        download(rel, "manifest.json", 2)
        server.clear_requests()
        history, plot = tmp_path / "h.csv", tmp_path / "p.png"
        env = {"BFA_API_URL": server.api_url, "BFA_REPO": REPO, "GITHUB_TOKEN": TOKEN}
        args = ["stats", "--history", str(history), "--append", "--plot", str(plot), "-vv"]
        proc = run_cli(*args, "--json", env={**env, "MPLBACKEND": "Agg"})
        assert proc.returncode == 0, proc.stderr
        api = [r for r in server.requests if r.origin == "api"]
        assert api and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in api)
        assert all(r.origin == "api" for r in server.requests)  # stats downloads nothing
    report = json.loads(proc.stdout)
    assert "draft" not in {r["tag"] for r in report["releases"]}
    assert report["total_downloads"] == 2
    for blob in (
        proc.stdout,
        proc.stderr,
        history.read_text(),
        plot.read_bytes().decode("latin-1"),
    ):
        assert TOKEN not in blob
    assert "GET http" in proc.stderr and "appended 2 row(s)" in proc.stderr  # -vv logs


# --- history -----------------------------------------------------------------------------------


def test_history_months_carry_forward_and_history_only(srv, tmp_path, monkeypatch):
    settings = get_settings()
    history = tmp_path / "stats" / "downloads.csv"  # the folder is created too
    a = add(srv, "data-2025-01-05", at(2025, 1, 5), data=1000)
    download(a, "manifest.json", 4)
    download(a, "daily_availability.parquet", 2)
    first = collect_stats(settings, history=history, append=True, now=at(2025, 1, 20))
    assert first.appended_rows == 2 and first.method == "approximation"

    download(a, "manifest.json", 3)
    b = add(srv, "data-2025-02-03", at(2025, 2, 3), data=500)
    download(b, "manifest.json", 5)
    collect_stats(settings, history=history, append=True, now=at(2025, 2, 25))

    srv.delete_release(REPO, "data-2025-01-05")  # retention: its counters vanish from the API
    download(b, "manifest.json", 1)
    download(b, "daily_availability.parquet", 2)
    report = collect_stats(settings, history=history, append=True, now=at(2025, 3, 10))

    got = {m.month: (m.downloads, m.active_users, m.complete) for m in report.monthly}
    assert got == {
        "2025-01": (6, 4, True),
        "2025-02": (8, 5, True),  # a's 3 more, b's first 5
        "2025-03": (3, 1, False),  # a is gone: nothing negative, nothing lost
    }
    assert report.monthly[0].bytes == 4 * 2 + 2 * 1000
    assert report.method == "history" and report.snapshots == 3
    assert report.total_downloads == 8  # what the API still shows
    assert report.recorded_downloads == 17  # deleted release included
    lines = history.read_text().splitlines()
    assert lines[0] == HEADER.strip() and len(lines) == 1 + 2 + 4 + 2
    assert len({line.split(",")[0] for line in lines[1:]}) == 3

    # --history without --append reads it and adds today's observation, writing nothing.
    before = history.read_bytes()
    live = collect_stats(settings, history=history, now=at(2025, 3, 11))
    assert live.snapshots == 4 and live.monthly == report.monthly
    assert history.read_bytes() == before

    # Offline, the same history gives the same months, without a single request.
    srv.clear_requests()
    monkeypatch.setenv("BFA_OFFLINE", "1")
    again = collect_stats(history=history, now=at(2025, 3, 10))
    assert again.monthly == report.monthly and again.source == "history"
    assert srv.requests == []


def test_a_reuploaded_asset_is_a_new_counter(srv, tmp_path):
    settings = get_settings()
    history = tmp_path / "h.csv"
    srv.add_release(REPO, "latest", {"availability.duckdb.gz": b"db1"}, created_at=at(2025, 4, 1))
    rel = json.loads(urllib.request.urlopen(f"{srv.api_url}/repos/{REPO}/releases").read())[0]
    download(rel, "availability.duckdb.gz", 3)
    collect_stats(settings, history=history, append=True, now=at(2025, 4, 2))
    srv.replace_asset(REPO, "latest", "availability.duckdb.gz", b"db2")  # the daily re-upload
    download(rel, "availability.duckdb.gz", 2)  # same URL, the new asset behind it
    report = collect_stats(settings, history=history, append=True, now=at(2025, 4, 3))
    assert [(m.month, m.downloads, m.active_users) for m in report.monthly] == [("2025-04", 5, 3)]
    assert report.total_downloads == 2 and report.recorded_downloads == 5


def test_a_foreign_file_is_refused_byte_identical(srv, tmp_path, capsys):
    add(srv, "data-2025-01-02", at(2025, 1, 2))
    for content in (b"date,downloads\n2025-01-01,3\n", PNG_SIGNATURE + bytes(range(256))):
        path = tmp_path / "not-ours.csv"
        path.write_bytes(content)
        srv.clear_requests()
        code, out, err = bfa(capsys, "--history", str(path), "--append")
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and str(path) in err and "not a bfa stats history" in err
        assert path.read_bytes() == content
        assert srv.requests == []  # refused before asking the API anything
        with pytest.raises(StatsError):
            append_snapshot(path, Snapshot("2025-01-01T00:00:00Z", REPO, ()))
        assert path.read_bytes() == content


@pytest.mark.parametrize("cut", ["mid-row", "mid-count"])
def test_a_cut_off_last_line_is_kept_and_never_miscounts(srv, tmp_path, cut):
    settings = get_settings()
    history = tmp_path / "h.csv"
    rel = add(srv, "data-2025-05-02", at(2025, 5, 2))
    download(rel, "manifest.json", 12)
    collect_stats(settings, history=history, append=True, now=at(2025, 5, 3))
    # A second append killed half way: its first row out whole, its second one cut off.
    data_row, manifest_row = history.read_text().splitlines()[1:]
    assert manifest_row.endswith(",12")
    data_row, manifest_row = (
        r.replace("2025-05-03T", "2025-05-04T") for r in (data_row, manifest_row)
    )
    partial = manifest_row[: len(manifest_row) // 2] if cut == "mid-row" else manifest_row[:-1]
    before = history.read_bytes() + f"{data_row}\n{partial}".encode()
    history.write_bytes(before)

    download(rel, "manifest.json", 3)
    report = collect_stats(settings, history=history, append=True, now=at(2025, 5, 5))
    data = history.read_bytes()
    assert data.startswith(before + b"\n")  # nothing rewritten, ours on a fresh line
    assert report.monthly[-1].downloads == 15 and report.recorded_downloads == 15
    # Mid-row: the line does not parse and is skipped. Mid-count: it reads as 1 download
    # instead of 12, which the never-go-down rule ignores.
    assert report.skipped_lines == ([5] if cut == "mid-row" else [])
    assert len(read_history(history).snapshots) == 3


def test_concurrent_appends_never_interleave(tmp_path):
    history = tmp_path / "h.csv"
    assets = tuple(AssetCount(f"t{i}", "a.bin", i + 1, None, None, 1, i) for i in range(2000))
    snaps = [Snapshot(f"2025-01-01T00:00:{s:02d}Z", REPO, assets) for s in range(8)]
    threads = [threading.Thread(target=append_snapshot, args=(history, s)) for s in snaps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = history.read_text()
    assert text.count(HEADER) == 1
    lines = text.splitlines()[1:]
    # Each snapshot's 2000 rows are contiguous: one write per snapshot, under the lock.
    runs = [lines[i][:20] for i in range(0, len(lines), 2000)]
    assert sorted(runs) == sorted(s.observed_at for s in snaps)
    assert all(len({line[:20] for line in lines[i : i + 2000]}) == 1 for i in range(0, 16000, 2000))
    found = read_history(history)
    assert found.bad_lines == [] and [len(s.assets) for s in found.snapshots] == [2000] * 8


def test_a_missing_history_needs_append(srv, tmp_path, capsys):
    code, _, err = bfa(capsys, "--history", str(tmp_path / "nope.csv"))
    assert code == 1 and "add --append" in err
    assert not (tmp_path / "nope.csv").exists()


# --- thresholds --------------------------------------------------------------------------------


def _this_and_last_month() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(UTC)
    this = now.replace(day=1, hour=0, minute=0, second=1, microsecond=0)
    return this, (this - dt.timedelta(days=1)).replace(day=15)


def test_thresholds_tripped_and_not_with_recommendations(srv, capsys):
    this, last = _this_and_last_month()
    old = add(srv, "data-old", last)
    new = add(srv, "data-new", this)
    download(old, "manifest.json", 2)
    download(old, "daily_availability.parquet", 2)
    download(new, "manifest.json", 3)
    download(new, "daily_availability.parquet", 4)

    report = stats_json(capsys, "--mirror-threshold", "5", "--api-threshold", "10")
    mirror, api = report["verdicts"]
    assert (mirror["complete_value"], mirror["current_value"]) == (4, 7)
    assert mirror["status"] == "exceeded" and mirror["tripped"] and mirror["threshold"] == 5
    assert (
        "bfa mirror sync" in mirror["recommendation"]
        and "docs/mirror.md" in mirror["recommendation"]
    )
    assert (
        "7 downloads in " + this.strftime("%Y-%m") + " (so far) > threshold 5"
        in mirror["recommendation"]
    )
    assert (api["complete_value"], api["current_value"]) == (2, 3)
    assert (
        api["status"] == "ok"
        and not api["tripped"]
        and "no query API needed" in api["recommendation"]
    )
    assert report["tripped"] == ["mirror"]

    report = stats_json(capsys, "--mirror-threshold", "3", "--api-threshold", "1")
    mirror, api = report["verdicts"]
    assert "(complete month)" in mirror["recommendation"]  # the complete month comes first
    assert api["tripped"] and "bfa serve" in api["recommendation"]
    assert "docs/serving.md" in api["recommendation"]

    code, out, _ = bfa(
        capsys, "--mirror-threshold", "5", "--api-threshold", "10", "--fail-on-threshold"
    )
    assert code == 3 and "mirror: EXCEEDED" in out and "api: OK" in out
    assert bfa(capsys, "--fail-on-threshold")[0] == 0  # defaults 500 / 100: nothing exceeded


def test_a_month_on_pace_is_a_watch():
    thresholds = get_thresholds(500, 100)
    monthly = [MonthTotal("2025-05", 100, 0, 5, True), MonthTotal("2025-06", 200, 0, 5, False)]
    ten_days_in = dt.datetime(2025, 6, 11, tzinfo=UTC)
    mirror, api = evaluate(monthly, thresholds, now=ten_days_in, approximate=False)
    assert mirror.status == "watch" and not mirror.tripped and mirror.projected_value == 600
    assert "on pace for about 600" in mirror.recommendation
    early = evaluate(monthly, thresholds, now=at(2025, 6, 2, 0), approximate=False)[0]
    assert early.status == "ok" and early.projected_value is None  # too early to project
    assert api.status == "ok"


def test_threshold_precedence_and_bad_values(srv, monkeypatch, tmp_path, capsys):
    assert get_thresholds() == get_thresholds(None, None)
    t = get_thresholds()
    assert (t.mirror, t.api, t.mirror_source, t.api_source) == (500, 100, "default", "default")
    monkeypatch.setenv("BFA_STATS_MIRROR_THRESHOLD", "250")
    monkeypatch.setenv("BFA_STATS_API_THRESHOLD", " ")  # empty: the default
    t = get_thresholds()
    assert (t.mirror, t.mirror_source, t.api, t.api_source) == (250, "env", 100, "default")
    t = get_thresholds("900", 7)
    assert (t.mirror, t.mirror_source, t.api, t.api_source) == (900, "option", 7, "option")
    for bad in ("lots", "-5", "1.5", "1e3"):
        with pytest.raises(ConfigError, match="--mirror-threshold"):
            get_thresholds(mirror=bad)

    add(srv, "data-2025-01-02", at(2025, 1, 2))
    history = tmp_path / "h.csv"
    history.write_text(HEADER)
    srv.clear_requests()
    monkeypatch.setenv("BFA_STATS_API_THRESHOLD", "many")
    code, _, err = bfa(capsys, "--history", str(history), "--append")
    assert code == 1 and "BFA_STATS_API_THRESHOLD='many'" in err and err.count("\n") == 1
    code, _, err = bfa(capsys, "--api-threshold", "-1")
    assert code == 1 and "--api-threshold" in err
    assert srv.requests == [] and history.read_text() == HEADER  # checked before anything
    monkeypatch.delenv("BFA_STATS_API_THRESHOLD")
    report = stats_json(capsys, "--mirror-threshold", "42")
    assert report["thresholds"] == {
        "mirror": 42, "api": 100, "mirror_source": "option", "api_source": "default"
    }  # fmt: skip


# --- rate limits and errors --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 403])
def test_retry_after_is_honoured(srv, status, capsys):
    add(srv, "data-2025-01-02", at(2025, 1, 2))
    # 429, and GitHub's secondary rate limit (403 with Retry-After): wait as told, retry.
    srv.inject("api", r"/releases", "status", status=status, headers={"Retry-After": "1"})
    srv.clear_requests()
    started = time.monotonic()
    report = stats_json(capsys)
    assert time.monotonic() - started >= 1.0
    assert report["total_downloads"] == 0 and len(report["releases"]) == 1
    assert [r.status for r in srv.requests] == [status, 200]


def test_a_persistent_rate_limit_fails_in_one_line_history_untouched(tmp_path):
    with ReleaseServer(rate_limit=0) as server:
        add(server, "data-2025-01-02", at(2025, 1, 2))
        history = tmp_path / "h.csv"
        history.write_text(HEADER + "2025-01-01T00:00:00Z,o/r,t,a.bin,1,,,1,1\n")
        before = history.read_bytes()
        env = {"BFA_API_URL": server.api_url, "BFA_REPO": REPO}
        started = time.monotonic()
        proc = run_cli("stats", "--history", str(history), "--append", env=env)
    assert time.monotonic() - started < 60  # no waiting an hour for the reset
    assert proc.returncode == 1 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bfa: error:")]
    assert len(errors) == 1 and "rate limit" in errors[0] and "GITHUB_TOKEN" in errors[0]
    assert history.read_bytes() == before


def test_offline_needs_a_history(srv, tmp_path, capsys):
    srv.clear_requests()
    code, _, err = bfa(capsys, "--offline")
    assert code == 1 and "needs the GitHub API" in err and "--history FILE" in err
    history = tmp_path / "h.csv"
    add(srv, "data-2025-01-02", at(2025, 1, 2))
    collect_stats(history=history, append=True, now=at(2025, 1, 3))
    srv.clear_requests()
    code, out, err = bfa(capsys, "--offline", "--history", str(history))
    assert code == 0 and "from the recorded history" in out and srv.requests == []
    code, _, err = bfa(capsys, "--offline", "--history", str(history), "--append")
    assert code == 1 and "needs the API" in err


def test_usage_errors_exit_2_before_any_request(srv, tmp_path, capsys):
    srv.clear_requests()
    for args in (
        ["--append"],
        ["--history-only"],
        ["--history", "h.csv", "--append", "--history-only"],
        ["--plot", str(tmp_path / "chart.gif")],
        ["--months", "0"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["stats", *args])
        assert info.value.code == 2, args
    assert srv.requests == []
    assert not (tmp_path / "chart.gif").exists()


def test_observe_with_an_unknown_repo_is_a_clear_error(srv):
    with pytest.raises(RepoNotFoundError, match="ghost/repo"):
        observe(get_settings(repo="ghost/repo"))


# --- plot --------------------------------------------------------------------------------------


def test_plot_writes_a_real_image(srv, tmp_path, capsys):
    rel = add(srv, "data-2025-01-02", at(2025, 1, 2))
    download(rel, "manifest.json", 2)
    png, svg = tmp_path / "out" / "downloads.png", tmp_path / "downloads.svg"
    code, out, err = bfa(capsys, "--plot", str(png))
    assert code == 0, err
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert f"plot: {png}" in out
    assert bfa(capsys, "--plot", str(svg))[0] == 0
    assert b"<svg" in svg.read_bytes()[:500]


# --- the workflow and the import rule ---------------------------------------------------------


def test_the_stats_workflow_runs_bfa_stats_daily_and_commits_the_history():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "stats.yml").read_text())
    on = doc.pop(True, doc.get("on"))
    (cron,) = [s["cron"] for s in on["schedule"]]
    minute, hour = map(int, cron.split()[:2])
    assert (hour, minute) > (9, 30) and "workflow_dispatch" in on  # after publish.yml
    assert doc["permissions"] == {"contents": "write"}
    assert doc["concurrency"]["cancel-in-progress"] is False
    job = doc["jobs"]["stats"]
    assert job["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    command = runs[runs.index("bfa stats") :].split(">", 1)[0].replace("\\\n", " ")
    args = build_parser().parse_args(command.split()[1:])  # every option it uses exists
    assert args.append and args.history.endswith("downloads.csv") and args.plot
    assert args.fail_on_threshold
    assert "github-actions[bot]" in runs and "git push origin HEAD:refs/heads/stats" in runs
    for name in ("BFA_STATS_MIRROR_THRESHOLD", "BFA_STATS_API_THRESHOLD"):
        get_thresholds(**{name.split("_")[2].lower(): job["env"][name]})  # valid values


def test_stats_imports_stay_light():
    code = (
        "import sys, intake_bfa.cli.stats, intake_bfa.producer.stats.counts, intake_bfa.producer.stats.plot;"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_history_rows_round_trip(tmp_path):
    snap = Snapshot(
        "2025-01-02T03:04:05Z",
        REPO,
        (AssetCount("tag,with comma", 'a "b".bin', 9, "2025-01-01T00:00:00Z", None, 10, 3),),
    )
    path = tmp_path / "h.csv"
    assert append_snapshot(path, snap) == 1
    assert read_history(path).snapshots == [snap]
    assert Path(path).read_text().startswith(HEADER)
