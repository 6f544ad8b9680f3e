"""Charts of one pinned version of the datasets, as matplotlib figures.

>>> from intake_bfa import plots
>>> fig = plots.available_symbols(version="2026-11-20")
>>> fig.savefig("available.png")

Every function returns a :class:`matplotlib.figure.Figure`. Pass ``ax=`` to draw into
an existing axes (the function then returns ``ax.figure``), and ``query=`` to reuse a
:class:`~intake_bfa.query.Query` (one pinned version, no new resolution) instead of
``version=``. Titles name the version, and say SYNTHETIC when the release is sample
data. Bad input (unknown symbol, a date outside the coverage...) raises the same
:class:`~intake_bfa.errors.QueryError` as :class:`~intake_bfa.query.Query`.

matplotlib is an optional dependency (``pip install 'intake-bfa[plot]'``) and is
imported only by these functions. Symbol names may hold CJK characters: text naming
symbols falls back to an installed CJK font (Noto Sans CJK, Source Han Sans...), and
without one matplotlib draws placeholder boxes and warns. New figures are created without pyplot, so they
need no display and do not accumulate in pyplot's global figure list; they render
with the Agg canvas when saved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from intake_bfa.errors import MissingDependencyError, QueryError
from intake_bfa.extras import require
from intake_bfa.filters import DateLike

__all__ = [
    "MissingDependencyError",
    "available_symbols",
    "listings_per_month",
    "symbol_timeline",
    "upload_delay",
    "volume_share",
]

AVAILABLE_COLOR = "#2a9d8f"
GAP_COLOR = "#e63946"
DELISTING_COLOR = "#e76f51"
LISTING_COLOR = "#264653"
PERCENTILE_COLOR = "#6c757d"


def require_matplotlib() -> None:
    """Raise :class:`MissingDependencyError` (naming the ``plot`` extra) without matplotlib."""
    require("matplotlib", extra="plot", feature="plots")


@contextmanager
def _pinned(query: Any, version: str | None) -> Iterator[Any]:
    """The caller's Query (left open), or a new one for ``version`` (closed afterwards)."""
    if query is not None:
        if version is not None and version not in ("latest", query.version):
            raise QueryError(
                f"version={version!r} disagrees with the query's version {query.version}; "
                "give one or the other",
                version=version,
            )
        yield query
        return
    from intake_bfa.query import Query

    with Query(version or "latest") as q:
        yield q


def _title(q: Any, what: str) -> str:
    from intake_bfa.resolve import pin

    # The manifest is cached by the Query that pinned the version: no request here.
    synthetic = pin(q.version, q.settings).synthetic
    return f"{what}\nversion {q.version}" + (" — SYNTHETIC sample data" if synthetic else "")


# Symbols can hold CJK characters (e.g. 币安人生USDT); DejaVu Sans lacks them, so text
# naming symbols falls back to the first of these that is installed.
_CJK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "SimHei",
    "Arial Unicode MS",
)  # fmt: skip


