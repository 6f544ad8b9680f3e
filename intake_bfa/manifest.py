"""The release manifest: which file holds each dataset, its size, sha256, rows and coverage.

A release in the project's own layout carries ``manifest.json``. A release in the
public project's rolling layout has none, so :func:`synthesize_rolling` builds the
equivalent from the API's asset list (integrity then comes from the ``digest``
field). Either way, everything downstream reads a validated :class:`Manifest`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.errors import ManifestError
from intake_bfa.schema import DATASETS, MANIFEST_SCHEMA_VERSION

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


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
    """Refuse asset names that could escape the cache folder."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name.startswith(".")
        or any(ch in name for ch in "/\\\x00:")
        or ".." in name
    ):
        raise ManifestError(
            f"{source}: asset name {name!r} is not a plain file name (no path separators, "
            "'..' or leading dots); the release is malformed, report it to its publisher",
            source=source,
            asset=name,
        )
    return name


def check_version(version: Any, source: str = "version") -> str:
    """Refuse version strings that are not safe single path components."""
    if not isinstance(version, str) or not _VERSION_RE.match(version) or ".." in version:
        raise ManifestError(
            f"{source}: {version!r} is not a valid dataset version (expected e.g. 2026-11-20)",
            source=source,
            version=version,
        )
    return version


def _coverage(raw: Any, source: str) -> tuple[str, str] | None:
    if raw is None:
        return None
    try:
        start, end = raw["start"], raw["end"]
    except (TypeError, KeyError):
        raise ManifestError(
            f"{source}: coverage must be {{'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}}",
            source=source,
        ) from None
    if not (isinstance(start, str) and _DATE_RE.match(start)) or not (
        isinstance(end, str) and _DATE_RE.match(end)
    ):
        raise ManifestError(f"{source}: coverage dates must be YYYY-MM-DD", source=source)
    return start, end


def _entry(name: str, raw: Any, source: str) -> DatasetEntry:
    where = f"{source}: dataset {name!r}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be an object", source=source)
    asset = raw.get("asset")
    derived = raw.get("derived_from")
    if asset is None and derived is None:
        raise ManifestError(f"{where} has neither 'asset' nor 'derived_from'", source=source)
    if asset is not None:
        check_asset_name(asset, where)
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256_RE.match(sha.lower())):
        raise ManifestError(f"{where}: sha256 must be 64 hex digits", source=source)
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ManifestError(f"{where}: size must be a non-negative integer", source=source)
    if asset is not None and raw.get("sha256") is None and raw.get("size") is None:
        raise ManifestError(f"{where}: an asset needs a size or a sha256", source=source)
    compression = raw.get("compression")
    if compression not in (None, "gzip", "zstd"):
        raise ManifestError(f"{where}: unsupported compression {compression!r}", source=source)
    urls = raw.get("urls") or []
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
    ):
        raise ManifestError(f"{where}: urls must be a list of http(s) URLs", source=source)
    columns = raw.get("columns") or []
    if not isinstance(columns, list):
        raise ManifestError(f"{where}: columns must be a list", source=source)
    return DatasetEntry(
        name=name,
        asset=asset,
        size=size,
        sha256=sha.lower() if sha else None,
        rows=raw.get("rows"),
        coverage=_coverage(raw.get("coverage"), where),
        columns=columns,
        compression=compression,
        derived_from=derived,
        urls=urls,
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
    if schema != MANIFEST_SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: manifest schema_version {schema!r} is not supported by this "
            f"intake-bfa (expects {MANIFEST_SCHEMA_VERSION}); upgrade intake-bfa",
            source=source,
            schema_version=schema,
        )
    version = check_version(data.get("version"), source)
    raw_sets = data.get("datasets")
    if not isinstance(raw_sets, dict) or not raw_sets:
        raise ManifestError(f"{source}: 'datasets' must be a non-empty object", source=source)
    entries = {}
    for name, raw in raw_sets.items():
        if name not in DATASETS:
            # A newer producer may add datasets; skip what this version cannot serve.
            continue
        entries[name] = _entry(name, raw, source)
    for entry in entries.values():
        if entry.derived_from and entry.derived_from not in entries:
            raise ManifestError(
                f"{source}: {entry.name} is derived from missing dataset {entry.derived_from!r}",
                source=source,
            )
    return Manifest(
        version=version,
        layout=data.get("layout", layout),
        schema_version=schema,
        created_at=data.get("created_at"),
        coverage=_coverage(data.get("coverage"), source),
        datasets=entries,
        synthetic=bool(data.get("synthetic", False)),
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
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestError(
            f"cannot read manifest {path}: {err}; run `bfa cache clear` for that version",
            path=str(path),
        ) from None
    manifest = parse_manifest(data, source=str(path), layout=data.get("layout", "dated"))
    log.debug("parsed manifest %s", path)
    if ident is not None:
        with _parsed_lock:
            _parsed[key] = (ident, manifest)
    return manifest
