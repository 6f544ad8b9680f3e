"""What every ``bfa`` command shares: exit codes, the option -> Settings rule, argparse types."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def settings_from_args(args: argparse.Namespace):
    """Settings from the shared ``--repo/--api-url/--cache-dir/--offline/--source`` options."""
    from intake_bfa.config import get_settings

    return get_settings(
        repo=args.repo,
        api_url=args.api_url,
        cache_dir=args.cache_dir,
        offline=True if args.offline else None,
        source=getattr(args, "source", None),
    )


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


def iso_day(text: str) -> str:
    """An argparse ``type``: a UTC day as ``YYYY-MM-DD`` (kept as given once checked).

    A malformed date is a usage error: argparse names the argument and exits 2.
    """
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; use YYYY-MM-DD (e.g. 2021-03-04)"
        ) from None
    return text


def add_format_options(parser: argparse.ArgumentParser, what: str = "output") -> None:
    """``--format text|json``, with ``--json`` as its alias: the one convention of every
    command that prints data (the query commands add csv and parquet to the same option)."""
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help=f"{what} format (default text)")  # fmt: skip
    parser.add_argument("--json", dest="format", action="store_const", const="json",
                        help="same as --format json")  # fmt: skip


def write_output(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write the file the user asked for (``--output FILE``) atomically.

    ``write(fileobj)`` fills a temporary file beside ``path`` that then replaces it (a
    missing folder is created); on failure nothing is left behind.

    Raises
    ------
    OutputError
        ``path`` cannot be written (read-only or uncreatable folder, full disk...): one
        message naming the file, the cause and the fix.
    """
    from intake_bfa.cache.layout import atomic_writer, free_space, in_the_way, write_problem
    from intake_bfa.display.text import human_size
    from intake_bfa.errors import BfaError, OutputError

    try:
        return atomic_writer(path, write)
    except BfaError:
        raise
    except OSError as err:
        kind, code, cause = write_problem(err)
        fix = "choose another --output"
        if kind == "read_only":
            why = f"folder {path.parent} is not writable ({cause}); {fix} or make it writable"
        elif kind == "no_space":
            free = human_size(free_space(path), "unknown")
            why = f"no space left in {path.parent} ({cause}, free: {free}); free space or {fix}"
        elif kind == "file_too_big":
            why = f"the file exceeds the file-size limit ({cause}); raise it or {fix}"
        elif kind == "not_a_folder":
            why = f"{in_the_way(path.parent)} is not a folder ({cause}); {fix}"
        else:
            why = f"{cause}; {fix}"
        raise OutputError(
            f"cannot write {path}: {why}",
            path=str(path),
            kind=kind,
            errno=code,
            strerror=os.strerror(code) if code is not None else str(err),
            filename=err.filename if err.filename is not None else str(path),
        ) from err


def wants_json(args: argparse.Namespace) -> bool:
    """True when the command was asked for JSON (``--format json`` or ``--json``)."""
    return getattr(args, "format", None) == "json"


class _LegacyVersionOption(argparse.Action):
    """``--version`` after a command: alone, the program's version (as before the command);
    with a value, the old spelling of ``--data-version`` (still accepted, with a warning)."""

    def __init__(self, option_strings, dest, append: bool = False, **kwargs) -> None:
        self.append = append
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values is None:
            from intake_bfa import __version__

            print(f"intake-bfa {__version__}")
            parser.exit()
        print(f"bfa: warning: {option_string} {values} after a command is deprecated; "
              f"write --data-version {values}", file=sys.stderr)  # fmt: skip
        if self.append:
            setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        else:
            setattr(namespace, self.dest, values)


def add_data_version(container, *, help: str, dest: str = "version", append: bool = False,
                     **kwargs) -> None:  # fmt: skip
    """``--data-version VERSION``: which dataset version a command reads or writes.

    Never ``--version``, which is the program's: ``bfa sql --version`` prints the program's
    version like ``bfa --version``; ``--version VALUE`` after a command is still read as
    ``--data-version`` (deprecated, with a warning).
    """
    action = "append" if append else "store"
    container.add_argument("--data-version", dest=dest, metavar="VERSION", action=action,
                           help=help, **kwargs)  # fmt: skip
    container.add_argument("--version", dest=dest, action=_LegacyVersionOption, append=append,
                           help=argparse.SUPPRESS)  # fmt: skip
