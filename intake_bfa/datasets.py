"""Dataset -> verified local file -> pandas / Arrow / DuckDB / polars / Dask.

The data flows one way: resolve the version, make sure the file is in the cache
(download, decompress or derive it once), then read the local file with column
selection and filters pushed down to the Parquet reader.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intake_bfa import asof as A
from intake_bfa.cache.layout import CacheLayout, file_lock, record_access, sidecar_path
from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import (
    BfaError,
    DatasetNotFoundError,
    IntegrityError,
    NotCachedError,
    QueryError,
)
from intake_bfa.extras import require
from intake_bfa.filters import DateLike, plan_filters, select_sql
from intake_bfa.manifest import Manifest
from intake_bfa.quality import check_files, log_anomalies
from intake_bfa.releases import missing_dataset_note
from intake_bfa.resolve import OFFLINE_FIX, pin
from intake_bfa.schema import DatasetSpec, get_spec
from intake_bfa.symbols import cached_symbols, parquet_symbols

log = logging.getLogger(__name__)

#: Rows per Dask partition (about 65 MB as pandas): see :func:`to_dask`.
DASK_PARTITION_ROWS = 250_000


def local_path(
    dataset: str,
    version: str = "latest",
    *,
    settings: Settings | None = None,
    callback: Any = None,
) -> Path:
    """Path of the verified local file holding ``dataset`` at ``version``.

    Downloads, decompresses or derives it on first use; afterwards it costs a few
    file reads and no network request.

    Parameters
    ----------
    dataset
        One of :data:`intake_bfa.schema.DATASETS`.
    version
        ``"latest"`` or a pinned version such as ``"2026-11-20"``.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.
    callback
        fsspec ``Callback`` receiving download progress.

    Returns
    -------
    pathlib.Path
        A Parquet file for tables, a DuckDB file for ``availability_db``.
    """
    get_spec(dataset)
    settings = settings or get_settings()
    return ensure_local(settings, pin(version, settings), dataset, callback=callback)


def ensure_local(
    settings: Settings, manifest: Manifest, name: str, *, callback: Any = None
) -> Path:
    """Make ``name`` of ``manifest`` available in the cache and return its path."""
    entry = manifest.datasets.get(name)
    if entry is None:
        raise DatasetNotFoundError(
            f"version {manifest.version} of {settings.repo} has no {name!r} dataset "
            f"({missing_dataset_note(manifest.layout, name)}); it has "
            f"{', '.join(manifest.datasets)}",
            dataset=name,
            version=manifest.version,
            available=list(manifest.datasets),
        )
    layout = CacheLayout(settings)
    final = layout.file_path(manifest.version, entry.local_name)
    if final.exists():
        record_access(layout, hit=True)
        return final
    record_access(layout, hit=False)
    # A release folder (BFA_SOURCE) is local: reading it is not network use.
    if settings.offline and settings.source is None and not entry.derived_from:
        raise NotCachedError(
            f"{name} {manifest.version} is not cached in {layout.root} and BFA_OFFLINE=1; "
            f"{OFFLINE_FIX}",
            dataset=name,
            version=manifest.version,
            cache_dir=str(layout.root),
        )
    layout.ensure(final.parent)
    with file_lock(layout, manifest.version, entry.local_name):
        _remove_leftovers(layout, manifest, entry, final)
        if final.exists():  # another process finished it while we waited
            return final
        if entry.derived_from:
            from intake_bfa.derive import derive

            source = ensure_local(settings, manifest, entry.derived_from, callback=callback)
            derive(name, source, final, cache_dir=layout.root)
            if name == "daily_availability":  # once per version: the file is derived once
                _warn_anomalies(layout, manifest, final)
            return final
        return _download_entry(settings, manifest, layout, entry, final, callback)


def _remove_leftovers(layout: CacheLayout, manifest: Manifest, entry, final: Path) -> None:
    """Clean what killed attempts at this file left (its lock is held: they are dead).

    The verified download (a ``.gz``) and a resumable ``.part`` are kept: only temporary
    files and a hash sidecar without its file go.
    """
    from intake_bfa.fetch import remove_leftovers

    targets = [final]
    if entry.asset and entry.asset != entry.local_name:
        targets.append(layout.file_path(manifest.version, entry.asset))
    for target in targets:
        remove_leftovers(target)


def _warn_anomalies(layout: CacheLayout, manifest: Manifest, daily: Path) -> None:
    """Log the data-quality anomalies of a version built elsewhere (the rolling layout).

    Its rankings are checked too when already cached; nothing is downloaded for this.
    """
    entry = manifest.datasets.get("volume_rankings")
    rankings = layout.file_path(manifest.version, entry.local_name) if entry else None
    try:
        report = check_files(
            daily, rankings if rankings and rankings.exists() else None, version=manifest.version
        )
    except Exception as err:  # a diagnostic must never break the read it accompanies
        log.debug("could not check %s: %s", manifest.version, err)
        return
    log_anomalies(report)


def _download_entry(settings, manifest, layout, entry, final: Path, callback: Any) -> Path:
    from intake_bfa.fetch import copy_verified, decompress

    asset_path = layout.file_path(manifest.version, entry.asset)
    if settings.source is not None:
        from intake_bfa.local_source import asset_file

        src = asset_file(settings, manifest, entry.asset)
        copy_verified(
            src,
            asset_path,
            size=entry.size,
            sha256=entry.sha256,
            callback=callback,
            cache_dir=layout.root,
        )
    else:
        _download_asset(settings, manifest, entry, asset_path, callback)
    if entry.compression:
        # A failure here (a full disk: CacheError) keeps the verified download for next time.
        decompress(asset_path, final, entry.compression, callback=callback, cache_dir=layout.root)
        # The verified, decompressed file (with its own sidecar) is what we read.
        asset_path.unlink(missing_ok=True)
        sidecar_path(asset_path).unlink(missing_ok=True)
    return final


def _download_asset(settings, manifest, entry, asset_path: Path, callback: Any) -> None:
    """Download ``entry``'s asset; on the rolling layout, tell a replacement from bad bytes.

    The rolling release is re-uploaded under the same URL, so wrong bytes there may be a
    new upload (the version resolved earlier is gone) or damage in transit. One API call
    tells which: a replacement is reported as such at once; otherwise the file is
    downloaded once more, and if that fails too the bytes were damaged on the way.
    """
    from intake_bfa.fetch import asset_urls, download

    def fetch() -> None:
        urls = asset_urls(settings, manifest, entry.asset, entry.urls)
        download(
            urls, asset_path, settings, size=entry.size, sha256=entry.sha256, callback=callback
        )

    try:
        return fetch()
    except IntegrityError as err:
        if manifest.layout != "rolling":
            raise
        first = err
    replaced, why = _rolling_replaced(settings, entry)
    if replaced:
        raise IntegrityError(
            f"{entry.asset} of {settings.repo} changed since version {manifest.version} was "
            f"resolved: the rolling release was re-uploaded ({why}); run `bfa cache refresh` "
            "(or set BFA_TTL=0) and read version='latest' again",
            **first.context,
        ) from first
    log.warning("%s; downloading %s again (%s)", str(first).splitlines()[0], entry.asset, why)
    try:
        return fetch()
    except IntegrityError as err:
        if replaced is None:
            verdict = (
                f"arrived damaged twice, and whether the release was replaced is unknown "
                f"({why}); run `bfa cache refresh` and retry"
            )
        else:
            verdict = (
                f"arrived damaged twice, though {why}: its bytes were corrupted in transit "
                "(the network, a proxy or a mirror), not replaced. Retry later or from "
                "another network"
            )
        # What arrived (the mismatch and its figures), then our verdict instead of the
        # generic advice closing the message.
        lines = str(err).splitlines()
        what = "\n".join(lines[:-1] if len(lines) > 1 else lines)
        raise IntegrityError(
            f"{what}\nnothing was cached: {entry.asset} of {settings.repo} {verdict}",
            **err.context,
        ) from err


def _rolling_replaced(settings: Settings, entry) -> tuple[bool | None, str]:
    """Whether the rolling release's ``entry.asset`` now differs from the manifest's, and why.

    One conditional API request for the release list. None when the release server
    cannot say (the reason tells why).
    """
    from intake_bfa.releases import fetch_releases

    try:
        releases = fetch_releases(settings, CacheLayout(settings))
    except BfaError as err:  # the diagnosis must not hide the integrity failure
        return None, f"could not ask the release server: {err}"
    rolling = next((r for r in releases if r.layout == "rolling"), None)
    asset = rolling.assets.get(entry.asset) if rolling else None
    if rolling is None or asset is None:
        return True, f"it no longer has {entry.asset}"
    if asset.size != entry.size or (asset.sha256 or None) != (entry.sha256 or None):
        return True, f"its {entry.asset} is another file now, of version {rolling.version}"
    return False, "the release still publishes the same size and sha256"


def _columns_error(path: Path, columns: Sequence[str], dataset: str) -> QueryError:
    import pyarrow.parquet as pq

    have = pq.read_schema(path).names
    missing = [c for c in columns if c not in have]
    return QueryError(
        f"{dataset} has no column(s) {', '.join(map(repr, missing))}; columns: {', '.join(have)}",
        dataset=dataset,
        missing=missing,
    )


def _table_path(
    dataset: str, version: str, settings: Settings | None
) -> tuple[DatasetSpec, Path, str]:
    """The dataset's spec, its verified local file and the concrete version it is."""
    spec = get_spec(dataset)
    if spec.kind != "table":
        raise QueryError(
            f"{dataset} is a database, not a table; open it with connect() / to_duckdb()",
            dataset=dataset,
        )
    settings = settings or get_settings()
    manifest = pin(version, settings)
    return spec, ensure_local(settings, manifest, dataset), manifest.version


