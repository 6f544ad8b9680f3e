"""Plain-text formatting shared by every display: sizes, ages and fixed-width tables.

Pure functions over plain values: nothing here reads the cache, the network or a file, so
the CLI, the notebook display and log messages all format the same value the same way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any


def human_size(n: int | None, missing: str = "") -> str:
    """A byte count with binary (IEC) units: ``6051210`` -> ``"5.8 MiB"``.

    Parameters
    ----------
    n
        Bytes, or None when unknown.
    missing
        What to show for None (``""`` in HTML, ``"-"`` in terminal tables).
    """
    if n is None:
        return missing
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def age(seconds: float | None) -> str:
    """A duration for people: ``42 seconds``, ``5 minutes``, ``3.1 hours``, ``2.0 days``."""
    if seconds is None:
        return "an unknown time"
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters count two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def text_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[bool] | None = None,
    rule: bool = False,
    indent: str = "",
) -> str:
    """A fixed-width text table for terminals.

    Parameters
    ----------
    headers
        Column titles.
    rows
        Cells; None shows as an empty cell, anything else through ``str``.
    right
        Per column, whether to right-align it (numbers); default all left.
    rule
        Underline the header with dashes.
    indent
        Put before every line.
    """
    right = list(right) if right is not None else [False] * len(headers)
    cells = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [
        max([display_width(str(h))] + [display_width(r[i]) for r in cells])
        for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [_pad(v, w, r) for v, w, r in zip(values, widths, right, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line([str(h) for h in headers])]
    if rule:
        out.append(line(["-" * w for w in widths]))
    out += [line(r) for r in cells]
    return "\n".join(out)


def dict_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """:func:`text_table` over dict rows, one column per key in ``columns``."""
    return text_table(columns, [[r.get(c) for c in columns] for r in rows])
