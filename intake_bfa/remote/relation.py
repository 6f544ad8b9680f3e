"""Remote queries: DuckDB over a release's Parquet by HTTP range requests, no download.

DuckDB's ``httpfs`` is used only if ``LOAD httpfs`` works without installing and no
token is set. Otherwise (the usual case) :class:`~intake_bfa.remote.http_fs.RemoteFileSystem`,
a read-only fsspec filesystem (``bfa-remote://OWNER/REPO/VERSION/ASSET``), is registered
with the connection; its ranged GETs go through :func:`intake_bfa.http.open_url` and
:func:`intake_bfa.http.with_retries`: redirects followed by hand, the token only sent to
the API origin, timeouts, retries. Choices (measured by ``benchmarks/bench_remote.py``):

* No block cache (``cache_type="none"``): DuckDB already reads whole column chunks of a
  row group at once, so each read is one GET and no byte is fetched twice; readahead
  blocks only add bytes (64 KiB: x1.8 on a one-symbol timeline, 1 MiB: x12).
* The footer is fetched when a relation is built (the last
  :data:`~intake_bfa.remote.http_fs.TAIL_BYTES`, then the rest): size, magic and reachability
  fail there with typed errors, and DuckDB's footer reads (to bind, to run, per query on
  a view) are served from memory.
* A redirect's signed URL is reused until it answers 4xx (expired), then the original
  URL is asked again (``cache_redirects=False``: the original for every read).
* A range cannot be hashed, so: each response's total size (``Content-Range``, or the
  length of a 200) must equal the manifest's, the file must start and end with ``PAR1``,
  and its ``ETag`` must not change while read; else :class:`IntegrityError`.
* A server ignoring ``Range`` (200) still yields correct bytes (skipped up to the offset,
  with a warning: each read then costs up to the whole file).
* Positions are per thread: DuckDB may seek and read one file object from several threads.

Errors raised while DuckDB executes reach the caller as ``duckdb.Error`` with our
message; the typed exception is in :attr:`RemoteFileSystem.last_error`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import QueryError
from intake_bfa.filters import plan_filters, quote_identifier, select_sql
from intake_bfa.remote.http_fs import (
    PROTOCOL,
    RemoteFileSystem,
    offline_error,
    release_manifest,
)

log = logging.getLogger(__name__)

_REGISTRY: weakref.WeakKeyDictionary[Any, RemoteFileSystem] = weakref.WeakKeyDictionary()


def _readable(kind: str, entry: Any) -> bool:
    """True for a table dataset published as a plain Parquet asset (a range can read it)."""
    return kind == "table" and entry is not None and bool(entry.asset) and not entry.compression


def _remote_entry(manifest: Any, dataset: str, settings: Settings) -> Any:
    """The manifest entry of ``dataset`` if it is a Parquet asset a range can read."""
    from intake_bfa.schema import get_spec

    spec = get_spec(dataset)
    entry = manifest.datasets.get(dataset)
    if not _readable(spec.kind, entry):
        why = (
            "is a compressed DuckDB database"
            if spec.kind == "database"
            else "is not published as a Parquet asset (it is derived locally)"
            if entry is not None
            else "is not in this release"
        )
        raise QueryError(
            f"{dataset} of {settings.repo} version {manifest.version} {why}, so it cannot be "
            "queried remotely; use to_duckdb(..., remote=False), which downloads it once",
            dataset=dataset,
            version=manifest.version,
        )
    return entry


def remote_tables(version: str = "latest", *, settings: Settings | None = None) -> list[str]:
    """The table datasets of ``version`` published as Parquet assets: what ranges can read.

    Every table of a dated release; on the rolling layout only ``volume_rankings`` (the
    other tables are derived locally from its compressed database).
    """
    from intake_bfa.schema import DATASETS

    manifest = _manifest(version, settings or get_settings())
    return [
        n for n, e in manifest.datasets.items() if n in DATASETS and _readable(DATASETS[n].kind, e)
    ]


def _manifest(version: str, settings: Settings) -> Any:
    if settings.source is not None:
        raise QueryError(
            f"release folder {settings.source} is local: there is nothing to read remotely; "
            "drop --remote / remote=True (its files are copied into the cache, verified, once)",
            source=str(settings.source),
        )
    if settings.offline:
        raise offline_error(settings, "a remote query")
    return release_manifest(version, settings)


def _path(settings: Settings, manifest: Any, entry: Any) -> str:
    return f"{PROTOCOL}://{settings.repo}/{manifest.version}/{entry.asset}"


def remote_url(dataset: str, version: str = "latest", *, settings: Settings | None = None) -> str:
    """The pinned ``bfa-remote://`` path of a dataset's Parquet asset.

    Hand it to any reader together with a :class:`RemoteFileSystem` (``filesystem=``).

    Raises
    ------
    QueryError
        When the dataset is not a plain Parquet asset of that release.
    NotCachedError
        When offline (``BFA_OFFLINE=1``): remote reads need the network.
    """
    settings = settings or get_settings()
    manifest = _manifest(version, settings)
    return _path(settings, manifest, _remote_entry(manifest, dataset, settings))


def httpfs_available(con: Any) -> bool:
    """True if DuckDB's httpfs loads without being installed (never downloads it)."""
    try:
        con.execute("LOAD httpfs")
    except Exception:  # duckdb.IOException / duckdb.Error: not installed
        return False
    return True


