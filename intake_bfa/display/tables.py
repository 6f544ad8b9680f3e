"""Display of version lists and cache status (HTML for notebooks, text for terminals).

See :mod:`intake_bfa.display.notebook` for the rules (local cache only, everything escaped).
"""

from __future__ import annotations

from typing import Any

from intake_bfa.display.html import (
    NOT_RESOLVED,
    Html,
    esc,
    flag,
    html_table,
    row_count,
    span,
    wrap,
)
from intake_bfa.display.text import age, human_size, text_table

# --- versions and cache status ---------------------------------------------------------------


def _version_code(version: str, latest: bool) -> Html:
    return Html(f"<code>{esc(version)}</code>" + (" <b>latest</b>" if latest else ""))


def versions_html(versions: list[Any]) -> str:
    """``_repr_html_`` of :func:`~intake_bfa.resolve.list_versions`'s result."""
    rows = [
        [
            _version_code(v.version, v.latest),
            v.tag,
            v.layout,
            v.published_at or "",
            span(v.coverage_start, v.coverage_end),
            row_count(v.rows),
            human_size(v.size),
            flag(v.cached),
        ]
        for v in versions
    ]
    headers = ["version", "tag", "layout", "published", "coverage", "rows", "size", "cache"]
    if not rows:
        return wrap('<span class="no">no versions</span>')
    return wrap(f"<b>{len(rows)} versions</b>" + html_table(headers, rows))


def versions_text(versions: list[Any]) -> str:
    """Terminal repr of a version list."""
    rows = [
        [
            v.version + (" *" if v.latest else ""),
            v.layout,
            span(v.coverage_start, v.coverage_end),
            row_count(v.rows),
            human_size(v.size),
            "cached" if v.cached else "-",
        ]
        for v in versions
    ]
    headers = ["version", "layout", "coverage", "rows", "size", "cache"]
    return f"{len(rows)} versions (* = latest)\n" + text_table(headers, rows, indent="  ")


def _ago(seconds: float | None) -> str:
    return "at an unknown time" if seconds is None else f"{age(seconds)} ago"


def cache_status_html(status: Any) -> str:
    """``_repr_html_`` of :class:`~intake_bfa.cache.admin.CacheStatus`."""
    parts = [
        f"<b>Cache</b> <code>{esc(status.cache_dir)}</code>: "
        + (esc(human_size(status.total_size)) if status.exists else "does not exist yet")
    ]
    for repo in status.repos:
        rate = "" if repo.hit_rate is None else f", hit rate {repo.hit_rate:.0%}"
        mark = " (configured)" if repo.configured else ""
        latest = (
            f"<code>{esc(repo.latest)}</code> (resolved {esc(_ago(repo.latest_age))})"
            if repo.latest
            else esc(NOT_RESOLVED)
        )
        parts.append(
            f"<br><b>{esc(repo.repo)}</b>{esc(mark)}: {esc(human_size(repo.size))}, "
            f"latest {latest}{esc(rate)}"
        )
        rows = [
            [
                _version_code(v.version, v.latest),
                human_size(v.size),
                flag(v.has_manifest, "yes", "missing"),
                ", ".join(f.name for f in v.files),
            ]
            for v in repo.versions
        ]
        if rows:
            parts.append(html_table(["version", "size", "manifest", "files"], rows))
    if status.leftovers:
        parts.append(
            f"<br>{len(status.leftovers)} temporary leftovers "
            f"({esc(human_size(status.leftover_size))}); see <code>bfa cache clear</code>"
        )
    return wrap("".join(parts))