def _plan(spec: DatasetSpec, path: Path, version: str, start, end, symbols, con=None) -> list:
    """:func:`plan_filters` with the symbols checked against those of the local file
    (listed by DuckDB on ``con`` if given, else by pyarrow)."""
    return plan_filters(
        spec,
        start,
        end,
        symbols,
        known_symbols=lambda: parquet_symbols(path, con=con),
        version=version,
    )


def read(
    dataset: str,
    version: str = "latest",
    *,
    columns: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    symbols: str | Sequence[str] | None = None,
    settings: Settings | None = None,
    as_of: Any = None,
    lag: Any = None,
):
    """Read a table dataset into a pandas DataFrame, filters pushed down to Parquet.

    Parameters
    ----------
    dataset
        ``daily_availability``, ``volume_rankings`` or ``symbols``.
    version
        ``"latest"`` or a pinned version.
    columns
        Columns to read (default all).
    start, end
        Inclusive date bounds (tables with a ``date`` column).
    symbols
        One symbol or a list of symbols, matched to the file's symbols ignoring case
        when that is unambiguous (``"btcusdt"`` reads ``BTCUSDT``).
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.
    as_of, lag
        ``daily_availability`` only: the rows as they could have been known at a UTC
        instant (``"2024-03-05T09:00Z"``), or each day at a lag after its end
        (``as_of="D+1T09:00Z"`` or ``lag="09:00"``); see :mod:`intake_bfa.asof`.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    QueryError
        Bad dates or columns, and symbols the version does not have (with suggestions;
        see :func:`intake_bfa.symbols.match_symbols`); ``as_of`` on another dataset or
        not a date, instant or lag.
    """
    return arrow_to_pandas(
        to_arrow(
            dataset,
            version,
            columns=columns,
            start=start,
            end=end,
            symbols=symbols,
            settings=settings,
            as_of=as_of,
            lag=lag,
        )
    )


