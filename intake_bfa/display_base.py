"""Shared pieces of the notebook/terminal display: escaping, sizes, tables, the stylesheet.

See :mod:`intake_bfa.display` for the rules (local cache only, everything escaped).
"""

from __future__ import annotations

from html import escape
from typing import Any

NOT_RESOLVED = "not resolved yet"
_MAX_VERSIONS = 30  # cached versions inspected per dataset (each is one small JSON read)
_CSS = (
    "<style>"
    ".bfa{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px}"
    ".bfa table{border-collapse:collapse;margin:4px 0 8px 0}"
    ".bfa th,.bfa td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left;"
    "vertical-align:top}"
    ".bfa .ok{color:#1a7f37}.bfa .no{color:#888}.bfa .err{color:#b42318}"
    ".bfa code,.bfa pre{font-family:var(--jp-code-font-family,monospace)}"
    ".bfa pre{background:rgba(127,127,127,.1);padding:4px 8px}"
    "</style>"
)


class _Html(str):
    """A fragment that is already HTML (built here from escaped parts)."""


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (quotes too); an :class:`_Html` fragment as is."""
    if isinstance(value, _Html):
        return value
    return escape("" if value is None else str(value), quote=True)


def human_size(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``""``."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _rows(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def _flag(ok: bool, yes: str = "cached", no: str = "not cached") -> _Html:
    return _Html(f'<span class="{"ok" if ok else "no"}">{esc(yes if ok else no)}</span>')


def html_table(headers: list[str], rows: list[list[Any]]) -> _Html:
    """An HTML table; every cell is escaped unless it is an :class:`_Html` fragment."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return _Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def text_table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> str:
    """A fixed-width text table for terminals."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(indent + line for line in lines)


def _wrap(body: str) -> str:
    return f'{_CSS}<div class="bfa">{body}</div>'


def _error(err: BaseException | str) -> _Html:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return _Html(f'<span class="err">{esc(text)}</span>')


def _safe(render, *args: Any) -> str:
    """Render a section; a failure becomes an error note (a display never raises)."""
    try:
        return render(*args)
    except Exception as err:
        return _error(err)


def _span(start: str | None, end: str | None) -> str:
    return f"{start} .. {end}" if start else ""