def filesystem_of(con: Any) -> RemoteFileSystem | None:
    """The :class:`RemoteFileSystem` registered with connection ``con`` by this module."""
    return _REGISTRY.get(con)


def attach(
    con: Any, *, settings: Settings | None = None, filesystem: RemoteFileSystem | None = None
) -> RemoteFileSystem:
    """Register a :class:`RemoteFileSystem` with ``con`` (once) and return it."""
    known = _REGISTRY.get(con)
    if known is not None:
        if filesystem is not None and filesystem is not known:
            raise QueryError(
                "this DuckDB connection already reads remote files through another "
                "RemoteFileSystem; pass filesystem=filesystem_of(con) or a new connection"
            )
        if settings is not None and settings != known.settings:
            raise QueryError("this DuckDB connection reads remote files with other settings")
        return known
    if PROTOCOL in con.list_filesystems():
        raise QueryError(
            f"a {PROTOCOL} filesystem is already registered in this DuckDB database (e.g. "
            "through another cursor); use that connection or a new one"
        )
    fs = filesystem or RemoteFileSystem(settings)
    con.register_filesystem(fs)
    if duckdb_needs_one_thread():
        # DuckDB 1.x deadlocks on Python filesystems: the main thread cancels tasks while
        # holding the GIL and a worker waits for the GIL to drop its Python file handle
        # (measured with 1.5.6: a stress of 200 remote queries hung after about 100; with
        # one thread 200 of 200 ran). DuckDB 2 does not; there all threads stay.
        log.info("DuckDB %s: this connection reads remote files with one thread", _version())
        con.execute("SET threads = 1")
    _REGISTRY[con] = fs
    return fs


def _version() -> str:
    import duckdb

    return duckdb.__version__


def duckdb_needs_one_thread(version: str | None = None) -> bool:
    """True for a DuckDB older than 2.0, whose Python filesystems can deadlock with threads."""
    major = (version or _version()).split(".", 1)[0]
    return not major.isdigit() or int(major) < 2


def _source(con: Any, settings: Settings, manifest: Any, entry: Any, engine: str, fs: Any) -> str:
    """What ``read_parquet`` reads: the asset URL for httpfs, else our ``bfa-remote://`` path."""
    info = manifest.raw.get("release", {}).get("assets", {}).get(entry.asset, {})
    path = _path(settings, manifest, entry)
    if engine == "auto" and not settings.token and info.get("download_url"):
        # httpfs follows GitHub's redirect itself; with a token it could not keep the
        # token away from the object store, so private assets always take our route.
        engine = "httpfs" if httpfs_available(con) else "fsspec"
    if engine == "httpfs":
        return info["download_url"]
    fs = attach(con, settings=settings, filesystem=fs)
    fs.check(path)
    return path


