"""``bfa snapshot``, ``range``, ``timeline``, ... ``sql``: the query commands.

Each command answers from one pinned version (``--data-version``, default latest), as
published or as known at a past instant (``--as-of``, ``--lag``), through
:class:`intake_bfa.query.Query`, and writes the answer as an aligned table (default),
JSON (a list of objects), CSV (with a header) or Parquet, to stdout or atomically to
``--output FILE`` (the format is then taken from the extension unless ``--format``
says otherwise; Parquet needs ``--output``).

Exit status: 0 when the query ran, *including an empty answer* (no listings that day
is an answer, not a failure: JSON ``[]``, a CSV header, "(0 rows)"); 1 for errors
(bad date, unknown symbol, date outside the version's coverage, SQL errors, network or
cache problems), one line on stderr; 2 for usage errors (argparse, Parquet to stdout).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from intake_bfa.cli.common import (
    add_data_version,
    iso_day,
    real_number,
    settings_from_args,
    whole_number,
)
from intake_bfa.cli.output import FORMATS, TTY_ROWS, choose_format, emit

log = logging.getLogger(__name__)

_DAY = "a UTC day, YYYY-MM-DD, inside the version's coverage"
_SYMBOL = "a symbol as on Binance Vision, e.g. BTCUSDT, BTCUSDT_240329 (any case: btcusdt)"
EXIT_STATUS = (
    "Exit status: 0 when the query ran (an empty answer too), 1 on errors (one line on "
    "stderr), 2 on usage errors."
)


# --- commands ------------------------------------------------------------------------------


def _answer(args: argparse.Namespace, ask) -> int:
    """Pin a version, ask ``ask(query)`` for a relation, and emit its rows."""
    from intake_bfa.query.api import Query, fetch_arrow

    choose_format(args)  # usage errors before any download
    with Query(args.version, settings_from_args(args), as_of=args.as_of, lag=args.lag) as q:
        table = fetch_arrow(ask(q))
        emit(table, args, q.label)
    return 0


def _range(q, args: argparse.Namespace) -> tuple[Any, Any]:
    """START/END for listings and delistings: --on DATE, or --start/--end (open ends)."""
    if args.on is not None:
        if args.start is not None or args.end is not None:
            args.parser.error("--on cannot be combined with --start/--end")
        return args.on, args.on
    if args.start is None and args.end is None:
        return None, None
    return args.start, args.end if args.end is not None else q.coverage[1]


def cmd_snapshot(args):
    return _answer(
        args, lambda q: q.snapshot(args.date, quote=args.quote, kind=args.kind, as_relation=True)
    )


def cmd_range(args):
    return _answer(
        args,
        lambda q: q.available_in(
            args.start, args.end, quote=args.quote, kind=args.kind, as_relation=True
        ),
    )


def cmd_timeline(args):
    return _answer(args, lambda q: q.timeline(args.symbol, args.start, args.end, as_relation=True))


def cmd_lifetime(args):
    return _answer(args, lambda q: q.lifetime(args.symbol, as_relation=True))


def cmd_listings(args):
    return _answer(
        args,
        lambda q: q.listings(*_range(q, args), quote=args.quote, kind=args.kind, as_relation=True),
    )


def cmd_delistings(args):
    return _answer(
        args,
        lambda q: q.delistings(
            *_range(q, args), quote=args.quote, kind=args.kind, as_relation=True
        ),
    )


def cmd_counts(args):
    return _answer(args, lambda q: q.counts(args.start, args.end, as_relation=True))


def cmd_gaps(args):
    return _answer(args, lambda q: q.gaps(args.symbol, as_relation=True))


def cmd_top(args):
    return _answer(args, lambda q: q.top(args.date, args.n, as_relation=True))


def cmd_rank(args):
    return _answer(
        args, lambda q: q.rank_history(args.symbol, args.start, args.end, as_relation=True)
    )


def cmd_universe(args):
    return _answer(
        args,
        lambda q: q.universe(
            args.start,
            args.end,
            every_day=not args.any_day,
            on=args.on,
            min_volume=args.min_volume,
            quote=args.quote,
            kind=args.kind,
            by=args.by,
            as_relation=True,
        ),
    )


def cmd_latency(args):
    """``bfa latency``: delay percentiles (or ``--rows``), and with ``--plot`` their chart."""
    from intake_bfa.query.api import Query, fetch_arrow

    if args.rows and args.by is not None:
        args.parser.error("--rows lists every file; it cannot be combined with --by")
    choose_format(args)  # usage errors before any download
    image = None
    if args.plot is not None:
        from intake_bfa.cli.plot import image_format
        from intake_bfa.plots import require_matplotlib

        image = image_format(args.parser, args.plot, "--plot")
        require_matplotlib()  # before pinning a version: fail fast, without a download
    window = {"symbols": args.symbol, "exact_only": args.exact_only, "as_relation": True}
    with Query(args.version, settings_from_args(args)) as q:
        if args.rows:
            table = fetch_arrow(q.latency(args.start, args.end, **window))
        else:
            table = fetch_arrow(q.latency_summary(args.start, args.end, by=args.by, **window))
        if image is not None:
            from intake_bfa import plots
            from intake_bfa.cli.plot import write_figure

            fig = plots.upload_delay(
                args.start, args.end, symbols=args.symbol, exact_only=args.exact_only, query=q
            )
            print(f"bfa: chart written to {write_figure(fig, args.plot, image)}", file=sys.stderr)
        emit(table, args, q.version)
    return 0


def _latency_arguments(p: argparse.ArgumentParser) -> None:
    _window(p, "files' days")
    p.add_argument("--symbol", metavar="SYMBOL", nargs="+", help="only these symbols")
    p.add_argument("--exact-only", action="store_true",
                   help="only files whose first_seen is exact (default: all, inexact ones at "
                        "their upper bound)")  # fmt: skip
    p.add_argument("--by", choices=("date", "symbol"),
                   help="a row per day or per symbol (default: one row)")  # fmt: skip
    p.add_argument("--rows", action="store_true",
                   help="every file's first_seen and delay_hours instead of percentiles")  # fmt: skip
    p.add_argument("--plot", metavar="FILE",
                   help="also draw the share of files there by N hours (p50/p95 marked) into "
                        "FILE (.png, .svg or .pdf; needs matplotlib)")  # fmt: skip
    _narrow_table(p, LATENCY_TABLE_COLUMNS)


def cmd_sql(args):
    if args.remote and settings_from_args(args).source is not None:
        log.info("the release folder is local: reading it without --remote")
        args.remote = False
    if not args.remote:
        return _answer(args, lambda q: q.sql(args.query, database=args.database, as_relation=True))
    if args.as_of is not None or args.lag is not None:
        args.parser.error("--as-of and --lag read the local files; drop --remote")
    if args.database:
        args.parser.error(
            "--database cannot be combined with --remote (availability_db is a compressed "
            "database, which range requests cannot read)"
        )
    return _remote_sql(args)


def _remote_sql(args: argparse.Namespace) -> int:
    """``bfa sql --remote``: the same locked-down SELECT, over HTTP ranges (no download)."""
    import duckdb

    from intake_bfa.query import sql as S
    from intake_bfa.query.api import fetch_arrow
    from intake_bfa.remote.relation import filesystem_of

    choose_format(args)
    S.check_select(args.query)  # before any request
    con, version = S.locked_remote_connection(args.version, settings_from_args(args))
    try:
        table = fetch_arrow(con.sql(args.query))
    except duckdb.Error as err:  # a binding error (fetch_arrow converts execution errors)
        present = {name for (name,) in con.execute(S.VIEWS_SQL).fetchall()}
        views = [t for t in S.TABLES if t in present]

        def absent(name: str) -> str:
            return (f"{name} of version {version} is not published as a Parquet file (the "
                    "rolling layout derives it from its database), so it cannot be read "
                    "remotely; run the query without --remote")  # fmt: skip

        raise S.unknown_table_error(err, views, absent) from None
    finally:
        stats = filesystem_of(con).stats()
        con.close()
        log.info(
            "remote query of %s: %s bytes transferred in %d requests (%d range reads, %d retries)",
            version,
            f"{stats['bytes_transferred']:,}",
            stats["requests"],
            stats["range_reads"],
            stats["retries"],
        )
    emit(table, args, version)
    return 0


# --- parser --------------------------------------------------------------------------------


def _output_options() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(add_help=False)
    group = out.add_argument_group("answer")
    add_data_version(group, default="latest", help="dataset version (default latest)")
    group.add_argument(
        "--as-of", metavar="INSTANT",
        help="answer as known at this UTC instant (2024-03-05T09:00Z; a date: its 00:00 UTC), "
        "or D+1T09:00Z: each day as known at 09:00 UTC the next day",
    )  # fmt: skip
    group.add_argument(
        "--lag", metavar="HH:MM",
        help="publication lag: each day as known at HH:MM UTC the next day (= --as-of "
        "D+1THH:MMZ)",
    )  # fmt: skip
    group.add_argument(
        "--format", choices=FORMATS, help="output format (default: from --output's extension, "
        "else table)",
    )  # fmt: skip
    group.add_argument("--json", dest="format", action="store_const", const="json",
                       help="same as --format json")  # fmt: skip
    group.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically)")
    group.add_argument("--columns", metavar="A,B", help="keep only these columns, in this order")
    group.add_argument(
        "--max-rows",
        type=whole_number(0),
        metavar="N",
        help=f"table rows shown (default {TTY_ROWS} on a terminal, all otherwise; 0: all)",
    )
    return out


def _symbol_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quote", metavar="ASSET", help="only this quote asset (USDT, USDC, ...)")
    p.add_argument(
        "--kind", choices=("perpetual", "delivery", "settled"), help="only this contract kind"
    )


def _window(p: argparse.ArgumentParser, what: str = "range") -> None:
    p.add_argument(
        "--start", metavar="DATE", type=iso_day, help=f"first day of the {what} (default: coverage)"
    )
    p.add_argument(
        "--end", metavar="DATE", type=iso_day, help=f"last day of the {what} (default: coverage)"
    )


# name, help, description (with its example), function, arguments
_COMMANDS: list[tuple[str, str, str, Any, Any]] = [
    ("snapshot", "symbols available on a date",
     "Symbols whose daily file exists on DATE. Example: bfa snapshot 2021-03-04 --quote USDT",
     cmd_snapshot,
     lambda p: (p.add_argument("date", metavar="DATE", type=iso_day, help=_DAY), _symbol_filters(p))),
    ("range", "symbols available at any time in a date range",
     "Symbols available on at least one day of START..END (inclusive), with their first and "
     "last day in the range. Example: bfa range 2021-01-01 2021-03-31",
     cmd_range,
     lambda p: (p.add_argument("start", metavar="START", type=iso_day, help=_DAY), p.add_argument("end", metavar="END", type=iso_day, help=_DAY),
                _symbol_filters(p))),
    ("timeline", "one symbol's daily rows (available or not)",
     "Every daily_availability row of SYMBOL. Example: bfa timeline BTCUSDT --start 2021-01-01 "
     "--columns date,available,quote_volume_usdt",
     cmd_timeline,
     lambda p: (p.add_argument("symbol", metavar="SYMBOL", help=_SYMBOL), _window(p),
                _narrow_table(p, TIMELINE_TABLE_COLUMNS))),
    ("lifetime", "a symbol's first/last available date and listed-now flag",
     "The symbols row of SYMBOL. Example: bfa lifetime ETHUSDT_210625",
     cmd_lifetime, lambda p: p.add_argument("symbol", metavar="SYMBOL", help=_SYMBOL)),
    ("listings", "new listings (first available date)",
     "Symbols first available on --on DATE or within --start..--end (open ends run to the "
     "coverage edge; nothing: all). Example: bfa listings --start 2021-06-01",
     cmd_listings,
     lambda p: (_window(p), p.add_argument("--on", metavar="DATE", type=iso_day, help="a single day"),
                _symbol_filters(p))),
    ("delistings", "delistings (last available date of symbols not listed now)",
     "A delisting is the last available date of a symbol that is not listed now (no file on "
     "the version's last two days, or a settled history). Example: bfa delistings --on "
     "2021-06-25",
     cmd_delistings,
     lambda p: (_window(p), p.add_argument("--on", metavar="DATE", type=iso_day, help="a single day"),
                _symbol_filters(p))),
    ("counts", "available symbols, listings and delistings per date",
     "Per date: available_symbols, listings, delistings. Example: bfa counts --start "
     "2021-06-01 --format csv",
     cmd_counts, _window),
    ("gaps", "runs of missing days per symbol",
     "Missing-day runs (start, end, days) between first and last available date; all "
     "symbols without SYMBOL. Example: bfa gaps BTCUSDT",
     cmd_gaps, lambda p: p.add_argument("symbol", metavar="SYMBOL", nargs="?", help=_SYMBOL)),
    ("top", "top symbols by quote volume on a date",
     "The N largest symbols by quote volume on DATE, with market share and rank changes. "
     "Example: bfa top 2021-03-04 -n 20",
     cmd_top,
     lambda p: (p.add_argument("date", metavar="DATE", type=iso_day, help=_DAY),
                p.add_argument("-n", type=int, default=10, help="how many (default 10)"))),
    ("rank", "a symbol's volume rank and market share over time",
     "Daily rank, quote volume, market share and rank changes of SYMBOL. "
     "Example: bfa rank ETHUSDT --start 2021-06-01",
     cmd_rank, lambda p: (p.add_argument("symbol", metavar="SYMBOL", help=_SYMBOL), _window(p))),
    ("universe", "survivorship-free backtest universe over a window",
     "Symbols available on every day of START..END (or on --on DATE, or --any-day), "
     "delisted ones included; --min-volume is the minimum AVERAGE daily quote volume over "
     "the window's available days. A reused ticker's contracts (BNXUSDTSETTLED, then "
     "BNXUSDT) are separate rows; --by contract shows which share a ticker. "
     "Example: bfa universe 2021-01-01 2021-03-31 --min-volume 1e6 --quote USDT",
     cmd_universe,
     lambda p: (
         p.add_argument("start", metavar="START", type=iso_day, help=_DAY), p.add_argument("end", metavar="END", type=iso_day, help=_DAY),
         p.add_argument("--on", metavar="DATE", type=iso_day, help="available on this day (in the window)"),
         p.add_argument("--any-day", action="store_true", help="available on any day"),
         p.add_argument("--min-volume", type=real_number(0), metavar="X",
                        help="minimum average daily quote volume"),
         p.add_argument("--by", choices=("symbol", "contract"), default="symbol",
                        help="symbol: a row per symbol (default); contract: also each row's "
                             "ticker and the contracts before and after it under that ticker"),
         _symbol_filters(p))),
    ("latency", "when daily files appear: upload delay percentiles",
     "Upload delay of the daily files: first_seen minus the end of their day (midnight UTC), "
     "as percentiles (p50..p99, in hours and as the time by which that share is there, e.g. "
     "'D+1 08:50 UTC') and the percent more than 1 and 7 days late; inexact first_seen (an "
     "upper bound) counts unless --exact-only. Example: bfa latency --start 2026-01-01 "
     "--plot latency.png",
     cmd_latency, lambda p: _latency_arguments(p)),
    ("sql", "run one read-only SELECT on the datasets",
     "Run one SELECT on views daily_availability, volume_rankings and symbols (the cached "
     "files of --data-version, or with --remote the release's Parquet files read by HTTP range "
     "requests, nothing downloaded); --database also attaches availability_db read-only as "
     "schema db. No other file, network or extension is reachable. "
     "Example: bfa sql \"SELECT symbol, days_available FROM symbols ORDER BY 2 DESC LIMIT 5\" "
     "Example: bfa sql --remote \"SELECT count(*) FROM daily_availability\" -v",
     cmd_sql,
     lambda p: (p.add_argument("query", metavar="QUERY", help="the SELECT statement"),
                p.add_argument("--database", action="store_true",
                               help="also attach availability_db (downloads it)"),
                p.add_argument("--remote", action="store_true",
                               help="read the release's Parquet by HTTP ranges instead of "
                                    "downloading it (-v: bytes transferred)"))),
]  # fmt: skip


#: What ``bfa timeline`` shows as a table by default (17 columns, URLs included, do not fit).
TIMELINE_TABLE_COLUMNS = (
    "date", "symbol", "available", "file_size_bytes", "last_modified", "quote_volume_usdt",
    "trade_count", "close_price",
)  # fmt: skip


#: What ``bfa latency`` shows as a table by default.
LATENCY_TABLE_COLUMNS = (
    "date", "symbol", "first_seen", "first_seen_exact", "delay_hours", "files", "exact_files",
    "p50_hours", "p95_hours", "p50_by", "p95_by", "p99_by", "late_1d_pct", "late_7d_pct",
)  # fmt: skip


def _narrow_table(p: argparse.ArgumentParser, columns: tuple[str, ...]) -> None:
    p.add_argument("--all-columns", action="store_true",
                   help=f"show every column in the table (default: {','.join(columns)}; "
                        "other formats always have all)")  # fmt: skip
    p.set_defaults(table_columns=columns)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the query commands on the ``bfa`` subparsers."""
    out = _output_options()
    for name, help_text, description, func, arguments in _COMMANDS:
        p = sub.add_parser(
            name,
            parents=[common, out],
            help=help_text,
            description=description,
            epilog=EXIT_STATUS,
        )
        arguments(p)
        p.set_defaults(func=func, parser=p)
