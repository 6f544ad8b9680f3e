"""``bfa stats``: release download counts, monthly totals, thresholds and a recommendation.

The work is done by :mod:`intake_bfa.producer.stats.counts` (imported only when the command runs);
this module parses the options and prints. Exit status: 0 when it ran, 1 on errors (one line
on stderr; the history file is untouched when the API could not be read), 2 on usage errors,
3 with ``--fail-on-threshold`` when a threshold is exceeded (after everything was written).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from intake_bfa.cli.common import add_format_options, settings_from_args, wants_json, whole_number
from intake_bfa.display.text import dict_table, human_size

EXIT_THRESHOLD = 3


def _check_usage(args: argparse.Namespace) -> None:
    """Usage errors (exit 2), before any request."""
    if args.append and not args.history:
        args.parser.error("--append needs --history FILE")
    if args.history_only and not args.history:
        args.parser.error("--history-only needs --history FILE")
    if args.append and args.history_only:
        args.parser.error("--append records a live observation; it cannot be --history-only")
    if args.plot:
        from intake_bfa.errors import ConfigError
        from intake_bfa.producer.stats.plot import image_format

        try:
            image_format(args.plot)
        except ConfigError as err:
            args.parser.error(str(err))


def _text(report: Any, args: argparse.Namespace, plot: str | None) -> str:
    lines = [
        f"{report.repo}: {report.total_downloads:,} downloads of {len(report.releases)} "
        f"release(s) at {report.observed_at}"
        + (" (from the recorded history)" if report.source == "history" else "")
    ]
    if report.recorded_downloads != report.total_downloads:
        lines.append(
            f"  {report.recorded_downloads:,} recorded in total, deleted releases and "
            "replaced assets included"
        )
    rows = [
        {
            "release": r.tag,
            "layout": r.layout,
            "published": (r.published_at or "-")[:10],
            "assets": r.assets,
            "downloads": f"{r.downloads:,}",
            "users": "-" if r.user_downloads is None else f"{r.user_downloads:,}",
        }
        for r in report.releases
    ]
    if rows:
        lines += ["", dict_table(rows, list(rows[0]))]
    if args.assets and report.assets:
        order = {r.tag: i for i, r in enumerate(report.releases)}  # as the release table
        rows = [
            {
                "release": a.tag,
                "asset": a.asset,
                "size": human_size(a.size, "-"),
                "downloads": f"{a.download_count:,}",
                "uploaded": (a.uploaded_at or "-")[:10],
            }
            for a in sorted(report.assets, key=lambda a: (order[a.tag], a.asset))
        ]
        lines += ["", dict_table(rows, list(rows[0]))]
    how = (
        f"from {report.snapshots} snapshots of {report.history_path}"
        if report.method == "history"
        else "APPROXIMATE: no history yet, each release's downloads count in its publication month"
    )
    rows = [
        {
            "month": m.month + ("" if m.complete else " (to date)"),
            "downloads": f"{m.downloads:,}",
            "transferred": human_size(m.bytes, "-"),
            "active users (est.)": f"{m.active_users:,}",
        }
        for m in report.monthly[-args.months :]
    ]
    lines += ["", f"per month ({how}):", dict_table(rows, list(rows[0]))]
    if len(report.monthly) > args.months:
        earlier = len(report.monthly) - args.months
        lines.append(f"({earlier} earlier month(s) not shown: --months N, or --json)")
    lines += ["", "thresholds:"]
    for v in report.verdicts:
        source = "" if v.threshold_source == "default" else f", threshold from {v.threshold_source}"
        lines.append(f"  {v.name}: {v.status.upper()}{source}: {v.recommendation}")
    if report.history_path and report.appended_rows:
        lines += ["", f"history: appended {report.appended_rows} rows to {report.history_path}"]
    if report.skipped_lines:
        lines.append(f"history: skipped {len(report.skipped_lines)} line(s) that do not parse")
    if plot:
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    from intake_bfa.producer.stats.counts import collect_stats

    _check_usage(args)
    if args.plot:
        from intake_bfa.producer.stats.plot import require_matplotlib

        require_matplotlib()  # fail before the API call and before touching the history
    report = collect_stats(
        settings_from_args(args),
        history=args.history,
        append=args.append,
        history_only=args.history_only,
        mirror_threshold=args.mirror_threshold,
        api_threshold=args.api_threshold,
    )
    plot = None
    if args.plot:
        from intake_bfa.producer.stats.plot import write_plot

        plot = str(write_plot(report, args.plot))
    if wants_json(args):
        print(json.dumps({**report.to_dict(), "plot": plot}, indent=1, ensure_ascii=False))
    else:
        print(_text(report, args, plot))
    return EXIT_THRESHOLD if args.fail_on_threshold and report.tripped else 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``bfa stats`` on the ``bfa`` subparsers."""
    p = sub.add_parser(
        "stats",
        parents=[common],
        help="download counts per release and month, with mirror / query API advice (producer)",
        description="Read every release asset's download count from the GitHub API (all "
        "pages, never cached), sum them per release and per month, and check two thresholds: "
        "downloads a month (past it: add a mirror, bfa mirror sync) and active users a month, "
        "estimated from manifest downloads (past it: add a query API, bfa serve). Monthly "
        "figures need a history of observations (--history FILE --append, an append-only "
        "CSV); without one they are approximated from publication months. See "
        "docs/monitoring.md. Example: bfa stats --history stats/downloads.csv --append --plot stats/downloads.png",
        epilog="Thresholds: option > BFA_STATS_MIRROR_THRESHOLD / BFA_STATS_API_THRESHOLD > "
        "500 / 100. Exit status: 0 when it ran, 1 on errors (one line on stderr), 2 on usage "
        "errors, 3 with --fail-on-threshold when a threshold is exceeded. Uses GITHUB_TOKEN "
        "if set (5000 requests/hour instead of 60); a few requests per run.",
    )
    p.add_argument("--history", metavar="FILE", help="history CSV file to read")
    p.add_argument(
        "--append",
        action="store_true",
        help="append this observation to --history (created if missing)",
    )
    p.add_argument(
        "--history-only",
        action="store_true",
        help="no API call: summarise --history (implied by --offline)",
    )
    p.add_argument(
        "--mirror-threshold",
        metavar="N",
        help="downloads a month that call for a mirror (default 500)",
    )
    p.add_argument(
        "--api-threshold",
        metavar="N",
        help="active users a month that call for a query API (default 100)",
    )
    p.add_argument("--plot", metavar="FILE", help="draw the monthly chart (.png, .svg, .pdf)")
    p.add_argument("--assets", action="store_true", help="also list every asset")
    p.add_argument(
        "--months",
        type=whole_number(1),
        default=12,
        metavar="N",
        help="months shown in the table (default 12; --json and --plot have them all)",
    )
    p.add_argument(
        "--fail-on-threshold",
        action="store_true",
        help="exit 3 when a threshold is exceeded (for schedulers that alert on failure)",
    )
    add_format_options(p, "output")
    p.set_defaults(func=cmd_stats, parser=p)
