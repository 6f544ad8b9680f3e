"""The release manifest: which file holds each dataset, its size, sha256, rows and coverage.

A release in the project's own layout carries ``manifest.json``. A release in the
public project's rolling layout has none, so :func:`synthesize_rolling` builds the
equivalent from the API's asset list (integrity then comes from the ``digest``
field). Either way, everything downstream reads a validated :class:`Manifest`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.errors import ManifestError
from intake_bfa.schema import DATASETS, DERIVABLE, MANIFEST_SCHEMA_VERSION
from intake_bfa.untrusted import loads_json

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
# ASCII only and matched whole (fullmatch): "\d" also matches "２", and "$" a final newline.
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
#: Longest asset name accepted, in UTF-8 bytes (file systems allow 255; the cache adds
#: suffixes such as ``.part`` to a name).
MAX_ASSET_NAME_BYTES = 200
#: Characters an asset name may not hold: path separators, NUL, ':' (Windows streams) and
#: control characters (terminal escapes in messages, newlines in logs).
_BAD_NAME_CHARS = re.compile(r'[/\\:\x00-\x1f\x7f-\x9f\u2028\u2029<>"|?*]')


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a release, as the manifest describes it.

    Attributes
    ----------
    name
        Dataset name (``daily_availability``...).
    asset
        Release asset file name; None when the dataset is derived locally.
    size, sha256
        Expected size and hex sha256 of the asset (sha256 None when unknown).
    rows
        Row count (of the main table for a database), if known.
    coverage
        ``(first_date, last_date)`` ISO strings, if known.
    columns
        ``[{"name": ..., "type": ...}, ...]`` in file order, if known.
    compression
        ``"gzip"``/``"zstd"`` for an asset decompressed after download, else None.
    derived_from
        Name of the dataset this one is computed from locally, else None.
    urls
        Extra download URLs (mirrors) tried after the release asset.
    """

    name: str
    asset: str | None
    size: int | None = None
    sha256: str | None = None
    rows: int | None = None
    coverage: tuple[str, str] | None = None
    columns: list[dict[str, str]] = field(default_factory=list)
    compression: str | None = None
    derived_from: str | None = None
    urls: list[str] = field(default_factory=list)

    @property
    def local_name(self) -> str:
        """File name of the usable local file (decompressed, or derived)."""
        if self.asset is None:
            return DATASETS[self.name].asset
        if self.compression and self.asset.endswith((".gz", ".zst")):
            return self.asset.rsplit(".", 1)[0]
        return self.asset


@dataclass(frozen=True)
class Manifest:
    """A validated release manifest."""

    version: str
    layout: str
    schema_version: int
    created_at: str | None
    coverage: tuple[str, str] | None
    datasets: dict[str, DatasetEntry]
    synthetic: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_size(self) -> int:
        """Bytes to download for every asset."""
        return sum(e.size or 0 for e in self.datasets.values() if e.asset)


def check_asset_name(name: Any, source: str) -> str:
    """Refuse an asset name that is not a plain, short file name, before it touches the disk.

    Parameters
    ----------
    name
        The name as a manifest or the API gives it.
    source
        Where it comes from (file or URL, and field), for the message.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    ManifestError
        Not a string, empty, a path (separators, ``..``, a leading dot), longer than
        :data:`MAX_ASSET_NAME_BYTES` bytes of UTF-8, or holding control or reserved characters.
    """
    why = None
    if not isinstance(name, str) or not name:
        why = "is not a non-empty string"
    elif name in (".", "..") or name.startswith(".") or ".." in name:
        why = "is not a plain file name (no '..' or leading dots)"
    elif _BAD_NAME_CHARS.search(name):
        why = 'holds a path separator, a control character or one of :<>"|?*'
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_ASSET_NAME_BYTES:
        why = f"is longer than {MAX_ASSET_NAME_BYTES} bytes"
    elif name != name.strip():
        why = "starts or ends with white space"
    if why is not None:
        shown = (
            repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:60] + "...")
        )
        raise ManifestError(
            f"{source}: asset name {shown} {why} (it must be a plain file name); the release is "
            "malformed, report it to "
            "its publisher",
            source=source,
            asset=name,
        )
    return name


