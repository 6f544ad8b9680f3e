"""``bfa cache status | clear | refresh | verify | prune``: inspect and maintain the local cache."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from intake_bfa.cli.common import (
    EXIT_OK,
    add_data_version,
    add_format_options,
    settings_from_args,
    wants_json,
)
from intake_bfa.display.text import age, dict_table, human_size


def cmd_cache_status(args: argparse.Namespace) -> int:
    from intake_bfa.cache.admin import cache_status

    status = cache_status(settings_from_args(args))
    if wants_json(args):
        print(json.dumps(asdict(status), indent=1))
        return EXIT_OK
    print(f"cache: {status.cache_dir} ({human_size(status.total_size, '-')} on disk)")
    for repo in status.repos:
        note = " (configured)" if repo.configured else ""
        print(f"\n{repo.repo}{note}: {len(repo.versions)} version(s), {human_size(repo.size, '-')}")
        if repo.latest:
            print(f"  latest: {repo.latest}, refreshed {age(repo.latest_age)} ago")
        rate = "-" if repo.hit_rate is None else f"{repo.hit_rate:.0%}"
        print(f"  reads: {repo.hits} hits, {repo.misses} misses, hit rate {rate}")
        rows = []
        for v in repo.versions:
            label = v.version + (" (latest)" if v.latest else "")
            for i, f in enumerate(v.files or [None]):
                row = {"version": "" if i else label, "file": f.name if f else "-"}
                if f:
                    row.update(size=human_size(f.size, "-"), age=age(f.age))
                rows.append(row)
        if rows:
            table = dict_table(rows, ["version", "file", "size", "age"])
            print("\n".join("  " + line for line in table.splitlines()))
    if status.leftovers:
        print(
            f"\nleftover temporary files: {len(status.leftovers)}, "
            f"{human_size(status.leftover_size, '-')} (`bfa cache clear --temp` removes those "
            "untouched for an hour)"
        )
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from intake_bfa.cache.admin import clear

    result = clear(
        settings_from_args(args), version=args.version, all=args.all, temporary=args.temp
    )
    for name in result.removed:
        print(f"removed {name}")
    if args.temp and result.kept:
        print(f"kept {len(result.kept)} temporary file(s) younger than an hour (in use?)")
    reset = "; the 'latest' pointer was reset" if result.latest_ref_removed else ""
    print(f"{human_size(result.bytes_freed, '-')} freed{reset}")
    return EXIT_OK


def cmd_cache_refresh(args: argparse.Namespace) -> int:
    from intake_bfa.cache.admin import refresh

    result = refresh(settings_from_args(args))
    if not result.changed:
        print(f"latest: {result.version} (unchanged)")
    else:
        print(f"latest: {result.version} (was {result.previous or 'not resolved yet'})")
    return EXIT_OK


def cmd_cache_verify(args: argparse.Namespace) -> int:
    from intake_bfa.cache.admin import verify
    from intake_bfa.errors import IntegrityError

    report = verify(settings_from_args(args))
    rows = [
        {"status": "CORRUPT, removed", "file": path, "detail": report.details[path]}
        for path in report.corrupt
    ] + [
        {"status": "unverified", "file": path, "detail": report.details[path]}
        for path in report.unverified
    ]
    if rows:
        print(dict_table(rows, ["status", "file", "detail"]))
    print(
        f"{len(report.ok)} ok, {len(report.unverified)} unverified, {len(report.corrupt)} "
        f"corrupt ({human_size(report.bytes_hashed, '-')} hashed)"
    )
    if report.corrupt:
        raise IntegrityError(
            f"{len(report.corrupt)} corrupt file(s) found and removed; the next read "
            "downloads them again",
            removed=report.corrupt,
        )
    return EXIT_OK


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from intake_bfa.cache.admin import prune

    result = prune(settings_from_args(args), args.keep)
    for name in result.removed:
        print(f"removed {name}")
    print(
        f"kept {', '.join(result.kept) or 'nothing'}; {human_size(result.bytes_freed, '-')} freed"
    )
    return EXIT_OK


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``bfa cache`` and its actions on the ``bfa`` subparsers."""
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
    add_format_options(p, "output")
    p.set_defaults(func=cmd_cache_status)
    p = actions.add_parser(
        "clear",
        parents=[common],
        help="remove a cached version, everything, or stale temporary files",
        description="Remove cached data; say what: nothing is removed by default. "
        "Example: bfa cache clear --data-version 2026-11-20",
    )
    what = p.add_mutually_exclusive_group()
    add_data_version(what, help="remove this version of --repo")
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
