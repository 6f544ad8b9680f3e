"""The ``bfa`` command line. The only module that prints or exits.

Every intake-bfa error becomes one line on stderr (``bfa: error: ...``) and exit
status 1; usage errors exit 2 (argparse); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from . import __version__
from .errors import BfaError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def settings_from_args(args: argparse.Namespace):
    """Settings from the shared ``--repo/--api-url/--cache-dir/--offline`` options."""
    from .config import get_settings

    return get_settings(
        repo=args.repo,
        api_url=args.api_url,
        cache_dir=args.cache_dir,
        offline=True if args.offline else None,
    )


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Plain fixed-width table for terminals."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def cmd_versions(args: argparse.Namespace) -> int:
    from .releases import list_versions

    versions = list_versions(settings=settings_from_args(args))
    if args.json:
        print(json.dumps([asdict(v) for v in versions], indent=1))
        return EXIT_OK
    if not versions:
        print("no dataset versions found", file=sys.stderr)
        return EXIT_ERROR
    rows = [
        {
            "version": v.version + (" (latest)" if v.latest else ""),
            "layout": v.layout,
            "coverage": f"{v.coverage_start} .. {v.coverage_end}" if v.coverage_end else "-",
            "rows": f"{v.rows:,}" if v.rows else "-",
            "size": _human(v.size),
            "cached": "yes" if v.cached else "",
        }
        for v in versions
    ]
    print(format_table(rows, ["version", "layout", "coverage", "rows", "size", "cached"]))
    return EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    from .schema import DATASETS

    rows = [
        {"dataset": s.name, "kind": s.kind, "description": s.description} for s in DATASETS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows, ["dataset", "kind", "description"]))
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from .datasets import local_path
    from .progress import progress_callback

    callback = progress_callback(args.quiet)
    with callback or nullcontext():
        path = local_path(
            args.dataset, args.version, settings=settings_from_args(args), callback=callback
        )
    print(path)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(symbols=args.symbols, keep=args.keep, quiet=args.quiet)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def cmd_cache_status(args: argparse.Namespace) -> int:
    from .cache_admin import cache_status

    status = cache_status(settings_from_args(args))
    if args.json:
        print(json.dumps(asdict(status), indent=1))
        return EXIT_OK
    print(f"cache: {status.cache_dir} ({_human(status.total_size)} on disk)")
    for repo in status.repos:
        note = " (configured)" if repo.configured else ""
        print(f"\n{repo.repo}{note}: {len(repo.versions)} version(s), {_human(repo.size)}")
        if repo.latest:
            print(f"  latest: {repo.latest}, refreshed {_age(repo.latest_age)} ago")
        rate = "-" if repo.hit_rate is None else f"{repo.hit_rate:.0%}"
        print(f"  reads: {repo.hits} hits, {repo.misses} misses, hit rate {rate}")
        rows = []
        for v in repo.versions:
            label = v.version + (" (latest)" if v.latest else "")
            for i, f in enumerate(v.files or [None]):
                row = {"version": "" if i else label, "file": f.name if f else "-"}
                if f:
                    row.update(size=_human(f.size), age=_age(f.age))
                rows.append(row)
        if rows:
            table = format_table(rows, ["version", "file", "size", "age"])
            print("\n".join("  " + line for line in table.splitlines()))
    if status.leftovers:
        print(
            f"\nleftover temporary files: {len(status.leftovers)}, "
            f"{_human(status.leftover_size)} (`bfa cache clear --temp` removes those "
            "untouched for an hour)"
        )
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from .cache_admin import clear

    result = clear(
        settings_from_args(args), version=args.version, all=args.all, temporary=args.temp
    )
    for name in result.removed:
        print(f"removed {name}")
    if args.temp and result.kept:
        print(f"kept {len(result.kept)} temporary file(s) younger than an hour (in use?)")
    reset = "; the 'latest' pointer was reset" if result.latest_ref_removed else ""
    print(f"{_human(result.bytes_freed)} freed{reset}")
    return EXIT_OK


def cmd_cache_refresh(args: argparse.Namespace) -> int:
    from .cache_admin import refresh

    result = refresh(settings_from_args(args))
    if not result.changed:
        print(f"latest: {result.version} (unchanged)")
    else:
        print(f"latest: {result.version} (was {result.previous or 'not resolved yet'})")
    return EXIT_OK


def cmd_cache_verify(args: argparse.Namespace) -> int:
    from .cache_verify import verify
    from .errors import IntegrityError

    report = verify(settings_from_args(args))
    rows = [
        {"status": "CORRUPT, removed", "file": path, "detail": report.details[path]}
        for path in report.corrupt
    ] + [
        {"status": "unverified", "file": path, "detail": report.details[path]}
        for path in report.unverified
    ]
    if rows:
        print(format_table(rows, ["status", "file", "detail"]))
    print(
        f"{len(report.ok)} ok, {len(report.unverified)} unverified, {len(report.corrupt)} "
        f"corrupt ({_human(report.bytes_hashed)} hashed)"
    )
    if report.corrupt:
        raise IntegrityError(
            f"{len(report.corrupt)} corrupt file(s) found and removed; the next read "
            "downloads them again",
            removed=report.corrupt,
        )
    return EXIT_OK


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from .cache_admin import prune

    result = prune(settings_from_args(args), args.keep)
    for name in result.removed:
        print(f"removed {name}")
    print(f"kept {', '.join(result.kept) or 'nothing'}; {_human(result.bytes_freed)} freed")
    return EXIT_OK


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``low`` .. ``high`` (inclusive)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value

    return parse


def real_number(low: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number >= ``low`` (> ``low`` with ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a number {'>' if above else '>='} {low:g}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``bfa`` argument parser (also used to generate the CLI docs)."""
    parser = argparse.ArgumentParser(
        prog="bfa",
        description="Binance USDT-M futures availability: pinned, verified, cached datasets.",
        epilog="Configuration: BFA_REPO, BFA_API_URL, BFA_CACHE_DIR, GITHUB_TOKEN, BFA_OFFLINE, "
        "BFA_TTL (see README). Example: bfa versions",
    )
    parser.add_argument("--version", action="version", version=f"intake-bfa {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", help="GitHub owner/name holding the releases (BFA_REPO)")
    common.add_argument("--api-url", help="GitHub API base URL (BFA_API_URL)")
    common.add_argument("--cache-dir", help="cache folder (BFA_CACHE_DIR)")
    common.add_argument(
        "--offline", action="store_true", help="use cached data only (BFA_OFFLINE=1)"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "versions",
        parents=[common],
        help="list dataset versions with coverage and size",
        description="List dataset versions, newest first. Example: bfa versions --json",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser(
        "datasets",
        parents=[common],
        help="list the datasets a release carries",
        description="List the datasets. Example: bfa datasets",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser(
        "fetch",
        parents=[common],
        help="download a dataset into the cache and print its local path",
        description="Make a dataset available locally and print its path. "
        "Example: bfa fetch daily_availability --version 2026-11-20",
    )
    p.add_argument("dataset", help="daily_availability, availability_db, volume_rankings, symbols")
    p.add_argument("--version", dest="version", default="latest", help="version (default latest)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="walk through the product on a local, synthetic release (no internet)",
        description="Start a local release server with SYNTHETIC sample data and walk the user "
        "journey. Needs no internet. Example: bfa demo",
    )
    p.add_argument(
        "--symbols",
        # Below 40 the sample cannot hold every naming quirk it demonstrates.
        type=whole_number(40, 2000),
        default=200,
        help="symbols in the synthetic sample, 40-2000 (default 200)",
    )
    p.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")
    p.set_defaults(func=cmd_demo)

    from .cli_mirror import add_commands as add_mirror_commands
    from .cli_plot import add_commands as add_plot_commands
    from .cli_producer import add_commands  # producer modules load only when run
    from .cli_query import add_commands as add_query_commands
    from .cli_serve import add_commands as add_serve_commands
    from .cli_stats import add_commands as add_stats_commands

    add_commands(sub, common)
    add_query_commands(sub, common)
    add_plot_commands(sub, common)
    add_stats_commands(sub, common)
    add_mirror_commands(sub, common)
    add_serve_commands(sub, common)

    p = sub.add_parser(
        "cache",
        help="inspect and maintain the local cache",
        description="Inspect and maintain the local cache. Example: bfa cache status",
    )
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "status",
        parents=[common],
        help="location, size, versions, hit rate, leftovers",
        description="Show every cached repository and version with file sizes and ages, the "
        "'latest' pointer, hit/miss counts and leftover temporary files. "
        "Example: bfa cache status --json",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_cache_status)
    p = actions.add_parser(
        "clear",
        parents=[common],
        help="remove a cached version, everything, or stale temporary files",
        description="Remove cached data; say what: nothing is removed by default. "
        "Example: bfa cache clear --version 2026-11-20",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--version", dest="version", help="remove this version of --repo")
    what.add_argument(
        "--all", action="store_true", help="remove every repository's data (keeps CACHEDIR.TAG)"
    )
    what.add_argument(
        "--temp", action="store_true", help="remove temporary files untouched for an hour"
    )
    p.set_defaults(func=cmd_cache_clear)
    p = actions.add_parser(
        "refresh",
        parents=[common],
        help="resolve 'latest' again now, ignoring BFA_TTL",
        description="Ask the release server for the newest version now. Example: bfa cache refresh",
    )
    p.set_defaults(func=cmd_cache_refresh)
    p = actions.add_parser(
        "verify",
        parents=[common],
        help="re-hash cached files; remove corrupt ones (exit 1 if any)",
        description="Re-hash every cached file against its recorded sha256 and check every "
        "manifest; corrupt files are removed (the next read downloads them again) and the "
        "exit status is 1. Example: bfa cache verify",
    )
    p.set_defaults(func=cmd_cache_verify)
    p = actions.add_parser(
        "prune",
        parents=[common],
        help="keep the N newest versions (and the latest one), remove the rest",
        description="Remove old versions of --repo. Example: bfa cache prune --keep 2",
    )
    p.add_argument("--keep", type=int, required=True, metavar="N", help="versions to keep")
    p.set_defaults(func=cmd_cache_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bfa`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="bfa: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except BfaError as err:
        message = str(err).replace("\n", " ")
        print(f"bfa: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bfa: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `bfa versions | head -1`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
