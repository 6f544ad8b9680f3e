"""Writing a query's answer: aligned tables for people, JSON/CSV/Parquet for programs.

Used by :mod:`intake_bfa.cli.query`; prints, so it belongs to the CLI side. Files are
written atomically (a temporary file renamed into place), so a reader never sees a
half-written answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

from intake_bfa.display.text import text_table

FORMATS = ("table", "json", "csv", "parquet")
_SUFFIXES = {".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: Rows shown on a terminal unless --max-rows says otherwise.
TTY_ROWS = 50
#: Longest cell shown on a terminal (URLs would wrap every line).
TTY_CELL = 48


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def render_table(table: Any, *, max_rows: int | None, cell_width: int | None, note: str) -> str:
    """An aligned text table (numbers right-aligned) with a row-count footer.

    Parameters
    ----------
    table
        A ``pyarrow.Table``.
    max_rows
        Show at most this many rows (None: all), and say how many were left out.
    cell_width
        Cut longer cells (None: never).
    note
        Appended to the footer (e.g. the version).
    """
    import pyarrow.types as pat

    total = table.num_rows
    shown = table if max_rows is None or total <= max_rows else table.slice(0, max_rows)
    names = table.column_names
    right = [
        pat.is_integer(f.type) or pat.is_floating(f.type) or pat.is_decimal(f.type)
        for f in table.schema
    ]
    rows = []
    for record in shown.to_pylist():
        cells = [_cell(record[name]) for name in names]
        if cell_width:
            cells = [c if len(c) <= cell_width else c[: cell_width - 1] + "…" for c in cells]
        rows.append(cells)
    out = [text_table(names, rows, right=right, rule=True)] if names else []
    if shown.num_rows < total:
        footer = (
            f"({total:,} rows, first {shown.num_rows:,} shown: --max-rows 0, --format csv "
            f"or --output FILE for all; {note})"
        )
    else:
        footer = f"({total:,} row{'s' if total != 1 else ''}; {note})"
    return "\n".join([*out, footer]) + "\n"


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def _to_json(table: Any) -> bytes:
    records = [{k: _json_value(v) for k, v in r.items()} for r in table.to_pylist()]
    # default=str covers Decimal, time, intervals a user's SQL may produce.
    return (json.dumps(records, indent=1, ensure_ascii=False, default=str) + "\n").encode()


def _to_csv(table: Any, sink: Any) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))


def choose_format(args: argparse.Namespace) -> str:
    if args.format:
        fmt = args.format
    elif args.output:
        fmt = _SUFFIXES.get(Path(args.output).suffix.lower(), "table")
    else:
        fmt = "table"
    if fmt == "parquet" and not args.output:
        args.parser.error("--format parquet needs --output FILE (binary output)")
    return fmt


def emit(table: Any, args: argparse.Namespace, version: str) -> None:
    """Write ``table`` in the chosen format to stdout or, atomically, to ``--output``."""
    fmt = choose_format(args)
    hidden = 0
    if args.columns:
        table = _select(table, args.columns, args.parser)
    elif fmt == "table" and getattr(args, "table_columns", None) and not args.all_columns:
        # A narrow default for the terminal; --all-columns / --columns / other formats: all.
        keep = [c for c in args.table_columns if c in table.column_names]
        hidden = table.num_columns - len(keep)
        table = table.select(keep)
    if args.output:
        from intake_bfa.cli.common import write_output

        path = Path(args.output)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            write_output(path, lambda fh: pq.write_table(table, fh, compression="zstd"))
        elif fmt == "csv":
            write_output(path, lambda fh: _to_csv(table, fh))
        elif fmt == "json":
            data = _to_json(table)
            write_output(path, lambda fh: fh.write(data))
        else:
            text = render_table(table, max_rows=None, cell_width=None, note=f"version {version}")
            write_output(path, lambda fh: fh.write(text.encode()))
        if not args.quiet:
            print(f"wrote {table.num_rows:,} rows ({fmt}) to {path}", file=sys.stderr)
        return
    if fmt == "json":
        sys.stdout.write(_to_json(table).decode())
    elif fmt == "csv":
        sys.stdout.flush()
        _to_csv(table, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        tty = sys.stdout.isatty()
        limit = args.max_rows if args.max_rows is not None else (TTY_ROWS if tty else 0)
        note = f"version {version}"
        if hidden:
            note += f"; {hidden} more columns: --all-columns"
        text = render_table(
            table, max_rows=limit or None, cell_width=TTY_CELL if tty else None, note=note
        )
        sys.stdout.write(text)


def _select(table: Any, columns: str, parser: argparse.ArgumentParser) -> Any:
    """The ``--columns`` of the answer; an unknown one is a usage error (exit 2)."""
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    missing = [c for c in wanted if c not in table.column_names]
    if missing or not wanted:
        parser.error(
            f"--columns: no column(s) {', '.join(map(repr, missing)) or '(none given)'} in "
            f"this answer; its columns are {', '.join(table.column_names)}"
        )
    return table.select(wanted)