def remote_relation(
    dataset: str,
    version: str = "latest",
    *,
    columns: Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    symbols: str | Sequence[str] | None = None,
    con: Any = None,
    settings: Settings | None = None,
    filesystem: RemoteFileSystem | None = None,
    engine: str = "auto",
):
    """A lazy DuckDB relation over a release's Parquet asset, read by range requests.

    Same filters as :func:`intake_bfa.datasets.to_duckdb` (values bound as parameters);
    ``to_duckdb(..., remote=True)`` calls this. Symbols are filtered as given, not checked
    against the file (listing them would read its whole ``symbol`` column): a symbol in
    another case, or unknown, gives no rows.

    Parameters
    ----------
    con
        Connection to use (a new in-memory one by default); our filesystem is registered
        with it once, and :func:`filesystem_of` returns it (for its byte counters).
    filesystem
        A :class:`RemoteFileSystem` to register (e.g. with other cache options).
    engine
        ``"auto"`` (httpfs if it loads without installing and no token is set, else
        fsspec), ``"fsspec"`` or ``"httpfs"``.

    Raises
    ------
    QueryError
        Unknown columns, or a dataset that is not a Parquet asset.
    IntegrityError
        The remote file's size or Parquet magic does not match the manifest.
    NotCachedError
        Offline (``BFA_OFFLINE=1``).
    """
    import duckdb

    from intake_bfa import interrupt
    from intake_bfa.schema import get_spec

    settings = settings or get_settings()
    spec = get_spec(dataset)
    filters = plan_filters(spec, start, end, symbols) if spec.kind == "table" else []
    manifest = _manifest(version, settings)
    entry = _remote_entry(manifest, dataset, settings)
    con = con if con is not None else interrupt.connect()
    sql, params = select_sql(columns, filters)
    params = [_source(con, settings, manifest, entry, engine, filesystem), *params]
    try:
        return con.sql(sql, params=params)
    except duckdb.BinderException as err:
        have = [c["name"] for c in entry.columns] or list(spec.columns)
        missing = [c for c in columns or () if c not in have]
        if not missing:
            raise
        raise QueryError(
            f"{dataset} has no column(s) {', '.join(map(repr, missing))}; columns: "
            f"{', '.join(have)}",
            dataset=dataset,
            missing=missing,
        ) from err


def remote_connection(
    version: str = "latest",
    *,
    settings: Settings | None = None,
    datasets: Sequence[str] | None = None,
    con: Any = None,
    filesystem: RemoteFileSystem | None = None,
    engine: str = "auto",
):
    """A DuckDB connection with one view per table dataset, read remotely by range requests.

    Parameters
    ----------
    version
        ``"latest"`` or a pinned version; the views are pinned to the resolved one.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.
    datasets
        Table datasets to expose (default: every Parquet asset of the release).
    con, filesystem, engine
        As in :func:`remote_relation`.

    Returns
    -------
    duckdb.DuckDBPyConnection
        Views named after the datasets (``daily_availability``, ``volume_rankings``,
        ``symbols``); :func:`filesystem_of` gives its transfer counters.
    """
    from intake_bfa import interrupt

    settings = settings or get_settings()
    manifest = _manifest(version, settings)
    names = remote_tables(version, settings=settings) if datasets is None else list(datasets)
    con = con if con is not None else interrupt.connect()
    for name in names:
        entry = _remote_entry(manifest, name, settings)
        source = _source(con, settings, manifest, entry, engine, filesystem)
        filesystem = filesystem or filesystem_of(con)
        # A view cannot take parameters: the path is quoted as a literal (we built it
        # from validated parts) and the name as an identifier.
        literal = "'" + source.replace("'", "''") + "'"
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_identifier(name)} AS SELECT * FROM read_parquet({literal})"
        )
    log.info("remote views over %s %s: %s", settings.repo, manifest.version, ", ".join(names))
    return con


# The public names of the whole package, http_fs's included, are in intake_bfa.remote.
__all__ = [
    "attach",
    "duckdb_needs_one_thread",
    "filesystem_of",
    "httpfs_available",
    "remote_connection",
    "remote_relation",
    "remote_tables",
    "remote_url",
]
