"""Display of version lists and cache status (HTML for notebooks, text for terminals).

See :mod:`intake_bfa.display` for the rules (local cache only, everything escaped).
"""

from __future__ import annotations

from typing import Any

from .display_base import (
    NOT_RESOLVED,
    _flag,
    _Html,
    _rows,
    _span,
    _wrap,
    esc,
    html_table,
    human_size,
    text_table,
)

# --- versions and cache status ---------------------------------------------------------------


def _version_code(version: str, latest: bool) -> _Html:
    return _Html(f"<code>{esc(version)}</code>" + (" <b>latest</b>" if latest else ""))


def versions_html(versions: list[Any]) -> str:
    """``_repr_html_`` of :func:`~intake_bfa.releases.list_versions`'s result."""
    rows = [
        [
            _version_code(v.version, v.latest),
            v.tag,
            v.layout,
            v.published_at or "",
            _span(v.coverage_start, v.coverage_end),
            _rows(v.rows),
            human_size(v.size),
            _flag(v.cached),
        ]
        for v in versions
    ]
    headers = ["version", "tag", "layout", "published", "coverage", "rows", "size", "cache"]
    if not rows:
        return _wrap('<span class="no">no versions</span>')
    return _wrap(f"<b>{len(rows)} versions</b>" + html_table(headers, rows))


def versions_text(versions: list[Any]) -> str:
    """Terminal repr of a version list."""
    rows = [
        [
            v.version + (" *" if v.latest else ""),
            v.layout,
            _span(v.coverage_start, v.coverage_end),
            _rows(v.rows),
            human_size(v.size),
            "cached" if v.cached else "-",
        ]
        for v in versions
    ]
    headers = ["version", "layout", "coverage", "rows", "size", "cache"]
    return f"{len(rows)} versions (* = latest)\n" + text_table(headers, rows)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "at an unknown time"
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def cache_status_html(status: Any) -> str:
    """``_repr_html_`` of :class:`~intake_bfa.cache_admin.CacheStatus`."""
    parts = [
        f"<b>Cache</b> <code>{esc(status.cache_dir)}</code>: "
        + (esc(human_size(status.total_size)) if status.exists else "does not exist yet")
    ]
    for repo in status.repos:
        rate = "" if repo.hit_rate is None else f", hit rate {repo.hit_rate:.0%}"
        mark = " (configured)" if repo.configured else ""
        latest = (
            f"<code>{esc(repo.latest)}</code> (resolved {esc(_age(repo.latest_age))})"
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
                _flag(v.has_manifest, "yes", "missing"),
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
    return _wrap("".join(parts))
