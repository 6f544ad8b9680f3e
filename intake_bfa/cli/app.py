"""The ``bfa`` command line: the parser and the entry point. Only the CLI prints or exits.

Every intake-bfa error becomes one line on stderr (``bfa: error: ...``) and exit
status 1; usage errors exit 2 (argparse); Ctrl-C exits 130 ("bfa: interrupted"), running
DuckDB queries included (see :mod:`intake_bfa.interrupt`). Each command group lives in its
own module of this package and registers itself through ``add_commands``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from intake_bfa import __version__
from intake_bfa.cli import (
    audit,
    cache,
    completion,
    data,
    mirror,
    plot,
    producer,
    query,
    serve,
    stats,
)
from intake_bfa.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from intake_bfa.errors import BfaError
from intake_bfa.interrupt import interrupting_queries

#: Command groups in the order ``bfa --help`` lists them.
COMMAND_GROUPS = (data, audit, producer, query, plot, stats, mirror, serve, cache, completion)


def build_parser() -> argparse.ArgumentParser:
    """The ``bfa`` argument parser (also used to generate the CLI docs)."""
    parser = argparse.ArgumentParser(
        prog="bfa",
        description="Binance USDT-M futures availability: pinned, verified, cached datasets.",
        epilog="Configuration: BFA_SOURCE, BFA_REPO, BFA_API_URL, BFA_CACHE_DIR, GITHUB_TOKEN, "
        "BFA_OFFLINE, BFA_TTL (see README). Example: bfa versions",
    )
    parser.add_argument("--version", action="version", version=f"intake-bfa {__version__}")
    source_help = (
        "read releases from this local folder instead of a release server (BFA_SOURCE): "
        "what `bfa build` or `bfa demo` writes, or releases copied from another machine"
    )
    parser.add_argument("--source", metavar="DIR", help=source_help)
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a command's default must not erase `bfa --source DIR COMMAND`'s value.
    common.add_argument("--source", metavar="DIR", default=argparse.SUPPRESS, help=source_help)
    common.add_argument("--repo", help="GitHub owner/name holding the releases (BFA_REPO)")
    common.add_argument("--api-url", help="GitHub API base URL (BFA_API_URL)")
    common.add_argument("--cache-dir", help="cache folder (BFA_CACHE_DIR)")
    common.add_argument(
        "--offline", action="store_true", help="use cached data only (BFA_OFFLINE=1)"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub, common)
    parser.set_defaults(root_parser=parser)  # for commands about the CLI itself (completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bfa`` console script; returns the exit status.

    Log lines go to the current ``sys.stderr`` through a handler that exists only while
    the command runs, so calling ``main([...])`` in a process (a test, a notebook) leaves
    its logging configuration as it was.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("bfa: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        # Ctrl-C also interrupts running DuckDB queries (see intake_bfa.interrupt).
        with interrupting_queries() as sigint:
            try:
                return args.func(args)
            except Exception as err:
                if sigint.seen:  # e.g. DuckDB's InterruptException, turned into a QueryError
                    raise KeyboardInterrupt from None
                if isinstance(err, BfaError):
                    message = str(err).replace("\n", " ")
                    print(f"bfa: error: {message}", file=sys.stderr)
                    return EXIT_ERROR
                if isinstance(err, BrokenPipeError):  # e.g. `bfa versions | head -1`
                    return EXIT_OK
                raise
    except KeyboardInterrupt:
        print("bfa: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
