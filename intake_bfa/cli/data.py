"""``bfa versions``, ``bfa datasets``, ``bfa fetch`` and ``bfa demo``: what exists, and getting it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
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
from intake_bfa.display.text import dict_table, human_size


def cmd_versions(args: argparse.Namespace) -> int:
    from intake_bfa.resolve import list_versions

    versions = list_versions(settings=settings_from_args(args))
    if wants_json(args):
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
            "size": human_size(v.size, "-"),
            "cached": "yes" if v.cached else "",
        }
        for v in versions
    ]
    print(dict_table(rows, ["version", "layout", "coverage", "rows", "size", "cached"]))
    return EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    from intake_bfa.schema import DATASETS

    rows = [
        {"dataset": s.name, "kind": s.kind, "description": s.description} for s in DATASETS.values()
    ]
    if wants_json(args):
        print(json.dumps(rows, indent=1))
    else:
        print(dict_table(rows, ["dataset", "kind", "description"]))
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from intake_bfa.datasets import local_path
    from intake_bfa.progress import progress_callback

    callback = progress_callback(args.quiet)
    with callback or nullcontext():
        path = local_path(
            args.dataset, args.version, settings=settings_from_args(args), callback=callback
        )
    print(path)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from intake_bfa.cli.demo import run_demo

    return run_demo(
        folder=args.dir,
        symbols=args.symbols,
        serve=args.serve,
        quiet=args.quiet,
        cache_dir=args.cache_dir,
    )


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the data commands on the ``bfa`` subparsers."""
    p = sub.add_parser(
        "versions",
        parents=[common],
        help="list dataset versions with coverage and size",
        description="List dataset versions, newest first. Example: bfa versions --json",
    )
    add_format_options(p, "output")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser(
        "datasets",
        parents=[common],
        help="list the datasets a release carries",
        description="List the datasets. Example: bfa datasets",
    )
    add_format_options(p, "output")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser(
        "fetch",
        parents=[common],
        help="download a dataset into the cache and print its local path",
        description="Make a dataset available locally and print its path. "
        "Example: bfa fetch daily_availability --data-version 2026-11-20",
    )
    p.add_argument("dataset", help="daily_availability, availability_db, volume_rankings, symbols")
    add_data_version(p, default="latest", help="version (default latest)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="write SYNTHETIC sample releases to a folder, walk through them, print the line "
        "that points the library at them (no internet)",
        description="Write two SYNTHETIC sample releases to a persistent folder (the user data "
        "folder by default), walk the user journey on them, and print the one line "
        "(export BFA_SOURCE=...) that makes every example of the README and the quick start "
        "run on them, in any shell or notebook. Needs no internet. --serve also serves them "
        "through a local GitHub-like release server until Ctrl-C. Example: bfa demo",
    )
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="folder for the demo releases (default: the user data folder, e.g. "
        "~/.local/share/intake-bfa/demo)",
    )
    p.add_argument(
        "--symbols",
        # Below 40 the sample cannot hold every naming quirk it demonstrates.
        type=whole_number(40, 2000),
        default=200,
        help="symbols in the synthetic sample, 40-2000 (default 200)",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the releases on 127.0.0.1 like GitHub until Ctrl-C, and print the "
        "variables that point the library at that server",
    )
    p.set_defaults(func=cmd_demo)
