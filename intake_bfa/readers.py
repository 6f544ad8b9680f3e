"""Intake 2 datatypes and readers for intake-bfa (registered via the ``intake.imports`` entry point).

Intake imports this module on every ``import intake``, so it stays light: only
intake itself and our small modules; pandas, pyarrow and duckdb are imported by
the read calls. Our readers implement our own datatypes only, so they never
become the default reader for other Parquet files in the user's session.
"""

from __future__ import annotations

from typing import Any

from intake.readers.datatypes import BaseData
from intake.readers.readers import BaseReader

from intake_bfa.config import Settings, get_settings


def _ds():
    # Imported on first read, not when intake imports this plugin.
    from intake_bfa import datasets

    return datasets


class BfaData(BaseData):
    """A dataset of an intake-bfa release (base of :class:`BfaTable` and :class:`BfaDatabase`).

    Parameters
    ----------
    dataset
        Dataset name (``daily_availability``, ``availability_db``...).
    version
        ``"latest"`` or a pinned version; a read call may override it.
    repo, api_url
        Where the releases live; None means ``BFA_REPO`` / ``BFA_API_URL`` or the defaults.
    source
        A local release folder read instead of a release server; None means ``BFA_SOURCE``
        (or none).
    mirrors
        Mirror URL templates tried after the release asset (see ``BFA_MIRRORS``); None
        means the environment's.
    metadata
        Free-form metadata (description, columns...).
    """

    def __init__(
        self,
        dataset: str,
        version: str = "latest",
        repo: str | None = None,
        api_url: str | None = None,
        mirrors: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.version = version
        self.repo = repo
        self.api_url = api_url
        self.mirrors = mirrors
        self.source = source
        super().__init__(metadata)

    def settings(self) -> Settings:
        """Configuration for this dataset, read now (catalog value > environment > default)."""
        return get_settings(
            repo=self.repo, api_url=self.api_url, mirrors=self.mirrors, source=self.source
        )


class BfaTabular(BfaData):
    """What every bfa table reader reads; :class:`BfaTable` is the concrete datatype.

    intake lists the readers implementing a datatype itself before those implementing its
    bases, but among readers of one class in no fixed order (a set of subclasses). Only
    the pandas reader implements :class:`BfaTable`, the others this base, so
    ``data.to_reader()`` is pandas in every process; ``to_reader("pyarrow")`` and the
    others still find theirs.
    """

    structure = {"table"}


class BfaTable(BfaTabular):
    """A table dataset published as Parquet (daily_availability, volume_rankings, symbols)."""

    structure = {"table"}
    # intake.datatypes.recommend("bfa://symbols@2026-11-20") names this type.
    filepattern = r"^bfa://([^/]+/[^/]+/)?(daily_availability|volume_rankings|symbols)(@|$)"


class BfaDatabase(BfaData):
    """The availability DuckDB database, opened read-only."""

    structure = {"database"}
    filepattern = r"^bfa://([^/]+/[^/]+/)?availability_db(@|$)"


class _BfaReader(BaseReader):
    """Shared behaviour: version override, local path, conversions to every output."""

    def _args(self, data: BfaData, version: str | None) -> dict[str, Any]:
        return {"version": version or data.version, "settings": data.settings()}

    def _with_parameters(
        self, version: str | None, kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """Fill what the call leaves unset from the catalog's user parameters.

        The catalog passes them as ``parameters`` (``{"version": ..., "start": ...}``,
        resolved by intake); an explicit argument always wins.
        """
        given = kwargs.pop("parameters", None)
        if given is None:
            given = (getattr(self, "kwargs", None) or {}).get("parameters") or {}
        version = version or given.get("version") or None
        for key in ("start", "end", "symbols", "as_of", "lag"):
            if kwargs.get(key) is None and given.get(key) is not None:
                kwargs[key] = given[key]
        return version, kwargs

    def local_path(self, version: str | None = None):
        """Verified local file for this dataset (downloaded on first use)."""
        data = self.data
        return _ds().local_path(data.dataset, **self._args(data, version))

    def versions(self):
        """Versions available for this dataset's repository (see :func:`list_versions`)."""
        from intake_bfa.resolve import list_versions

        return list_versions(settings=self.data.settings())

    def to_duckdb(self, version: str | None = None, **kwargs):
        """DuckDB relation (tables) or read-only connection (database)."""
        version, kwargs = self._with_parameters(version, kwargs)
        data = self.data
        return _ds().to_duckdb(data.dataset, **self._args(data, version), **kwargs)

    def _repr_html_(self) -> str:
        """Schema, cache state and an example, from the local cache only (no network)."""
        from intake_bfa.cache.admin import dataset_state
        from intake_bfa.display.notebook import reader_html

        meta = getattr(self, "metadata", {}) or {}
        return reader_html(
            self, dataset_state(self.data.dataset, self.data, meta.get("description"))
        )

    def __repr__(self) -> str:
        try:
            from intake_bfa.cache.admin import dataset_state
            from intake_bfa.display.notebook import reader_text

            return reader_text(self, dataset_state(self.data.dataset, self.data))
        except Exception:
            return super().__repr__()


class _BfaTableReader(_BfaReader):
    """Shared table conversions; implements nothing itself (only concrete readers do)."""

    def to_pandas(self, version: str | None = None, **kwargs):
        """pandas DataFrame; ``columns``, ``start``, ``end``, ``symbols`` are pushed down."""
        version, kwargs = self._with_parameters(version, kwargs)
        data = self.data
        return _ds().read(data.dataset, **self._args(data, version), **kwargs)

    def to_arrow(self, version: str | None = None, **kwargs):
        """pyarrow Table; same filters as :meth:`to_pandas`."""
        version, kwargs = self._with_parameters(version, kwargs)
        data = self.data
        return _ds().to_arrow(data.dataset, **self._args(data, version), **kwargs)

    def to_polars(self, version: str | None = None, **kwargs):
        """polars LazyFrame; filters are pushed into the scan (needs the ``polars`` extra)."""
        version, kwargs = self._with_parameters(version, kwargs)
        data = self.data
        return _ds().to_polars(data.dataset, **self._args(data, version), **kwargs)

    def to_dask(self, version: str | None = None, **kwargs):
        """dask DataFrame over the cached Parquet (needs the ``dask`` extra)."""
        version, kwargs = self._with_parameters(version, kwargs)
        data = self.data
        return _ds().to_dask(data.dataset, **self._args(data, version), **kwargs)


class BfaPandasReader(_BfaTableReader):
    """Read a bfa table into a pandas DataFrame.

    ``read(version=None, columns=None, start=None, end=None, symbols=None)``:
    filters and column selection are pushed down to the Parquet reader.
    """

    implements = {BfaTable}  # the default reader of a table (see BfaTabular)
    imports = {"pandas", "pyarrow"}
    output_instance = "pandas:DataFrame"

    def _read(self, data: BfaTable, version: str | None = None, **kwargs):
        return self.to_pandas(version, **kwargs)


class BfaArrowReader(_BfaTableReader):
    """Read a bfa table into a pyarrow Table."""

    implements = {BfaTabular}
    imports = {"pyarrow"}
    output_instance = "pyarrow:Table"

    def _read(self, data: BfaTable, version: str | None = None, **kwargs):
        return self.to_arrow(version, **kwargs)


class BfaDuckDBReader(_BfaTableReader):
    """A lazy DuckDB relation over a bfa table."""

    implements = {BfaTabular}
    imports = {"duckdb"}
    output_instance = "duckdb:DuckDBPyRelation"

    def _read(self, data: BfaTable, version: str | None = None, **kwargs):
        return self.to_duckdb(version, **kwargs)


class BfaPolarsReader(_BfaTableReader):
    """A polars LazyFrame over a bfa table."""

    implements = {BfaTabular}
    imports = {"polars"}
    output_instance = "polars:LazyFrame"

    def _read(self, data: BfaTable, version: str | None = None, **kwargs):
        return self.to_polars(version, **kwargs)


class BfaDaskReader(_BfaTableReader):
    """A dask DataFrame over a bfa table."""

    implements = {BfaTabular}
    imports = {"dask", "pyarrow"}
    output_instance = "dask.dataframe:DataFrame"

    def _read(self, data: BfaTable, version: str | None = None, **kwargs):
        return self.to_dask(version, **kwargs)


class BfaDatabaseReader(_BfaReader):
    """Open the availability DuckDB database read-only (``read()`` returns the connection)."""

    implements = {BfaDatabase}
    imports = {"duckdb"}
    output_instance = "duckdb:DuckDBPyConnection"

    def _read(self, data: BfaDatabase, version: str | None = None, **kwargs):
        return self.to_duckdb(version, **kwargs)


#: The reader each dataset kind gets in the catalog.
DEFAULT_READERS = {"table": BfaPandasReader, "database": BfaDatabaseReader}
DATATYPES = {"table": BfaTable, "database": BfaDatabase}
