"""Releases read from a local folder instead of a release server (``BFA_SOURCE``).

Three users need no server and no network: the air-gapped analyst with releases copied on
a disk, the producer previewing ``bfa build``'s output before ``bfa publish``, and the
newcomer whose embedded default is the folder ``bfa demo`` writes. A source folder is

* one release folder: ``manifest.json`` and the files it lists (what ``bfa build`` writes);
* a folder of release folders, any names (what ``bfa demo`` writes, or releases copied
  from another machine); or
* the public project's rolling layout: ``availability.duckdb.gz`` (or ``.duckdb``) and
  optionally ``volume-rankings-timeseries.parquet``, no manifest; its version is
  ``rolling-<the database file's modification time>``.

Files are copied into the cache and verified against their manifest exactly like
downloads (size and sha256; a rolling folder publishes no sha256, so only sizes), and
read from there. The cache keeps each source folder apart from GitHub repositories
(``<cache>/v1/_source/<folder>-<hash>/``). A release folder may be rebuilt under the same
version (a producer's preview): a changed manifest replaces the cached copy of that
version. Listing costs a directory scan and one ``stat`` per release, so "latest" is
always the newest release in the folder, without a TTL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import Settings
from intake_bfa.errors import ManifestError, VersionNotFoundError, nearest
from intake_bfa.manifest import MANIFEST_NAME, Manifest, load_manifest, parse_manifest
from intake_bfa.releases import (
    DATED_TAG_RE,
    ROLLING_DB_ASSETS,
    ROLLING_RANKINGS_ASSET,
    ROLLING_TAG,
    Asset,
    Release,
    synthesize_rolling,
)
from intake_bfa.untrusted import loads_json

log = logging.getLogger(__name__)

_ROLLING_PREFIX = "rolling-"


@dataclass(frozen=True)
class FolderRelease:
    """One release found in a source folder.

    Attributes
    ----------
    release
        The release as a server would list it (assets with size and sha256).
    path
        The folder holding its files.
    digest
        Identifies the folder's content for this version (sha256 of its manifest, or of
        the rolling files' names, sizes and times): a changed digest means a rebuilt release.
    doc
        The manifest document (synthesized for the rolling layout).
    """

    release: Release
    path: Path
    digest: str
    doc: dict[str, Any]

    @property
    def version(self) -> str:
        """The release's version."""
        return self.release.version


_memo_lock = threading.Lock()
#: Parsed release folders by path, with the identity of what they were parsed from: a scan
#: re-reads only the manifests that changed.
_parsed: dict[str, tuple[tuple, FolderRelease | None]] = {}


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _rolling_files(folder: Path) -> list[Path]:
    return [
        folder / n for n in (*ROLLING_DB_ASSETS, ROLLING_RANKINGS_ASSET) if (folder / n).is_file()
    ]


def _signature(folder: Path) -> tuple | None:
    """What identifies a release folder's content cheaply (stats only), or None if it is none."""
    manifest = _identity(folder / MANIFEST_NAME)
    if manifest is not None:
        return ("dated", manifest)
    files = _rolling_files(folder)
    if any(p.name in ROLLING_DB_ASSETS for p in files):
        return ("rolling", tuple((p.name, _identity(p)) for p in files))
    return None


def _iso(timestamp: float) -> str:
    stamp = dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(microsecond=0)
    return stamp.isoformat().replace("+00:00", "Z")


def _read_dated(folder: Path) -> FolderRelease:
    path = folder / MANIFEST_NAME
    try:
        body = path.read_bytes()
        doc = loads_json(body)
    except (OSError, ValueError) as err:
        raise ManifestError(
            f"cannot read {path}: {err}; rebuild the release folder or copy it again",
            path=str(path),
        ) from None
    manifest = parse_manifest(doc, source=str(path))
    tag = f"data-{manifest.version}"
    if not DATED_TAG_RE.match(tag):
        raise ManifestError(
            f"{path} is version {manifest.version!r}; a release folder holds a dated version "
            "(YYYY-MM-DD): rebuild it with `bfa build --version YYYY-MM-DD`",
            path=str(path),
        )
    assets = {
        MANIFEST_NAME: Asset(MANIFEST_NAME, len(body), hashlib.sha256(body).hexdigest(), "", "", "")
    }
    for entry in manifest.datasets.values():
        if entry.asset:
            assets[entry.asset] = Asset(entry.asset, entry.size or 0, entry.sha256, "", "", "")
    main = manifest.datasets.get("daily_availability")
    meta: dict[str, Any] = {"rows": main.rows if main else None}
    if manifest.coverage:
        meta["coverage"] = {"start": manifest.coverage[0], "end": manifest.coverage[1]}
    release = Release(
        version=manifest.version,
        tag=tag,
        layout="dated",
        published_at=manifest.created_at,
        assets=assets,
        meta=meta,
    )
    return FolderRelease(release, folder, hashlib.sha256(body).hexdigest(), doc)


