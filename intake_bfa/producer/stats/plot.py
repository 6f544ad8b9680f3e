"""The ``bfa stats --plot`` chart: monthly downloads and active users against their thresholds.

matplotlib is optional (``pip install 'intake-bfa[plot]'``) and imported only here, inside the
functions. Figures are made without pyplot and rendered by the Agg canvas (or matplotlib's SVG
and PDF canvases, chosen by the file suffix), so no display is ever needed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intake_bfa.errors import ConfigError

if TYPE_CHECKING:
    from intake_bfa.producer.stats.counts import StatsReport

#: Image formats by file suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 150
BAR_COLOR = "#2a9d8f"
CURRENT_COLOR = "#a8dadc"
LIMIT_COLOR = "#e63946"
USERS_COLOR = "#264653"


def require_matplotlib() -> None:
    """Raise :class:`~intake_bfa.errors.MissingDependencyError` if matplotlib is missing."""
    from intake_bfa.extras import require

    require("matplotlib", extra="plot", feature="bfa stats --plot")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format for ``path``'s suffix; ConfigError for an unknown one."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"plot file {str(path)!r}: use a {', '.join(FORMATS)} file name (the format "
            "comes from the suffix)",
            variable="--plot",
            value=str(path),
        )
    return fmt


def stats_figure(report: StatsReport) -> Any:
    """Two panels: downloads per month (bars, mirror threshold line) and active users.

    The current month is drawn lighter and labelled "to date"; the title says when the
    figures are an approximation (no history).
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    months = [m.month for m in report.monthly]
    x = list(range(len(months)))
    colors = [BAR_COLOR if m.complete else CURRENT_COLOR for m in report.monthly]
    fig = Figure(figsize=(max(6.0, 0.45 * len(months) + 3), 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(x, [m.downloads for m in report.monthly], color=colors, label="downloads")
    top.axhline(
        report.thresholds.mirror,
        color=LIMIT_COLOR,
        linestyle="--",
        label=f"mirror threshold ({report.thresholds.mirror:,})",
    )
    top.set_ylabel("downloads / month")
    top.legend(loc="upper left", fontsize="small")
    bottom.plot(
        x,
        [m.active_users for m in report.monthly],
        marker="o",
        color=USERS_COLOR,
        label="active users (estimate)",
    )
    bottom.axhline(
        report.thresholds.api,
        color=LIMIT_COLOR,
        linestyle="--",
        label=f"query API threshold ({report.thresholds.api:,})",
    )
    bottom.set_ylabel("active users / month")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left", fontsize="small")
    labels = [m.month + ("" if m.complete else "\n(to date)") for m in report.monthly]
    step = max(1, len(labels) // 24)  # at most ~24 labels, however long the history
    bottom.set_xticks(x[::step], labels[::step], rotation=90 if len(labels) > 12 else 0)
    how = (
        f"from {report.snapshots} snapshots"
        if not report.monthly_approximate
        else "APPROXIMATE: no history, downloads counted in each release's publication month"
    )
    fig.suptitle(f"{report.repo}: release downloads per month\n{how}", fontsize="medium")
    return fig


def write_plot(report: StatsReport, path: str | os.PathLike[str]) -> Path:
    """Draw :func:`stats_figure` into ``path`` (.png, .svg or .pdf), atomically.

    Returns
    -------
    Path
        ``path``. A reader never sees a half-written image: it is written to a temporary
        file that replaces ``path``.
    """
    from intake_bfa.cache.layout import atomic_writer

    fmt = image_format(path)
    fig = stats_figure(report)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # explicit: never a GUI backend, whatever MPLBACKEND says
    path = Path(path)

    def save(fh: Any) -> None:
        fig.savefig(fh, format=fmt, dpi=DPI)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
        atomic_writer(path, save)
    return path