def arrow_to_pandas(table: Any):
    """A pyarrow Table as a pandas DataFrame, integers kept whole.

    pyarrow turns an integer column holding nulls into float64 (and a boolean one into
    objects); these come back as pandas' nullable ``Int64``/``boolean`` instead, as DuckDB
    returns them, so :func:`read`, :class:`~intake_bfa.query.Query` and ``bfa sql`` give
    the same dtypes for the same column.
    """
    import pandas as pd
    import pyarrow as pa

    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.type in nullable and column.null_count:
            # Straight from Arrow, never via float64: a BIGINT above 2**53 stays exact.
            single = pa.table({name: column}).to_pandas(types_mapper=nullable.get)
            frame[name] = single[name].set_axis(frame.index)
    return frame


def to_arrow(
    dataset: str,
    version: str = "latest",
    *,
    columns: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    symbols: str | Sequence[str] | None = None,
    settings: Settings | None = None,
    as_of: Any = None,
    lag: Any = None,
):
    """Like :func:`read`, returning a ``pyarrow.Table``."""
    if as_of is not None or lag is not None:
        from intake_bfa import interrupt

        con = interrupt.connect()
        try:
            relation = to_duckdb(
                dataset, version, columns=columns, start=start, end=end, symbols=symbols,
                con=con, settings=settings, as_of=as_of, lag=lag, ordered=True,
            )  # fmt: skip
            return _fetch(relation)
        finally:
            con.close()
    spec, path, pinned = _table_path(dataset, version, settings)
    if not _may_check_after(spec, path, columns, symbols):
        return _read_arrow(path, columns, _plan(spec, path, pinned, start, end, symbols), dataset)
    filters = plan_filters(spec, start, end, symbols)
    table = _read_arrow(path, columns, filters, dataset)
    if _has_every_symbol(table, filters):
        return table
    # Another case, an unknown symbol, or no row in the window: check, read again if needed.
    checked = _plan(spec, path, pinned, start, end, symbols)
    return table if checked == filters else _read_arrow(path, columns, checked, dataset)


