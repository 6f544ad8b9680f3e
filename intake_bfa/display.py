"""Rich notebook display (``_repr_html_``) and compact terminal reprs.

Everything here is computed from the local cache only and **never touches the
network**: a display must not hang on a slow or dead server. "Latest" is the
version the cache last resolved (``_refs/latest.json``), else the newest cached
version, else shown as *not resolved yet*; a read call (``cat.<name>.read()``)
or ``bfa cache refresh`` resolves it for real.

Output is plain HTML with a little inline CSS, no JavaScript and no external
assets. Every value is passed through :func:`html.escape`: dataset, version and
repository names come from remote releases and catalog files and are never trusted.
Only the standard library and our light modules are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .display_base import (
    _CSS,
    _MAX_VERSIONS,
    NOT_RESOLVED,
    _error,
    _flag,
    _Html,
    _rows,
    _safe,
    _span,
    _wrap,
    esc,
    html_table,
    human_size,
    text_table,
)
from .display_tables import cache_status_html, versions_html, versions_text  # noqa: F401
from .schema import DATASETS

# --- state from the cache --------------------------------------------------------------------


@dataclass
class DatasetState:
    """What the local cache knows about one dataset (no network involved)."""

    name: str
    description: str = ""
    repo: str = ""
    version: str | None = None  # the version shown (pinned, or the cached "latest")
    source: str = ""  # "pinned", "latest ref", "newest cached" or ""
    coverage: tuple[str, str] | None = None
    rows: int | None = None
    size: int | None = None
    cached: bool = False
    cached_versions: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def coverage_text(self) -> str:
        """``"start .. end"`` or ``""``."""
        return _span(*self.coverage) if self.coverage else ""


def _manifest_entry(layout, version: str, name: str):
    from .manifest import load_manifest

    m = load_manifest(layout.manifest_path(version))
    return m, m.datasets.get(name)


def _file_cached(layout, version: str, name: str) -> bool:
    try:
        _, entry = _manifest_entry(layout, version, name)
    except Exception:
        return False
    return entry is not None and layout.file_path(version, entry.local_name).is_file()


def dataset_state(name: str, data: Any = None, description: str | None = None) -> DatasetState:
    """Describe dataset ``name`` from the cache only.

    Parameters
    ----------
    name
        Dataset name.
    data
        Its :class:`~intake_bfa.readers.BfaData` (repository and pinned version);
        None uses the environment's settings and "latest".
    description
        Overrides the registry's description (e.g. a catalog's metadata).
    """
    from .cache import CacheLayout, read_ref
    from .config import get_settings

    spec = DATASETS.get(name)
    state = DatasetState(name, description or (spec.description if spec else ""))
    try:
        settings = data.settings() if data is not None else get_settings()
        state.repo = settings.repo
        layout = CacheLayout(settings)
        versions = layout.cached_versions()
        state.cached_versions = [
            v for v in versions[:_MAX_VERSIONS] if _file_cached(layout, v, name)
        ]
        pinned = getattr(data, "version", "latest") or "latest"
        ref = read_ref(layout)
        if pinned != "latest":
            state.version, state.source = pinned, "pinned"
        elif ref and ref["version"] in versions:
            state.version, state.source = ref["version"], "latest ref"
        elif versions:
            state.version, state.source = versions[0], "newest cached"
        if state.version and state.version in versions:
            m, entry = _manifest_entry(layout, state.version, name)
            if entry is not None:
                state.coverage = entry.coverage or m.coverage
                state.rows, state.size = entry.rows, entry.size
                state.cached = layout.file_path(state.version, entry.local_name).is_file()
    except Exception as err:
        state.error = f"{type(err).__name__}: {err}"
    return state


def _catalog_states(cat: Any) -> list[DatasetState]:
    states = []
    for name in sorted(getattr(cat, "aliases", {}) or {}):
        try:
            reader = cat[name]
            data = getattr(reader, "data", None)
            meta = getattr(reader, "metadata", {}) or {}
            if not hasattr(data, "dataset"):
                state = DatasetState(name, str(meta.get("description", "")))
                state.error = "not an intake-bfa dataset"
            else:
                state = dataset_state(data.dataset, data, meta.get("description"))
                state.name = name
        except Exception as err:
            state = DatasetState(name, error=f"{type(err).__name__}: {err}")
        states.append(state)
    return states


# --- catalog ---------------------------------------------------------------------------------

_CAT_HEADERS = ["dataset", "description", "version", "coverage", "rows", "size", "cache"]


def _version_cell(s: DatasetState) -> _Html:
    if not s.version:
        return _Html(f'<span class="no">{esc(NOT_RESOLVED)}</span>')
    note = f' <span class="no">({esc(s.source)})</span>' if s.source != "latest ref" else ""
    return _Html(f"<code>{esc(s.version)}</code>{note}")


def catalog_html(cat: Any) -> str:
    """``_repr_html_`` of a catalog: one row per dataset, from the cache only."""
    meta = getattr(cat, "metadata", {}) or {}
    states = _catalog_states(cat)
    rows = [
        [
            _Html(f"<b>{esc(s.name)}</b>"),
            _error(s.error) if s.error else s.description,
            _version_cell(s),
            s.coverage_text,
            _rows(s.rows),
            human_size(s.size),
            _flag(s.cached),
        ]
        for s in states
    ]
    repos = sorted({s.repo for s in states if s.repo})
    title = esc(meta.get("name") or "intake-bfa catalog")
    desc = esc(meta.get("description", ""))
    return _wrap(
        f'<b>{title}</b> <span class="no">({len(states)} datasets; '
        f"repo {esc(', '.join(repos) or '?')})</span><br>{desc}"
        + html_table(_CAT_HEADERS, rows)
        + '<span class="no">From the local cache only (no network); a read resolves '
        "&quot;latest&quot;.</span>"
    )


def catalog_text(cat: Any) -> str:
    """Terminal repr of a catalog: a compact table of its datasets."""
    meta = getattr(cat, "metadata", {}) or {}
    states = _catalog_states(cat)
    rows = [
        [
            s.name,
            s.version or ("error" if s.error else NOT_RESOLVED),
            s.coverage_text,
            _rows(s.rows),
            human_size(s.size),
            "cached" if s.cached else "-",
        ]
        for s in states
    ]
    head = f"{meta.get('name') or 'intake-bfa catalog'}: {len(states)} datasets (from the cache)"
    return (
        head + "\n" + text_table(["dataset", "version", "coverage", "rows", "size", "cache"], rows)
    )


# --- one dataset (reader) --------------------------------------------------------------------


def _columns(name: str, meta: dict[str, Any]) -> list[list[Any]]:
    spec = DATASETS.get(name)
    if spec is not None:
        return [[_Html(f"<code>{esc(c)}</code>"), t, m] for c, (t, m) in spec.columns.items()]
    cols = meta.get("columns") or {}
    return [[_Html(f"<code>{esc(c)}</code>"), "", m] for c, m in dict(cols).items()]


def _example(name: str, version: str | None) -> str:
    access = f"cat.{name}" if name.isidentifier() else f"cat[{name!r}]"
    arg = f"version={version!r}" if version else ""
    return f"{access}.read({arg})"


def reader_html(reader: Any) -> str:
    """``_repr_html_`` of one of our readers: state, schema, cached versions, an example."""
    data = reader.data
    meta = getattr(reader, "metadata", {}) or {}
    s = dataset_state(data.dataset, data, meta.get("description"))
    facts = [
        ["reader", f"{type(reader).__name__} → {getattr(reader, 'output_instance', '')}"],
        ["repository", s.repo],
        ["version", _version_cell(s)],
        ["coverage", s.coverage_text],
        ["rows", _rows(s.rows)],
        ["size", human_size(s.size)],
        ["cache", _flag(s.cached)],
        ["cached versions", ", ".join(s.cached_versions) or "none"],
    ]
    if s.error:
        facts.append(["error", _error(s.error)])
    example = _example(data.dataset, s.cached_versions[0] if s.cached_versions else None)
    return _wrap(
        f"<b>{esc(data.dataset)}</b><br>{esc(s.description)}"
        + html_table(["", ""], facts)
        + "<b>Columns</b>"
        + html_table(["column", "type", "meaning"], _columns(data.dataset, meta))
        + f"<pre>{esc(example)}</pre>"
    )


def reader_text(reader: Any) -> str:
    """Terminal repr of one of our readers."""
    data = reader.data
    s = dataset_state(data.dataset, data)
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


# --- browse ----------------------------------------------------------------------------------


class Browser:
    """Everything at a glance: catalog, each dataset, cached versions, cache status.

    Parameters
    ----------
    catalog
        A catalog; None opens the packaged one.
    """

    def __init__(self, catalog: Any = None) -> None:
        if catalog is None:
            from .catalog import open_catalog

            catalog = open_catalog()
        self.catalog = catalog

    def _settings(self):
        from .config import get_settings

        return get_settings()

    def _details(self) -> str:
        out = []
        for name in sorted(self.catalog.aliases):
            body = _safe(lambda n=name: reader_html(self.catalog[n]))
            out.append(f"<details><summary>{esc(name)}</summary>{body}</details>")
        return "".join(out)

    def _versions(self) -> str:
        from .releases import list_versions

        # offline=True: the cached versions only, so no request is ever made.
        return versions_html(list_versions(settings=self._settings().with_(offline=True)))

    def _cache(self) -> str:
        from .cache_admin import cache_status

        return cache_status_html(cache_status(self._settings()))

    def _repr_html_(self) -> str:
        body = (
            _safe(catalog_html, self.catalog)
            + _safe(self._details)
            + "<details><summary>cached versions</summary>"
            + _safe(self._versions)
            + "</details><details><summary>cache status</summary>"
            + _safe(self._cache)
            + "</details>"
        )
        # One stylesheet for the whole view, not one per section.
        return _wrap(body.replace(_CSS, ""))

    def __repr__(self) -> str:
        try:
            return catalog_text(self.catalog)
        except Exception as err:
            return f"<Browser: {type(err).__name__}: {err}>"


def browse(catalog: Any = None) -> Browser:
    """A view of ``catalog`` (default: the packaged one) for notebooks and terminals.

    Display it (last expression of a cell) to see the datasets, their schemas and
    cache state, the cached versions and the cache status. Built from the local
    cache only: it never makes a network request.
    """
    return Browser(catalog)
