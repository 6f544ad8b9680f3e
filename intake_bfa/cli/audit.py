"""``bfa diff`` and ``bfa check``: what changed between two versions, and what is wrong in one."""

from __future__ import annotations

import argparse
import json
from typing import Any

from intake_bfa.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    add_data_version,
    add_format_options,
    settings_from_args,
    wants_json,
    whole_number,
)
from intake_bfa.display.text import dict_table


def _pair(before_after: list[Any]) -> str:
    before, after = before_after
    return f"{before} -> {after}" if before != after else str(after)


def cmd_diff(args: argparse.Namespace) -> int:
    from intake_bfa.audit import diff

    result = diff(args.old, args.new, limit=args.limit, settings=settings_from_args(args))
    if wants_json(args):
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return EXIT_OK
    lines = [
        f"daily_availability {result.old} ({result.old_coverage[0]} .. {result.old_coverage[1]})"
        f" -> {result.new} ({result.new_coverage[0]} .. {result.new_coverage[1]})",
        f"  {result.new_dates} new dates, {result.added_rows:,} rows added, "
        f"{result.removed_rows:,} rows removed",
    ]
    meanings = result.to_dict()["meanings"]
    rows = [
        {"change": k, "rows": f"{n:,}", "meaning": meanings[k]} for k, n in result.changes.items()
    ]
    lines.append(dict_table(rows, ["change", "rows", "meaning"]))
    for label, names in (
        ("new symbols", result.new_symbols),
        ("delisted", result.delisted_symbols),
    ):
        lines.append(f"{label} ({len(names)}): {', '.join(names) if names else '-'}")
    for kind, examples in result.examples.items():
        lines.append(f"\n{kind} (newest {len(examples)} of {result.changes[kind]:,}):")
        shown = [
            {
                "date": e["date"],
                "symbol": e["symbol"],
                "available": _pair(e["available"]),
                "size": _pair(e["file_size_bytes"]),
                "last_modified": _pair(e["last_modified"]),
                "quote_volume": _pair(e["quote_volume_usdt"]),
            }
            for e in examples
        ]
        cols = ["date", "symbol", "available", "size", "last_modified", "quote_volume"]
        lines.append(dict_table(shown, cols))
    print("\n".join(lines))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from intake_bfa.audit import check

    report = check(args.version, limit=args.limit, settings=settings_from_args(args))
    if wants_json(args):
        print(json.dumps(report.to_dict(), indent=1))
    elif report.clean:
        print(f"{report.version}: clean ({report.rows:,} rows; {len(report.checked)} checks)")
    else:
        rows = [{"anomaly": a.name, "count": f"{a.count:,}", "meaning": a.meaning}
                for a in report.anomalies]  # fmt: skip
        lines = [f"{report.version}: {len(report.anomalies)} kinds of anomaly in "
                 f"{report.rows:,} rows", dict_table(rows, ["anomaly", "count", "meaning"])]  # fmt: skip
        for a in report.anomalies:
            shown = ", ".join(" ".join(str(v) for v in e.values()) for e in a.examples)
            lines.append(f"  {a.name}: e.g. {shown}")
        print("\n".join(lines))
    # Exit 1 when anything is found, so a pipeline can gate on a version.
    return EXIT_OK if report.clean else EXIT_ERROR


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``diff`` and ``check`` on the ``bfa`` subparsers."""
    fmt = argparse.ArgumentParser(add_help=False)
    add_format_options(fmt)

    p = sub.add_parser(
        "diff",
        parents=[common, fmt],
        help="what changed in daily_availability between two versions",
        description="Compare two versions of daily_availability row by row: new dates, late "
        "back-fills, files that disappeared or were replaced (size or Last-Modified), volumes "
        "that arrived or were revised, new and delisted symbols. "
        "Example: bfa diff 2026-11-20 2026-11-21 --format json",
    )
    p.add_argument("old", help="the older version")
    p.add_argument("new", nargs="?", default="latest", help="the newer version (default latest)")
    p.add_argument("--limit", type=whole_number(0, 10_000), default=20,
                   help="example rows per kind of change (default 20)")  # fmt: skip
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "check",
        parents=[common, fmt],
        help="data-quality anomalies of a version (exit 1 when any is found)",
        description="Check a version for anomalies: unavailable rows with HTTP 200, partially "
        "null volume rows, rankings ending before the volumes, dates before Binance Vision's "
        "first file, duplicate keys, nulls in required columns. Exit 0 when clean, 1 when "
        "anything is found. Example: bfa check --data-version 2026-11-20 --format json",
    )
    add_data_version(p, default="latest", help="version (default latest)")
    p.add_argument("--limit", type=whole_number(0, 1000), default=5,
                   help="example rows per anomaly (default 5)")  # fmt: skip
    p.set_defaults(func=cmd_check)
