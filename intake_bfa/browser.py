"""``intake_bfa.browse()``: everything at a glance, the one place that gathers catalog,
cached versions and cache status for a notebook or terminal view.

Built from the local cache only: it never makes a network request.
"""

from __future__ import annotations

from typing import Any

from intake_bfa.cache.admin import cache_status, dataset_state
from intake_bfa.catalog import dataset_states, open_catalog
from intake_bfa.config import get_settings
from intake_bfa.display.html import CSS, esc, safe_render, wrap
from intake_bfa.display.notebook import catalog_html, catalog_text, reader_html
from intake_bfa.display.tables import cache_status_html, versions_html
from intake_bfa.resolve import list_versions


class Browser:
    """Everything at a glance: catalog, each dataset, cached versions, cache status.

    Parameters
    ----------
    catalog
        A catalog; None opens the packaged one.
    """

    def __init__(self, catalog: Any = None) -> None:
        if catalog is None:
            catalog = open_catalog()
        self.catalog = catalog

    def _settings(self):
        return get_settings()

    def _details(self) -> str:
        out = []
        for name in sorted(self.catalog.aliases):
            body = safe_render(lambda n=name: self._reader_html(self.catalog[n]))
            out.append(f"<details><summary>{esc(name)}</summary>{body}</details>")
        return "".join(out)

    @staticmethod
    def _reader_html(reader: Any) -> str:
        meta = getattr(reader, "metadata", {}) or {}
        return reader_html(
            reader, dataset_state(reader.data.dataset, reader.data, meta.get("description"))
        )

    def _versions(self) -> str:
        # offline=True: the cached versions only, so no request is ever made.
        return versions_html(list_versions(settings=self._settings().with_(offline=True)))

    def _cache(self) -> str:
        return cache_status_html(cache_status(self._settings()))

    def _repr_html_(self) -> str:
        body = (
            safe_render(lambda: catalog_html(self.catalog, dataset_states(self.catalog)))
            + safe_render(self._details)
            + "<details><summary>cached versions</summary>"
            + safe_render(self._versions)
            + "</details><details><summary>cache status</summary>"
            + safe_render(self._cache)
            + "</details>"
        )
        # One stylesheet for the whole view, not one per section.
        return wrap(body.replace(CSS, ""))

    def __repr__(self) -> str:
        try:
            return catalog_text(self.catalog, dataset_states(self.catalog))
        except Exception as err:
            return f"<Browser: {type(err).__name__}: {err}>"


def browse(catalog: Any = None) -> Browser:
    """A view of ``catalog`` (default: the packaged one) for notebooks and terminals.

    Display it (last expression of a cell) to see the datasets, their schemas and
    cache state, the cached versions and the cache status. Built from the local
    cache only: it never makes a network request.
    """
    return Browser(catalog)
