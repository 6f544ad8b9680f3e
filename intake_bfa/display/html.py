"""HTML building blocks of the notebook display: escaping, tables, flags, the stylesheet.

See :mod:`intake_bfa.display.notebook` for the rules (local cache only, everything escaped).
"""

from __future__ import annotations

from html import escape
from typing import Any

NOT_RESOLVED = "not resolved yet"
MAX_VERSIONS = 30  # cached versions inspected per dataset (each is one small JSON read)
CSS = (
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


class Html(str):
    """A fragment that is already HTML (built here from escaped parts)."""


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (quotes too); an :class:`Html` fragment as is."""
    if isinstance(value, Html):
        return value
    return escape("" if value is None else str(value), quote=True)


def row_count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def flag(ok: bool, yes: str = "cached", no: str = "not cached") -> Html:
    return Html(f'<span class="{"ok" if ok else "no"}">{esc(yes if ok else no)}</span>')


def html_table(headers: list[str], rows: list[list[Any]]) -> Html:
    """An HTML table; every cell is escaped unless it is an :class:`Html` fragment."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def wrap(body: str) -> str:
    return f'{CSS}<div class="bfa">{body}</div>'


def error_note(err: BaseException | str) -> Html:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return Html(f'<span class="err">{esc(text)}</span>')


def safe_render(render, *args: Any) -> str:
    """Render a section; a failure becomes an error note (a display never raises)."""
    try:
        return render(*args)
    except Exception as err:
        return error_note(err)


def span(start: str | None, end: str | None) -> str:
    return f"{start} .. {end}" if start else ""
