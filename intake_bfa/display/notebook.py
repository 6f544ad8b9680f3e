"""Notebook views (``_repr_html_``) and compact terminal reprs of catalogs and datasets.

Pure formatting of the :class:`~intake_bfa.cache.admin.DatasetState` values that the caller
gathers from the local cache only (:func:`intake_bfa.cache.admin.dataset_state`), so a
display **never touches the network**: it must not hang on a slow or dead server. "Latest" is the
version the cache last resolved (``_refs/latest.json``), else the newest cached
version, else shown as *not resolved yet*; a read call (``cat.<name>.read()``)
or ``bfa cache refresh`` resolves it for real.

Output is plain HTML with a little inline CSS, no JavaScript and no external
assets. Every value is passed through :func:`html.escape`: dataset, version and
repository names come from remote releases and catalog files and are never trusted.
Only the standard library and the other display modules are imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intake_bfa.display.html import (
    NOT_RESOLVED,
    Html,
    error_note,
    esc,
    flag,
    html_table,
    row_count,
    wrap,
)
from intake_bfa.display.text import human_size, text_table
from intake_bfa.schema import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    from intake_bfa.cache.admin import DatasetState

# --- catalog ---------------------------------------------------------------------------------

_CAT_HEADERS = ["dataset", "description", "version", "coverage", "rows", "size", "cache"]


def _version_cell(s: DatasetState) -> Html:
    if not s.version:
        return Html(f'<span class="no">{esc(NOT_RESOLVED)}</span>')
    note = f' <span class="no">({esc(s.source)})</span>' if s.source != "latest ref" else ""
    return Html(f"<code>{esc(s.version)}</code>{note}")


def catalog_html(cat: Any, states: list[DatasetState]) -> str:
    """``_repr_html_`` of a catalog: one row per dataset (``states``, from the cache)."""
    meta = getattr(cat, "metadata", {}) or {}
    rows = [
        [
            Html(f"<b>{esc(s.name)}</b>"),
            error_note(s.error) if s.error else s.description,
            _version_cell(s),
            s.coverage_text,
            row_count(s.rows),
            human_size(s.size),
            flag(s.cached),
        ]
        for s in states
    ]
    repos = sorted({s.repo for s in states if s.repo})
    title = esc(meta.get("name") or "intake-bfa catalog")
    desc = esc(meta.get("description", ""))
    return wrap(
        f'<b>{title}</b> <span class="no">({len(states)} datasets; '
        f"repo {esc(', '.join(repos) or '?')})</span><br>{desc}"
        + html_table(_CAT_HEADERS, rows)
        + '<span class="no">From the local cache only (no network); a read resolves '
        "&quot;latest&quot;.</span>"
    )


def catalog_text(cat: Any, states: list[DatasetState]) -> str:
    """Terminal repr of a catalog: a compact table of its datasets (``states``)."""
    meta = getattr(cat, "metadata", {}) or {}
    rows = [
        [
            s.name,
            s.version or ("error" if s.error else NOT_RESOLVED),
            s.coverage_text,
            row_count(s.rows),
            human_size(s.size),
            "cached" if s.cached else "-",
        ]
        for s in states
    ]
    head = f"{meta.get('name') or 'intake-bfa catalog'}: {len(states)} datasets (from the cache)"
    return (
        head
        + "\n"
        + text_table(["dataset", "version", "coverage", "rows", "size", "cache"], rows, indent="  ")
    )


# --- one dataset (reader) --------------------------------------------------------------------


def _columns(name: str, meta: dict[str, Any]) -> list[list[Any]]:
    spec = DATASETS.get(name)
    if spec is not None:
        return [[Html(f"<code>{esc(c)}</code>"), t, m] for c, (t, m) in spec.columns.items()]
    cols = meta.get("columns") or {}
    return [[Html(f"<code>{esc(c)}</code>"), "", m] for c, m in dict(cols).items()]


def _example(name: str, version: str | None) -> str:
    access = f"cat.{name}" if name.isidentifier() else f"cat[{name!r}]"
    arg = f"version={version!r}" if version else ""
    return f"{access}.read({arg})"


def reader_html(reader: Any, s: DatasetState) -> str:
    """``_repr_html_`` of one of our readers: state ``s``, schema, cached versions, an example."""
    data = reader.data
    meta = getattr(reader, "metadata", {}) or {}
    facts = [
        ["reader", f"{type(reader).__name__} → {getattr(reader, 'output_instance', '')}"],
        ["repository", s.repo],
        ["version", _version_cell(s)],
        ["coverage", s.coverage_text],
        ["rows", row_count(s.rows)],
        ["size", human_size(s.size)],
        ["cache", flag(s.cached)],
        ["cached versions", ", ".join(s.cached_versions) or "none"],
    ]
    if s.error:
        facts.append(["error", error_note(s.error)])
    example = _example(data.dataset, s.cached_versions[0] if s.cached_versions else None)
    return wrap(
        f"<b>{esc(data.dataset)}</b><br>{esc(s.description)}"
        + html_table(["", ""], facts)
        + "<b>Columns</b>"
        + html_table(["column", "type", "meaning"], _columns(data.dataset, meta))
        + f"<pre>{esc(example)}</pre>"
    )


def reader_text(reader: Any, s: DatasetState) -> str:
    """Terminal repr of one of our readers, in state ``s``."""
    data = reader.data
    state = f"{s.version} ({'cached' if s.cached else 'not cached'})" if s.version else NOT_RESOLVED
    cols = ", ".join(DATASETS[data.dataset].columns) if data.dataset in DATASETS else ""
    lines = [
        f"{type(reader).__name__} reader producing {getattr(reader, 'output_instance', '')}",
        f"  dataset: {data.dataset} ({data.version})",
        f"  version: {state}",
    ]
    if cols:
        lines.append(f"  columns: {cols}")
    return "\n".join(lines)