def _may_check_after(spec: DatasetSpec, path: Path, columns, symbols) -> bool:
    """True when the symbols can be checked by what the read returns.

    Until a file's symbols are listed (about one read's cost, once per file and process),
    symbols spelled as in the file need no check when they all show up in the result.
    Binance's symbols are upper case: one that is not is checked first, sparing a read
    that would find nothing.
    """
    if symbols is None or not spec.has_symbol or (columns and "symbol" not in columns):
        return False
    if not isinstance(symbols, (str, list, tuple)):  # e.g. an iterator: planned once only
        return False
    names = [symbols] if isinstance(symbols, str) else symbols
    return all(isinstance(s, str) and s == s.upper() for s in names) and (
        cached_symbols(path) is None
    )


def _read_arrow(path: Path, columns: Sequence[str] | None, filters: list, dataset: str):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns, filters=filters or None)
    except (KeyError, ValueError) as err:
        if columns:
            raise _columns_error(path, columns, dataset) from err
        raise


def _has_every_symbol(table: Any, filters: list) -> bool:
    """True when ``table`` has a row of every symbol its ``symbol`` filter asked for."""
    import pyarrow.compute as pc

    wanted = {v for column, op, value in filters if column == "symbol" for v in value}
    return wanted <= set(pc.unique(table.column("symbol")).to_pylist())


def to_duckdb(
    dataset: str,
    version: str = "latest",
    *,
    columns: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    symbols: str | Sequence[str] | None = None,
    con: Any = None,
    settings: Settings | None = None,
    remote: bool = False,
    as_of: Any = None,
    lag: Any = None,
    ordered: bool = False,
):
    """A lazy DuckDB relation over the cached file (a read-only connection for the database).

    Values are bound as parameters, never formatted into SQL. ``remote=True`` reads the
    release's Parquet asset with HTTP range requests instead of downloading it
    (:func:`intake_bfa.remote.relation.remote_relation`; the connection's byte counters are in
    :func:`intake_bfa.remote.relation.filesystem_of`).

    Symbols are checked as by :func:`read`, except with ``remote=True``: listing a remote
    file's symbols would read its whole ``symbol`` column, so there they are filtered as
    given (exact spelling; an unknown symbol gives no rows).

    ``as_of``/``lag`` (``daily_availability`` only, local files only) give the rows as they
    could have been known then, as by :func:`read`; ``ordered=True`` sorts them as the file
    is (date tiles, symbol, date).

    Returns
    -------
    duckdb.DuckDBPyRelation or duckdb.DuckDBPyConnection
        A relation for tables; for ``availability_db`` a read-only connection.
    """
    settings = settings or get_settings()
    when = A.parse_as_of(as_of, lag)
    if when is not None:
        return _as_of_relation(
            dataset, version, when, columns=columns, start=start, end=end, symbols=symbols,
            con=con, settings=settings, remote=remote, ordered=ordered,
        )  # fmt: skip
    if remote and settings.source is not None:
        log.info("release folder %s is local: reading it without remote=True", settings.source)
    elif remote:
        from intake_bfa.remote.relation import remote_relation

        return remote_relation(
            dataset, version, columns=columns, start=start, end=end, symbols=symbols,
            con=con, settings=settings,
        )  # fmt: skip
    spec = get_spec(dataset)
    if spec.kind == "database":
        if columns or start or end or symbols:
            raise QueryError("availability_db is a whole database; query it with SQL instead")
        return connect(version, settings=settings)
    spec, path, pinned = _table_path(dataset, version, settings)
    import duckdb

    from intake_bfa import interrupt

    con = con or interrupt.connect()
    filters = _plan(spec, path, pinned, start, end, symbols, con)
    sql, params = select_sql(columns, filters)
    params = [str(path), *params]
    try:
        return con.sql(sql, params=params)
    except duckdb.BinderException as err:
        if columns:
            raise _columns_error(path, columns, dataset) from err
        raise


