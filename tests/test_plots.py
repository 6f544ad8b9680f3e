"""Charts (intake_bfa.plots) and ``bfa plot``: plotted data equals independent computations."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

# matplotlib comes with the dev extra: a broken install must fail here, never skip.
import matplotlib.dates as mdates
import matplotlib.image as mimage
import pandas as pd
import pytest
from matplotlib.figure import Figure

import intake_bfa
from intake_bfa import plots
from intake_bfa.cli import main
from intake_bfa.errors import QueryError
from intake_bfa.query import Query

from .conftest import ROOT, V_NEW, V_OLD, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _days(values) -> list[dt.date]:
    return [d.date() for d in pd.to_datetime(pd.Series(list(values)))]


def _num_to_date(x: float) -> dt.date:
    return mdates.num2date(x).date()


@pytest.fixture
def q(published):
    with Query(V_NEW) as query:
        yield query


@pytest.fixture
def da(published):
    return intake_bfa.read("daily_availability", V_NEW)


def _spans(ax, label: str) -> list[tuple[dt.date, int]]:
    """(first day, days) of each bar of the broken-bar collection labelled ``label``."""
    (coll,) = [c for c in ax.collections if c.get_label() == label]
    spans = []
    for path in coll.get_paths():
        xs = path.vertices[:, 0]
        spans.append((_num_to_date(xs.min()), round(xs.max() - xs.min())))
    return sorted(spans)


# --- library -----------------------------------------------------------------------------------


def test_import_stays_light():
    code = (
        "import sys, intake_bfa, intake_bfa.plots, intake_bfa.cli; "
        "intake_bfa.cli.build_parser(); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_available_symbols_equals_per_date_counts(q, da):
    fig = plots.available_symbols(query=q)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert line.get_label() == "available symbols"
    want = da[da.available].groupby("date").size()
    assert _days(line.get_xdata()) == _days(want.index)
    assert list(line.get_ydata()) == want.to_list()
    title = ax.get_title()
    assert f"version {V_NEW}" in title and "SYNTHETIC" in title

    # A window, and a new figure per call (no pyplot state).
    part = plots.available_symbols("2021-03-01", "2021-03-31", query=q)
    (line,) = part.axes[0].get_lines()
    days = _days(line.get_xdata())
    assert days[0] == dt.date(2021, 3, 1) and days[-1] == dt.date(2021, 3, 31)
    window = want[
        (pd.to_datetime(want.index) >= "2021-03-01") & (pd.to_datetime(want.index) <= "2021-03-31")
    ]
    assert list(line.get_ydata()) == window.to_list()
    assert part is not fig


def test_version_is_pinned_and_titled(published):
    fig = plots.available_symbols(version=V_OLD)
    assert f"version {V_OLD}" in fig.axes[0].get_title()
    (line,) = fig.axes[0].get_lines()
    with Query(V_OLD) as old, Query(V_NEW) as new:
        assert _days(line.get_xdata())[-1] == old.coverage[1] < new.coverage[1]


def test_symbol_timeline_gaps_equal_query_gaps(q, da):
    gaps = q.gaps()
    symbol = gaps.groupby("symbol").size().idxmax()  # the symbol with the most gaps
    mine = gaps[gaps.symbol == symbol]
    fig = plots.symbol_timeline(symbol, query=q)
    (ax,) = fig.axes
    want_gaps = sorted(zip(_days(mine["start"]), mine["days"].to_list(), strict=True))
    assert len(want_gaps) >= 2
    assert _spans(ax, "gap") == want_gaps
    # Gap ends are Query.gaps' inclusive ends.
    assert [s + dt.timedelta(days=n - 1) for s, n in _spans(ax, "gap")] == sorted(
        _days(mine["end"])
    )
    # Available bars cover exactly the symbol's available days.
    covered = {s + dt.timedelta(days=i) for s, n in _spans(ax, "available") for i in range(n)}
    rows = da[(da.symbol == symbol) & da.available]
    assert covered == set(_days(rows["date"]))
    assert symbol in ax.get_title() and "SYNTHETIC" in ax.get_title()
    assert f"{len(want_gaps)} gap(s)" in ax.get_xlabel()


def test_symbol_timeline_window_clips_gaps(q):
    gaps = q.gaps()
    row = gaps[gaps.days >= 3].iloc[0]
    start, end = _days([row["start"], row["end"]])
    middle = start + dt.timedelta(days=1)
    fig = plots.symbol_timeline(row["symbol"], middle, end + dt.timedelta(days=5), query=q)
    spans = _spans(fig.axes[0], "gap")
    assert spans[0] == (middle, (end - middle).days + 1)
    assert all(s >= middle for s, _ in spans)


def test_listings_per_month_equals_symbols_table(q):
    fig = plots.listings_per_month(query=q)
    (ax,) = fig.axes
    ups, downs = ax.containers
    assert ups.get_label() == "listings" and downs.get_label() == "delistings"
    symbols = intake_bfa.read("symbols", V_NEW)
    first = pd.to_datetime(symbols["first_date"])
    start_day = pd.Timestamp(q.coverage[0])
    months = pd.period_range(q.coverage[0], q.coverage[1], freq="M")
    listed = first[first != start_day].dt.to_period("M").value_counts()
    gone = pd.to_datetime(symbols.loc[~symbols.listed_now, "last_date"]).dt.to_period("M")
    delisted = gone.value_counts()
    assert [round(b.get_height()) for b in ups] == listed.reindex(months, fill_value=0).to_list()
    assert [round(-b.get_height()) for b in downs] == delisted.reindex(
        months, fill_value=0
    ).to_list()
    assert len(ups) == len(months) and sum(delisted) > 0 and sum(listed) > 0
    x = [_num_to_date(b.get_x()) for b in ups]
    assert x == [p.to_timestamp().date() for p in months]

    initial = plots.listings_per_month(include_initial=True, query=q)
    first_bar = initial.axes[0].containers[0][0].get_height()
    assert first_bar == listed.get(months[0], 0) + (first == start_day).sum()


def test_volume_share_equals_rankings(q):
    vr = intake_bfa.read("volume_rankings", V_NEW)
    day = q.coverage[1]
    on_day = vr[pd.to_datetime(vr["date"]) == pd.Timestamp(day)].sort_values(["rank", "symbol"])
    fig = plots.volume_share(n=5, query=q)  # default date: the last covered day
    (ax,) = fig.axes
    (bars,) = ax.containers
    want = on_day.head(5)
    assert [b.get_width() for b in bars] == pytest.approx(want["market_share_pct"].to_list())
    assert [t.get_text() for t in ax.get_yticklabels()] == want["symbol"].to_list()
    assert str(day) in ax.get_title() and "Top 5" in ax.get_title()

    other = plots.volume_share("2021-03-04", query=q)
    assert len(other.axes[0].containers[0]) == 10


def test_draws_into_a_given_axes(q):
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.available_symbols(ax=left, query=q) is fig
    assert plots.volume_share("2021-03-04", 3, ax=right, query=q) is fig
    assert left.get_lines() and len(right.containers[0]) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: plots.symbol_timeline("NOPEUSDT", query=q), "unknown symbol 'NOPEUSDT'"),
        (lambda q: plots.symbol_timeline("btcusd", query=q), "did you mean BTCUSDT"),
        (lambda q: plots.available_symbols("2030-01-01", query=q), "outside the coverage"),
        (lambda q: plots.listings_per_month("2021-13-01", query=q), "2021-13-01"),
        (lambda q: plots.available_symbols("2021-05-01", "2021-04-01", query=q), "is after end"),
        (lambda q: plots.volume_share("2021-03-04", 0, query=q), "n must be"),
        (lambda q: plots.available_symbols(version=V_OLD, query=q), "disagrees"),
    ],
)
def test_bad_input_raises_query_error(q, call, message):
    with pytest.raises(QueryError, match=message) as info:
        call(q)
    assert "\n" not in str(info.value)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"intake-bfa\[plot\]") as info:
        plots.available_symbols()
    assert isinstance(info.value, intake_bfa.errors.BfaError)  # one line in the CLI


# --- CLI ---------------------------------------------------------------------------------------


def _check_png(path, min_size=(300, 600)) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = mimage.imread(path)
    height, width = image.shape[:2]
    assert height >= min_size[0] and width >= min_size[1], image.shape
    assert image.std() > 0.01  # not blank


@pytest.mark.parametrize(
    "args",
    [
        ["available", "--start", "2021-01-01"],
        ["timeline", "--symbol", "BTCUSDC"],
        ["listings"],
        ["share", "--date", "2021-03-04", "-n", "8"],
    ],
)
def test_cli_writes_png(published, tmp_path, capsys, args):
    out = tmp_path / "charts" / f"{args[0]}.png"
    assert main(["plot", *args, "--output", str(out), "--data-version", V_NEW, "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _check_png(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary leftovers
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would create it


def test_cli_svg_and_real_process(published, tmp_path):
    svg = tmp_path / "share.svg"
    assert main(["plot", "share", "-o", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    png = tmp_path / "t.png"
    res = run_cli("plot", "timeline", "--symbol", "BTCUSDT", "--output", str(png), "-q")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(png)
    _check_png(png)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["timeline", "--symbol", "NOPEUSDT"], "unknown symbol 'NOPEUSDT'"),
        (["available", "--start", "2030-01-01"], "outside the coverage"),
        (["available", "--data-version", "1999-01-01"], "1999-01-01"),
    ],
)
def test_cli_errors_are_one_line(published, tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    assert main(["plot", *args, "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bfa: error: ") and message in lines[0]
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["timeline", "-o", "x.png"], "needs --symbol"),
        (["available", "--date", "2021-03-04", "-o", "x.png"], "--date does not apply"),
        (["share", "--symbol", "BTCUSDT", "-o", "x.png"], "--symbol does not apply"),
        (["share", "-o", "x.jpg2"], "use a .png"),
        (["share"], "--output"),
        (["pie", "-o", "x.png"], "invalid choice"),
        (["share", "-n", "0", "-o", "x.png"], "must be >= 1"),
        (["share", "--date", "2021-02-30", "-o", "x.png"], "'2021-02-30' is not a date"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["plot", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_symbol_in_a_real_process(tmp_path):
    res = run_cli("plot", "timeline", "--output", str(tmp_path / "x.png"))
    assert res.returncode == 2 and "needs --symbol" in res.stderr
    assert not (tmp_path / "x.png").exists()