def _symbol_fonts() -> list[str]:
    """Font families for text naming symbols: the default sans-serif, then CJK fallbacks."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [*matplotlib.rcParams["font.sans-serif"][:1], *(f for f in _CJK_FONTS if f in installed)]


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _as_dates(values: Any) -> list[dt.date]:
    return [v.date() if isinstance(v, dt.datetime) else v for v in values]


# --- charts ------------------------------------------------------------------------------------


def available_symbols(
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    ax: Any = None,
    version: str | None = None,
    query: Any = None,
):
    """Number of symbols with a daily file on Binance Vision, per date (a line).

    Parameters
    ----------
    start, end
        Inclusive window inside the version's coverage (default: the whole coverage).
    ax
        Draw into this axes instead of a new figure.
    version
        Dataset version (default ``"latest"``); ignored when ``query`` is given.
    query
        A :class:`~intake_bfa.query.Query` to reuse.

    Returns
    -------
    matplotlib.figure.Figure
        One line (label ``"available symbols"``); its y-data are
        ``Query.counts(start, end).available_symbols``.
    """
    require_matplotlib()
    with _pinned(query, version) as q:
        counts = q.counts(start, end)
        title = _title(q, "Symbols available per day")
    ax = _axes(ax, (10, 4.5))
    dates = _as_dates(counts["date"])
    ax.plot(dates, counts["available_symbols"].to_list(), color=AVAILABLE_COLOR,
            drawstyle="steps-mid", label="available symbols")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_ylabel("symbols with a daily file")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _date_axis(ax)
    return ax.figure


def _runs(days: list[dt.date]) -> list[tuple[dt.date, int]]:
    """Consecutive-day runs of sorted ``days`` as (first day, length)."""
    runs: list[tuple[dt.date, int]] = []
    for day in days:
        if runs and runs[-1][0] + dt.timedelta(days=runs[-1][1]) == day:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((day, 1))
    return runs


def symbol_timeline(
    symbol: str,
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    ax: Any = None,
    version: str | None = None,
    query: Any = None,
):
    """One symbol's availability over time: available days as bars, gaps in red.

    A day is drawn as the span ``[day, day + 1)``. Available runs are one broken-bar
    collection (label ``"available"``); gaps — runs of missing days between the
    symbol's first and last available date, exactly :meth:`Query.gaps
    <intake_bfa.query.Query.gaps>` clipped to the window — are a second one (label
    ``"gap"``), also shaded across the axes so short gaps stay visible on long
    timelines. Days before the listing or after the delisting are left blank: they
    are not gaps.

    Parameters
    ----------
    symbol
        A symbol as on Binance Vision, e.g. ``BTCUSDT`` (any case when unambiguous).
    start, end
        Inclusive window inside the coverage (default: the whole coverage).
    ax, version, query
        As in :func:`available_symbols`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_matplotlib()
    import matplotlib.dates as mdates

    with _pinned(query, version) as q:
        rows = q.timeline(symbol, start, end)
        gaps = q.gaps(symbol)
        lo, hi = q._window(start, end)  # validated already by timeline()
        title = _title(q, f"{symbol}: daily file on Binance Vision")
    available = sorted(_as_dates(rows.loc[rows["available"], "date"]))
    clipped = []
    for g_start, g_end in zip(_as_dates(gaps["start"]), _as_dates(gaps["end"]), strict=True):
        first, last = max(g_start, lo), min(g_end, hi)
        if first <= last:
            clipped.append((first, (last - first).days + 1))
    ax = _axes(ax, (10, 2.8))
    bar = (0.2, 0.6)
    ax.broken_barh([(mdates.date2num(d), n) for d, n in _runs(available)], bar,
                   facecolors=AVAILABLE_COLOR, label="available")  # fmt: skip
    ax.broken_barh([(mdates.date2num(d), n) for d, n in clipped], bar,
                   facecolors=GAP_COLOR, label="gap")  # fmt: skip
    for day, n in clipped:
        ax.axvspan(mdates.date2num(day), mdates.date2num(day) + n, color=GAP_COLOR, alpha=0.15)
    missing = sum(n for _, n in clipped)
    ax.set_xlim(mdates.date2num(lo), mdates.date2num(hi) + 1)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_title(title, fontfamily=_symbol_fonts())
    ax.set_xlabel(
        f"{len(available)} available day(s), {len(clipped)} gap(s) totalling {missing} day(s), "
        f"{lo} .. {hi}"
    )
    ax.legend(loc="upper left", ncols=2, fontsize="small", frameon=False)
    _date_axis(ax)
    return ax.figure


def _monthly(frame: Any, lo: dt.date, hi: dt.date) -> Any:
    import pandas as pd

    months = pd.period_range(lo, hi, freq="M")
    if frame.empty:
        return pd.Series(0, index=months, dtype="int64")
    per = pd.to_datetime(frame["date"]).dt.to_period("M").value_counts()
    return per.reindex(months, fill_value=0).astype("int64")


def listings_per_month(
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    include_initial: bool = False,
    ax: Any = None,
    version: str | None = None,
    query: Any = None,
):
    """Listings (above the axis) and delistings (below it) per calendar month, as bars.

    Definitions are those of :class:`~intake_bfa.query.Query`: a listing is a
    symbol's first available date, a delisting the last available date of a symbol
    not listed now. Delistings are drawn as negative bars so both series share one
    axis without hiding each other; the axis labels show their absolute values.

    Parameters
    ----------
    start, end
        Inclusive window inside the coverage (default: the whole coverage). Months
        are calendar months; the first and last may be partial.
    include_initial
        Symbols already trading when the data starts count as "listed" on the first
        covered day. They are not new listings, so they are left out by default.
    ax, version, query
        As in :func:`available_symbols`.

    Returns
    -------
    matplotlib.figure.Figure
        Two bar containers, labels ``"listings"`` (heights = counts) and
        ``"delistings"`` (heights = minus counts), one bar per month of the window.
    """
    require_matplotlib()
    from matplotlib.ticker import FuncFormatter

    with _pinned(query, version) as q:
        lo, hi = q._window(start, end)
        listed = q.listings(lo, hi)
        delisted = q.delistings(lo, hi)
        first_day = q.coverage[0]
        title = _title(q, "Listings and delistings per month")
    if not include_initial:
        listed = listed[[d != first_day for d in _as_dates(listed["date"])]]
    ups, downs = _monthly(listed, lo, hi), _monthly(delisted, lo, hi)
    ax = _axes(ax, (10, 4.5))
    x = [p.to_timestamp().to_pydatetime() for p in ups.index]
    width = 25  # days: a month's bar with a small gap to its neighbours
    ax.bar(x, ups.to_list(), width=width, align="edge", color=LISTING_COLOR, label="listings")
    ax.bar(x, [-n for n in downs.to_list()], width=width, align="edge", color=DELISTING_COLOR,
           label="delistings")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{abs(v):g}"))
    ax.set_ylabel("symbols (delistings below the axis)")
    note = "" if include_initial else f" (symbols already trading on {first_day} not counted)"
    ax.set_title(title + note)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", frameon=False)
    _date_axis(ax)
    return ax.figure


def volume_share(
    date: DateLike | None = None,
    n: int = 10,
    *,
    ax: Any = None,
    version: str | None = None,
    query: Any = None,
):
    """Market share of the ``n`` largest symbols by quote volume on one date (bars).

    A single date rather than a stacked area over time: the top-N set changes from
    day to day, so a stacked area would either mix different symbols in one band or
    need an ever-growing legend. Horizontal bars, rank 1 at the top, each labelled
    with its share; the share of all other symbols is stated in the x-axis label.

    Parameters
    ----------
    date
        A day inside the coverage (default: the last covered day).
    n
        How many symbols (>= 1); ties are broken by symbol, as in :meth:`Query.top
        <intake_bfa.query.Query.top>`.
    ax, version, query
        As in :func:`available_symbols`.

    Returns
    -------
    matplotlib.figure.Figure
        One bar container (label ``"market share"``): bar widths are
        ``Query.top(date, n).market_share_pct``, in rank order.
    """
    require_matplotlib()
    with _pinned(query, version) as q:
        day = q.coverage[1] if date is None else q._day(date, "date")
        top = q.top(day, n)
        title = _title(q, f"Top {n} symbols by quote volume on {day}")
    ax = _axes(ax, (9, max(3.0, 1.2 + 0.38 * max(len(top), 1))))
    shares = top["market_share_pct"].fillna(0).to_list()
    labels = top["symbol"].to_list()
    positions = list(range(len(labels)))
    bars = ax.barh(positions, shares, color=LISTING_COLOR, label="market share")
    ax.bar_label(bars, labels=[f"{s:.1f}%" for s in shares], padding=3, fontsize="small")
    ax.set_yticks(positions, labels, fontfamily=_symbol_fonts())
    ax.invert_yaxis()  # rank 1 at the top
    ax.set_xlim(0, max([*shares, 1.0]) * 1.15)
    rest = max(0.0, 100.0 - sum(shares))
    ax.set_xlabel(f"share of the day's total quote volume, % (all other symbols: {rest:.1f}%)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if not labels:
        ax.text(0.5, 0.5, "no traded symbols on this date", transform=ax.transAxes,
                ha="center", va="center")  # fmt: skip
    return ax.figure


def upload_delay(
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    symbols: str | list[str] | None = None,
    exact_only: bool = False,
    ax: Any = None,
    version: str | None = None,
    query: Any = None,
):
    """When files appear: the cumulative share of files there by N hours after their day.

    An empirical CDF of ``Query.latency(...).delay_hours`` (first_seen minus the end of
    the file's day), on a logarithmic hour axis so that the usual morning upload and
    back-fills weeks later both show, with the 50th and 95th percentiles marked.

    Parameters
    ----------
    start, end
        Days of the files, inclusive (default: the whole coverage).
    symbols
        One symbol or a list (default: all).
    exact_only
        Only files whose first_seen is exact (default: all, inexact ones at their upper
        bound).
    ax
        Draw into this axes instead of a new figure.
    version
        Dataset version (default ``"latest"``); ignored when ``query`` is given.
    query
        A :class:`~intake_bfa.query.Query` to reuse.

    Returns
    -------
    matplotlib.figure.Figure
        One step line (label ``"files"``): x the sorted delays in hours, y the share of
        files (0..1); two vertical lines labelled ``"p50 ..."`` and ``"p95 ..."``.
    """
    require_matplotlib()
    import numpy as np

    with _pinned(query, version) as q:
        rows = q.latency(start, end, symbols=symbols, exact_only=exact_only)
        summary = q.latency_summary(start, end, symbols=symbols, exact_only=exact_only)
        title = _title(q, "When daily files appear (hours after the end of their day)")
    ax = _axes(ax, (9, 4.5))
    delay = np.sort(rows["delay_hours"].to_numpy(dtype=float))
    if len(delay):
        share = np.arange(1, len(delay) + 1) / len(delay)
        ax.step(delay, share, where="post", color=AVAILABLE_COLOR, label="files")
        for p, style in ((50, "--"), (95, ":")):
            hours = float(summary[f"p{p}_hours"].iloc[0])
            there_by = summary[f"p{p}_by"].iloc[0]
            ax.axvline(hours, color=PERCENTILE_COLOR, linestyle=style,
                       label=f"p{p} {hours:.2f} h ({there_by})")  # fmt: skip
        if delay[0] > 0:
            ax.set_xscale("log")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no files in this window", ha="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("hours after the end of the file's day (UTC)")
    ax.set_ylabel("share of files there")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return ax.figure