def check_version(version: Any, source: str = "version") -> str:
    """Refuse a version that is not a safe single path component (ASCII letters, digits, ``._-``).

    Parameters
    ----------
    version
        The version as a manifest or the user gives it.
    source
        Where it comes from, for the message.

    Returns
    -------
    str
        ``version``, unchanged.

    Raises
    ------
    ManifestError
        For anything else (non-ASCII digits, ``..``, more than 64 characters...).
    """
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version) or ".." in version:
        raise ManifestError(
            f"{source}: {version!r} is not a valid dataset version (expected e.g. 2026-11-20)",
            source=source,
            version=version,
        )
    return version


def _date(raw: Any, where: str, source: str) -> str:
    if isinstance(raw, str) and _DATE_RE.fullmatch(raw):
        try:
            dt.date.fromisoformat(raw)
            return raw
        except ValueError:
            pass
    raise ManifestError(f"{where}: {raw!r} is not a date (YYYY-MM-DD)", source=source, value=raw)


def _coverage(raw: Any, where: str, source: str) -> tuple[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "start" not in raw or "end" not in raw:
        raise ManifestError(
            f"{where}: coverage must be {{'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}}",
            source=source,
            field="coverage",
        )
    start = _date(raw["start"], f"{where}: coverage.start", source)
    end = _date(raw["end"], f"{where}: coverage.end", source)
    if start > end:
        raise ManifestError(
            f"{where}: coverage starts ({start}) after it ends ({end})",
            source=source,
            field="coverage",
        )
    return start, end


def _count(raw: Any, where: str, source: str, name: str) -> int | None:
    """An optional non-negative integer field (a bool is not one)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ManifestError(
            f"{where}: {name} must be a non-negative integer, got {raw!r}",
            source=source,
            field=name,
        )
    return raw


def _columns(raw: Any, where: str, source: str) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
        isinstance(col, dict)
        and isinstance(col.get("name"), str)
        and isinstance(col.get("type", ""), str)
        for col in raw
    ):
        raise ManifestError(
            f"{where}: columns must be a list of {{'name': str, 'type': str}}",
            source=source,
            field="columns",
        )
    return raw


def _entry(name: str, raw: Any, source: str) -> DatasetEntry:
    where = f"{source}: dataset {name!r}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be an object", source=source, field=name)
    asset = raw.get("asset")
    derived = raw.get("derived_from")
    if asset is None and derived is None:
        raise ManifestError(f"{where} has neither 'asset' nor 'derived_from'", source=source)
    if asset is not None and derived is not None:
        raise ManifestError(
            f"{where} has both 'asset' and 'derived_from'", source=source, field="derived_from"
        )
    if asset is not None:
        check_asset_name(asset, f"{where}: asset")
    if derived is not None and not isinstance(derived, str):
        raise ManifestError(
            f"{where}: derived_from must be a dataset name, got {derived!r}",
            source=source,
            field="derived_from",
        )
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha.lower())):
        raise ManifestError(f"{where}: sha256 must be 64 hex digits", source=source, field="sha256")
    size = _count(raw.get("size"), where, source, "size")
    if asset is not None and sha is None and size is None:
        raise ManifestError(f"{where}: an asset needs a size or a sha256", source=source)
    compression = raw.get("compression")
    if compression not in (None, "gzip", "zstd"):
        raise ManifestError(
            f"{where}: unsupported compression {compression!r}",
            source=source,
            field="compression",
        )
    urls = raw.get("urls") or []
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
    ):
        raise ManifestError(
            f"{where}: urls must be a list of http(s) URLs", source=source, field="urls"
        )
    return DatasetEntry(
        name=name,
        asset=asset,
        size=size,
        sha256=sha.lower() if sha else None,
        rows=_count(raw.get("rows"), where, source, "rows"),
        coverage=_coverage(raw.get("coverage"), where, source),
        columns=_columns(raw.get("columns"), where, source),
        compression=compression,
        derived_from=derived,
        urls=urls,
    )


def _check_derivations(entries: dict[str, DatasetEntry], source: str) -> None:
    """Each derived dataset is one a consumer can compute, from a database the release ships.

    The source must be downloaded itself (not derived), which also rules out cycles: a
    dataset derived from itself would wait on its own lock for ever.
    """
    for entry in entries.values():
        origin = entry.derived_from
        if origin is None:
            continue
        where = f"{source}: dataset {entry.name!r}: derived_from"
        if entry.name not in DERIVABLE:
            raise ManifestError(
                f"{where} {origin!r}: {entry.name} cannot be computed locally (only "
                f"{', '.join(DERIVABLE)} can); the release must ship it as an asset",
                source=source,
                field="derived_from",
            )
        found = entries.get(origin)
        if found is None:
            raise ManifestError(
                f"{where}: {entry.name} is derived from missing dataset {origin!r}",
                source=source,
                field="derived_from",
            )
        if DATASETS[origin].kind != "database" or found.asset is None:
            raise ManifestError(
                f"{where} {origin!r}: a dataset is derived from the database the release "
                f"ships (availability_db), not from {origin!r} (a {DATASETS[origin].kind}"
                f"{'' if found.asset else ', itself derived'})",
                source=source,
                field="derived_from",
            )


def parse_manifest(data: Any, *, source: str, layout: str = "dated") -> Manifest:
    """Validate a manifest document.

    Parameters
    ----------
    data
        The decoded JSON document.
    source
        Where it came from (URL or path), for error messages.
    layout
        ``"dated"`` (project layout) or ``"rolling"`` (public project's layout).

    Raises
    ------
    ManifestError
        With the source and what is wrong.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest must be a JSON object", source=source)
    schema = data.get("schema_version")
    if type(schema) is not int or schema != MANIFEST_SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: manifest schema_version {schema!r} is not supported by this "
            f"intake-bfa (expects {MANIFEST_SCHEMA_VERSION}); upgrade intake-bfa",
            source=source,
            schema_version=schema,
            field="schema_version",
        )
    version = check_version(data.get("version"), f"{source}: version")
    layout = data.get("layout", layout)
    if layout not in ("dated", "rolling"):
        raise ManifestError(
            f"{source}: layout must be 'dated' or 'rolling', got {layout!r}",
            source=source,
            field="layout",
        )
    created_at = data.get("created_at")
    if created_at is not None and not isinstance(created_at, str):
        raise ManifestError(
            f"{source}: created_at must be a timestamp string, got {created_at!r}",
            source=source,
            field="created_at",
        )
    synthetic = data.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise ManifestError(
            f"{source}: synthetic must be true or false, got {synthetic!r}",
            source=source,
            field="synthetic",
        )
    raw_sets = data.get("datasets")
    if not isinstance(raw_sets, dict) or not raw_sets:
        raise ManifestError(
            f"{source}: 'datasets' must be a non-empty object", source=source, field="datasets"
        )
    entries = {}
    for name, raw in raw_sets.items():
        if name not in DATASETS:
            # A newer producer may add datasets; skip what this version cannot serve.
            continue
        entries[name] = _entry(name, raw, source)
    _check_derivations(entries, source)
    return Manifest(
        version=version,
        layout=layout,
        schema_version=schema,
        created_at=created_at,
        coverage=_coverage(data.get("coverage"), source, source),
        datasets=entries,
        synthetic=synthetic,
        raw=data,
    )


#: Parsed manifests by path, with the file's identity when parsed: a cached manifest is
#: read and validated once per process, and again only when the file is replaced.
_parsed: dict[str, tuple[tuple[int, int, int], Manifest]] = {}
_parsed_lock = threading.Lock()


def load_manifest(path: Path) -> Manifest:
    """Read and validate a cached manifest file (memoised while the file is unchanged).

    Cache files are only ever replaced atomically (a new inode), so the file's
    ``(inode, size, mtime)`` identifies its content; a changed file is parsed again.
    """
    key = str(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    ident = (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
    with _parsed_lock:
        hit = _parsed.get(key)
    if hit is not None and hit[0] == ident:
        return hit[1]
    try:
        data = loads_json(Path(path).read_bytes())
    except (OSError, ValueError) as err:
        raise ManifestError(
            f"cannot read manifest {path}: {err}; run `bfa cache clear` for that version",
            path=str(path),
        ) from None
    manifest = parse_manifest(data, source=str(path))
    log.debug("parsed manifest %s", path)
    if ident is not None:
        with _parsed_lock:
            _parsed[key] = (ident, manifest)
    return manifest
