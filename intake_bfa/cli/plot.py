"""``bfa plot KIND --output FILE``: the charts of :mod:`intake_bfa.plots` as image files.

The image is rendered with matplotlib's non-interactive Agg canvas (no display
needed) into a temporary file renamed into place, so a reader never sees half an
image; the path is printed on stdout. Exit status: 0 when the image was written; 1
for errors (unknown symbol, date outside the version's coverage, matplotlib not
installed, network or cache problems), one line on stderr; 2 for usage errors (an
option missing for KIND, or given to a KIND that does not use it).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from intake_bfa.cli.common import add_data_version, iso_day, settings_from_args, whole_number

KINDS = ("available", "timeline", "listings", "share", "latency")
#: Image formats by file extension (Agg writes PNG; matplotlib switches canvas for the rest).
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 150
# Which options each KIND accepts, and which it needs.
_ACCEPTS = {
    "available": {"start", "end"},
    "timeline": {"symbol", "start", "end"},
    "listings": {"start", "end"},
    "share": {"date", "n"},
    "latency": {"symbol", "start", "end"},
}
_REQUIRES = {"timeline": {"symbol"}}
_FLAGS = {"symbol": "--symbol", "date": "--date", "start": "--start", "end": "--end", "n": "-n"}


def _check_usage(args: argparse.Namespace) -> str:
    """Usage errors (exit 2) before any download; returns the image format."""
    given = {name for name in _FLAGS if getattr(args, name) is not None}
    extra = sorted(given - _ACCEPTS[args.kind])
    if extra:
        flags = ", ".join(_FLAGS[name] for name in extra)
        args.parser.error(f"{flags} does not apply to 'bfa plot {args.kind}'")
    missing = sorted(_REQUIRES.get(args.kind, set()) - given)
    if missing:
        flags = ", ".join(_FLAGS[name] for name in missing)
        args.parser.error(f"'bfa plot {args.kind}' needs {flags}")
    return image_format(args.parser, args.output)


def image_format(parser: argparse.ArgumentParser, output: str, flag: str = "--output") -> str:
    """The image format of file name ``output``; a usage error (exit 2) for other extensions.

    Parameters
    ----------
    parser
        The command's parser, which reports the error.
    output
        The image file name given by the user.
    flag
        The option that named it, for the message.

    Returns
    -------
    str
        ``"png"``, ``"svg"`` or ``"pdf"``.
    """
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        parser.error(
            f"{flag} {output!r}: use a {', '.join(FORMATS)} file name (the format "
            "comes from the extension)"
        )
    return fmt


def _figure(args: argparse.Namespace, q: Any):
    from intake_bfa import plots

    if args.kind == "available":
        return plots.available_symbols(args.start, args.end, query=q)
    if args.kind == "timeline":
        return plots.symbol_timeline(args.symbol, args.start, args.end, query=q)
    if args.kind == "listings":
        return plots.listings_per_month(args.start, args.end, query=q)
    if args.kind == "latency":
        return plots.upload_delay(args.start, args.end, symbols=args.symbol, query=q)
    return plots.volume_share(args.date, 10 if args.n is None else args.n, query=q)


def cmd_plot(args: argparse.Namespace) -> int:
    from intake_bfa.plots import require_matplotlib
    from intake_bfa.query import Query

    fmt = _check_usage(args)
    require_matplotlib()  # before pinning a version: fail fast, without a download

    with Query(args.version, settings_from_args(args)) as q:
        fig = _figure(args, q)
    print(write_figure(fig, args.output, fmt))
    return 0


def write_figure(fig: Any, output: str, fmt: str) -> Path:
    """Render ``fig`` with the Agg canvas into ``output`` atomically; returns its path.

    Parameters
    ----------
    fig
        A matplotlib figure.
    output
        The image file to write.
    fmt
        Its format, from :func:`image_format`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from intake_bfa.cli.common import write_output

    FigureCanvasAgg(fig)  # explicit: never a GUI backend, whatever MPLBACKEND says
    path = Path(output)
    with warnings.catch_warnings():
        # Without a CJK font, symbols such as 币安人生USDT get placeholder boxes; the
        # image is still right, and one warning per glyph would bury the output path.
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
        write_output(path, lambda fh: _save(fig, fh, fmt))
    return path


def _save(fig: Any, fh: Any, fmt: str) -> None:
    fig.savefig(fh, format=fmt, dpi=DPI)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``bfa plot`` on the ``bfa`` subparsers."""
    p = sub.add_parser(
        "plot",
        parents=[common],
        help="draw a chart of the datasets into an image file",
        description="Draw a chart of one pinned version into FILE (.png, .svg or .pdf). "
        "KIND: available (symbols available per day; --start/--end), timeline (one "
        "symbol's available days with gaps in red; --symbol, --start/--end), listings "
        "(listings and delistings per month; --start/--end), share (top-N market share "
        "by quote volume on --date, default the last covered day; -n, default 10), latency "
        "(share of files there by N hours after the end of their day, p50/p95 marked; "
        "--symbol, --start/--end). "
        "Example: bfa plot timeline --symbol BTCUSDT --output btc.png",
        epilog="Exit status: 0 when the image was written (its path is printed), 1 on "
        "errors (one line on stderr), 2 on usage errors. Needs matplotlib: "
        "pip install 'intake-bfa[plot]'.",
    )
    p.add_argument("kind", metavar="KIND", choices=KINDS, help=", ".join(KINDS))
    p.add_argument(
        "--symbol", help="a symbol as on Binance Vision, e.g. BTCUSDT (timeline, latency)"
    )
    p.add_argument("--date", metavar="DATE", type=iso_day, help="a UTC day, YYYY-MM-DD (share)")
    p.add_argument(
        "--start", metavar="DATE", type=iso_day, help="first day (default: coverage start)"
    )
    p.add_argument("--end", metavar="DATE", type=iso_day, help="last day (default: coverage end)")
    p.add_argument("-n", type=whole_number(1), metavar="N", help="symbols in the chart (share)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="image file to write")
    add_data_version(p, default="latest", help="dataset version (default latest)")
    p.set_defaults(func=cmd_plot, parser=p)