def _as_of_relation(
    dataset: str,
    version: str,
    when: A.AsOf,
    *,
    columns,
    start,
    end,
    symbols,
    con,
    settings,
    remote: bool,
    ordered: bool,
):
    """:func:`to_duckdb` for ``as_of``: the as-of ``SELECT`` of :mod:`intake_bfa.asof`."""
    import duckdb

    from intake_bfa import interrupt
    from intake_bfa.parquet_layout import TILED_ORDER

    if dataset != "daily_availability":
        raise QueryError(
            f"as_of applies to daily_availability, not {dataset}; Query(as_of=...) also "
            "answers symbols, listings and rankings as known then",
            dataset=dataset,
        )
    if remote:
        raise QueryError("as_of reads the local files; drop remote=True", dataset=dataset)
    spec, path, pinned = _table_path(dataset, version, settings)
    manifest = pin(pinned, settings)
    events = None
    if "availability_events" in manifest.datasets:
        events = ensure_local(settings, manifest, "availability_events")
    source, source_params = A.as_of_sql(when, path, events)
    con = con or interrupt.connect()
    filters = _plan(spec, path, pinned, start, end, symbols, con)
    sql, params = select_sql(columns, filters, source=f"({source}) AS a")
    if ordered and (not columns or {"date", "symbol"} <= set(columns)):
        sql += f" ORDER BY {TILED_ORDER}"
    try:
        return con.sql(sql, params=[*source_params, *params])
    except duckdb.BinderException as err:
        if columns:
            raise _columns_error(path, columns, dataset) from err
        raise


def _fetch(relation: Any):
    """Execute a relation into a ``pyarrow.Table``; DuckDB errors become :class:`QueryError`."""
    import duckdb

    try:
        return relation.to_arrow_table()
    except duckdb.Error as err:
        raise QueryError(str(err).splitlines()[0]) from None


def connect(version: str = "latest", *, settings: Settings | None = None):
    """Open the ``availability_db`` DuckDB database read-only."""
    from intake_bfa import interrupt

    path = local_path("availability_db", version, settings=settings)
    return interrupt.connect(str(path), read_only=True)


def to_polars(
    dataset: str,
    version: str = "latest",
    *,
    columns=None,
    start=None,
    end=None,
    symbols=None,
    settings: Settings | None = None,
):
    """A ``polars.LazyFrame`` over the cached file; filters are pushed into the scan."""
    (pl,) = require("polars", extra="polars", feature="to_polars()")

    spec, path, pinned = _table_path(dataset, version, settings)
    lazy = pl.scan_parquet(path)
    for column, op, value in _plan(spec, path, pinned, start, end, symbols):
        col = pl.col(column)
        lazy = lazy.filter(
            col.is_in(value) if op == "in" else (col >= value if op == ">=" else col <= value)
        )
    return lazy.select(columns) if columns else lazy


def to_dask(
    dataset: str,
    version: str = "latest",
    *,
    columns=None,
    start=None,
    end=None,
    symbols=None,
    settings: Settings | None = None,
    partition_rows: int = DASK_PARTITION_ROWS,
):
    """A ``dask.dataframe.DataFrame`` over the cached file, filters pushed down.

    Each partition is a run of consecutive row groups holding about ``partition_rows``
    rows (dask's ``split_row_groups=<n>``), so partitions align to row-group boundaries.
    Our row groups are small (~5,000 rows: a few symbols × half a year), so one task per
    row group would drown in scheduling overhead, and dask's default (one partition for
    a file under its blocksize) would leave nothing to parallelise. Row groups excluded
    by the filters' statistics are dropped before the grouping.
    """
    (dd,) = require("dask.dataframe", extra="dask", feature="to_dask()")
    import pyarrow.parquet as pq

    spec, path, pinned = _table_path(dataset, version, settings)
    filters = _plan(spec, path, pinned, start, end, symbols)
    meta = pq.read_metadata(path)
    per_group = meta.num_rows / max(meta.num_row_groups, 1)
    groups = max(1, round(partition_rows / max(per_group, 1.0)))
    return dd.read_parquet(
        str(path), columns=columns, filters=filters or None, split_row_groups=groups
    )