def _read_rolling(folder: Path) -> FolderRelease:
    assets = {}
    for path in _rolling_files(folder):
        st = path.stat()
        assets[path.name] = Asset(path.name, st.st_size, None, "", "", _iso(st.st_mtime))
    db = next(assets[n] for n in ROLLING_DB_ASSETS if n in assets)
    stamp = db.updated_at.replace("-", "").replace(":", "")
    release = Release(
        version=f"{_ROLLING_PREFIX}{stamp[:15]}Z",
        tag=ROLLING_TAG,
        layout="rolling",
        published_at=db.updated_at,
        assets=assets,
    )
    described = sorted((a.name, a.size, a.updated_at) for a in assets.values())
    digest = hashlib.sha256(json.dumps(described).encode()).hexdigest()
    return FolderRelease(release, folder, digest, synthesize_rolling(release))


def _parse_folder(folder: Path) -> FolderRelease | None:
    """The release in ``folder`` (memoised while its files are unchanged), or None."""
    signature = _signature(folder)
    if signature is None:
        return None
    key = str(folder)
    with _memo_lock:
        hit = _parsed.get(key)
    if hit is not None and hit[0] == signature:
        return hit[1]
    found = _read_dated(folder) if signature[0] == "dated" else _read_rolling(folder)
    with _memo_lock:
        if len(_parsed) > 1024:
            _parsed.clear()
        _parsed[key] = (signature, found)
    return found


def source_releases(source: Path) -> list[FolderRelease]:
    """The releases in a source folder, newest first (dated versions before a rolling one).

    Raises
    ------
    ManifestError
        The folder is itself a release folder whose manifest is invalid, or two of its
        release folders hold the same version.
    """
    single = _parse_folder(source)
    if single is not None:
        return [single]
    found: dict[str, FolderRelease] = {}
    try:
        children = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise ManifestError(
            f"cannot list release folder {source}: {err.strerror or err}; check BFA_SOURCE",
            path=str(source),
        ) from None
    for child in children:
        try:
            release = _parse_folder(child)
        except ManifestError as err:
            # One damaged copy must not hide the others; asking for it names the problem.
            log.warning("skipping %s: %s", child, err)
            continue
        if release is None:
            continue
        twin = found.get(release.version)
        if twin is not None:
            raise ManifestError(
                f"release folder {source} holds version {release.version} twice ({twin.path.name} "
                f"and {child.name}); keep one of them",
                path=str(source),
                version=release.version,
            )
        found[release.version] = release
    return sorted(
        found.values(), key=lambda r: (r.release.layout == "dated", r.version), reverse=True
    )


def no_release_error(settings: Settings) -> VersionNotFoundError:
    """The error for a source folder without any release in it."""
    return VersionNotFoundError(
        f"release folder {settings.source} holds no release: expected manifest.json (what "
        "`bfa build` writes), folders holding one (what `bfa demo` writes), or "
        f"{ROLLING_DB_ASSETS[0]}; check BFA_SOURCE",
        source=str(settings.source),
        version="latest",
        available=[],
    )


def find_folder_release(settings: Settings, version: str) -> FolderRelease:
    """The release of ``version`` in the source folder.

    Raises
    ------
    VersionNotFoundError
        No release folder holds ``version``; the nearest versions are named.
    """
    assert settings.source is not None
    releases = source_releases(settings.source)
    for found in releases:
        if found.version == version:
            return found
    names = [r.version for r in releases]
    close = nearest(version, names)
    hint = f"nearest available: {', '.join(close)}" if close else "it holds no release"
    raise VersionNotFoundError(
        f"version {version} is not in release folder {settings.source}; {hint}",
        version=version,
        source=str(settings.source),
        available=names,
        nearest=close,
    )


def folder_manifest(settings: Settings, version: str) -> Manifest:
    """The validated manifest of ``version`` from the source folder, cached like a download's.

    A cached copy made from another build of the same version (the folder was rebuilt)
    is removed first, so files verified against the old manifest are never served.
    """
    found = find_folder_release(settings, version)
    layout = CacheLayout(settings)
    path = layout.manifest_path(version)
    if path.is_file():
        try:
            cached = load_manifest(path)
        except ManifestError:
            cached = None
        if cached is not None and cached.raw.get("release", {}).get("digest") == found.digest:
            return cached
        _evict(layout, version)
    doc = dict(found.doc)
    doc["release"] = {
        "tag": found.release.tag,
        "published_at": found.release.published_at,
        "assets": {},
        "source": str(found.path),
        "digest": found.digest,
    }
    layout.write_json(path, doc)
    return load_manifest(path)


def _evict(layout: CacheLayout, version: str) -> None:
    """Remove the cached copy of a version whose release folder was rebuilt."""
    folder = layout.version_dir(version)
    # Renamed first: readers never see a half-removed version, and a crash leaves a
    # dot-folder that `bfa cache clean` removes.
    stale = folder.with_name(f".{folder.name}.stale-{os.getpid()}-{threading.get_ident()}")
    try:
        folder.rename(stale)
    except FileNotFoundError:
        return
    log.info("release folder's version %s changed since it was cached; caching it again", version)
    shutil.rmtree(stale, ignore_errors=True)


def asset_file(settings: Settings, manifest: Manifest, asset: str) -> Path:
    """The file of ``asset`` of ``manifest``'s version inside the source folder.

    Raises
    ------
    ManifestError
        The release folder lacks the file its manifest lists.
    """
    found = find_folder_release(settings, manifest.version)
    path = found.path / asset
    if not path.is_file():
        raise ManifestError(
            f"{path} is missing, though {found.path / MANIFEST_NAME} lists it; rebuild the "
            "release folder or copy it again",
            path=str(path),
            version=manifest.version,
        )
    return path
