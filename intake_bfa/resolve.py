"""Version resolution and manifests: "latest" -> a pinned version -> its validated manifest.

``"latest"`` costs no request while the cached pointer is younger than ``BFA_TTL``
and one conditional API request otherwise; offline, rate-limited or unreachable,
the last resolved version is served with a warning. A pinned version whose
manifest is cached costs no request at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import CacheLayout, atomic_write_json, read_ref, write_ref
from intake_bfa.config import Settings, get_settings
from intake_bfa.display.text import age as format_age
from intake_bfa.errors import (
    DownloadError,
    IntegrityError,
    ManifestError,
    NotCachedError,
    RateLimitError,
    VersionNotFoundError,
)
from intake_bfa.http import Advice, is_network_failure, open_url, safe_url
from intake_bfa.manifest import MANIFEST_NAME, Manifest, load_manifest, parse_manifest
from intake_bfa.releases import (
    ROLLING_DB_ASSETS,
    ROLLING_RANKINGS_ASSET,
    ROLLING_TAG,
    Release,
    fetch_releases,
    find_release,
)

log = logging.getLogger(__name__)

#: What to do when data is missing while offline on purpose (BFA_OFFLINE=1 or --offline).
OFFLINE_FIX = "unset BFA_OFFLINE (or drop --offline) and run again to download it"

_PINNED_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}|rolling-\d{8}T\d{6}Z)$")


def _fallback_latest(layout: CacheLayout, reason: str, cause: Exception | None) -> str:
    ref = read_ref(layout)
    if ref:
        age = format_age(time.time() - float(ref.get("resolved_at", 0)))
        log.warning(
            "%s; using cached latest version %s, resolved %s ago", reason, ref["version"], age
        )
        return ref["version"]
    cached = layout.cached_versions()
    if cached:
        log.warning("%s; using newest cached version %s", reason, cached[0])
        return cached[0]
    # The fix that fits: offline on purpose, or a server that could not be reached (whose
    # usual advice, "use cached data with BFA_OFFLINE=1", does not fit: nothing is cached).
    reason = reason.replace(f"; {Advice().unreachable}", "")
    fix = (
        OFFLINE_FIX
        if layout.settings.offline
        else "once the release server answers, run again to download it"
    )
    raise NotCachedError(
        f"{reason}, and no version of {layout.settings.repo} is cached in {layout.root}; {fix}",
        dataset=None,
        version="latest",
        cache_dir=str(layout.root),
    ) from cause


def pin(version: str = "latest", settings: Settings | None = None) -> Manifest:
    """The validated manifest of ``version``, "latest" resolved: the one resolution path.

    Every caller (datasets, ``bfa://``, queries, remote reads, the server) pins through
    here. A pinned version costs a file check (its manifest is parsed once per process
    and again only when the file is replaced); "latest" costs no request while the
    cached pointer is younger than ``BFA_TTL`` and one conditional API request otherwise.

    Parameters
    ----------
    version
        ``"latest"``, a date like ``"2026-11-20"``, a tag ``"data-2026-11-20"`` or a
        ``rolling-...`` version.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.

    Raises
    ------
    VersionNotFoundError
        Malformed or unpublished version.
    NotCachedError
        Offline (or unreachable) with nothing cached.
    """
    settings = settings or get_settings()
    if version != "latest":
        hit = _pinned.get((version, settings))
        if hit is not None and _identity(hit[0]) == hit[1]:
            return hit[2]
    pinned, release = resolve_release(version, settings)
    manifest = get_manifest(settings, pinned, release)
    if version != "latest":
        path = CacheLayout(settings).manifest_path(pinned)
        ident = _identity(path)
        if ident is not None:
            if len(_pinned) >= _PINNED_MEMO_SIZE:
                _pinned.clear()
            _pinned[(version, settings)] = (path, ident, manifest)
    return manifest


_PINNED_MEMO_SIZE = 256
#: Pinned versions already checked, by (version as asked, settings): the manifest path, its
#: identity when checked, and the manifest. A pin then costs one ``stat``; a replaced or
#: removed manifest (``bfa cache clear``) is checked again.
_pinned: dict[tuple[str, Settings], tuple[Path, tuple[int, int, int], Manifest]] = {}


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def resolve_version(version: str = "latest", *, settings: Settings | None = None) -> str:
    """Turn ``version`` into a concrete, pinned version string.

    ``"latest"`` costs no request while the cached pointer is younger than the TTL,
    and at most one conditional API request otherwise. A pinned version is
    returned as given (after validation), without any request.

    Raises
    ------
    VersionNotFoundError
        For a malformed version, or when the repository has no dataset release.
    NotCachedError
        When offline (or the network fails) and nothing is cached.
    """
    return resolve_release(version, settings or get_settings())[0]


def resolve_release(version: str, settings: Settings) -> tuple[str, Release | None]:
    """Like :func:`resolve_version`, also returning the release when it was just listed."""
    if version != "latest":
        return _check_pinned(version), None
    layout = CacheLayout(settings)
    ref = read_ref(layout)
    if ref and time.time() - float(ref.get("resolved_at", 0)) < settings.ttl:
        return ref["version"], None
    if settings.offline:
        return _fallback_latest(layout, "offline (BFA_OFFLINE=1)", None), None
    try:
        releases = fetch_releases(settings, layout)
    except DownloadError as err:
        # Stale data beats no data when the server is unreachable or rate-limits us.
        if isinstance(err, RateLimitError) and (read_ref(layout) or layout.cached_versions()):
            return _fallback_latest(layout, f"rate-limited ({err})", err), None
        if not is_network_failure(err):
            raise
        return _fallback_latest(layout, f"cannot reach the release server ({err})", err), None
    if not releases:
        raise VersionNotFoundError(
            f"repository {settings.repo} has no dataset releases (no data-YYYY-MM-DD tag with "
            f"a manifest, and no rolling '{ROLLING_TAG}' release); check BFA_REPO",
            repo=settings.repo,
            version="latest",
            available=[],
        )
    newest = releases[0]
    write_ref(layout, newest.version, tag=newest.tag, release_layout=newest.layout)
    return newest.version, newest


def _check_pinned(version: str) -> str:
    if isinstance(version, str) and version.startswith("data-"):
        version = version[5:]  # accept the tag name too
    if not isinstance(version, str) or not _PINNED_RE.match(version):
        raise VersionNotFoundError(
            f"{version!r} is not a dataset version; use 'latest', a date like 2026-11-20, "
            "or a name from `bfa versions`",
            version=version,
            available=[],
        )
    if version[0].isdigit():
        try:
            dt.date.fromisoformat(version)
        except ValueError:
            raise VersionNotFoundError(
                f"{version!r} is not a valid date; versions look like 2026-11-20",
                version=version,
                available=[],
            ) from None
    return version


def _read_small(url: str, settings: Settings, limit: int = 16 << 20) -> bytes:
    with open_url(url, settings, headers={"Accept": "application/octet-stream"}) as resp:
        body = resp.stream.read(limit + 1)
    if len(body) > limit:
        raise ManifestError(f"{safe_url(url)}: manifest larger than {limit} bytes", source=url)
    return body


def synthesize_rolling(release: Release) -> dict[str, Any]:
    """The manifest equivalent of a rolling-layout release (no manifest asset of its own)."""
    db_name = next(n for n in ROLLING_DB_ASSETS if n in release.assets)
    db = release.assets[db_name]
    datasets: dict[str, Any] = {
        "availability_db": {
            "asset": db_name,
            "size": db.size,
            "sha256": db.sha256,
            "compression": "gzip" if db_name.endswith(".gz") else None,
        },
        "daily_availability": {"derived_from": "availability_db"},
        "symbols": {"derived_from": "availability_db"},
    }
    rankings = release.assets.get(ROLLING_RANKINGS_ASSET)
    if rankings:
        datasets["volume_rankings"] = {
            "asset": rankings.name,
            "size": rankings.size,
            "sha256": rankings.sha256,
        }
    return {
        "schema_version": 1,
        "version": release.version,
        "layout": "rolling",
        "created_at": db.updated_at,
        "datasets": datasets,
    }


def get_manifest(settings: Settings, version: str, release: Release | None = None) -> Manifest:
    """The validated manifest of a pinned ``version``; no request when it is cached.

    ``release`` (from :func:`resolve_release`) saves looking the release up again.
    """
    layout = CacheLayout(settings)
    path = layout.manifest_path(version)
    if path.is_file():
        return load_manifest(path)
    if settings.offline:
        raise NotCachedError(
            f"version {version} of {settings.repo} is not cached in {layout.root} and "
            f"BFA_OFFLINE=1; {OFFLINE_FIX}",
            dataset=None,
            version=version,
            cache_dir=str(layout.root),
        )
    if release is None or release.version != version:
        release = find_release(settings, layout, version)
    if release.layout == "rolling":
        doc = synthesize_rolling(release)
    else:
        asset = release.assets[MANIFEST_NAME]
        body = _read_small(asset.download_url, settings)
        if asset.sha256:
            actual = hashlib.sha256(body).hexdigest()
            if actual != asset.sha256:
                raise IntegrityError(
                    f"sha256 mismatch for {MANIFEST_NAME} of {version}: expected "
                    f"{asset.sha256}, got {actual}; nothing was cached",
                    url=safe_url(asset.download_url),
                    expected=asset.sha256,
                    actual=actual,
                )
        try:
            doc = json.loads(body)
        except ValueError:
            raise ManifestError(
                f"{MANIFEST_NAME} of release {release.tag} is not valid JSON; the release is "
                "malformed, report it to its publisher or pin another version",
                source=safe_url(asset.download_url),
            ) from None
    manifest = parse_manifest(doc, source=f"{settings.repo}@{release.tag}/{MANIFEST_NAME}")
    if manifest.version != version:
        raise ManifestError(
            f"manifest of {release.tag} says version {manifest.version!r}, expected {version!r}",
            source=release.tag,
        )
    for entry in manifest.datasets.values():
        if entry.asset and entry.asset not in release.assets:
            raise ManifestError(
                f"manifest of {release.tag} lists asset {entry.asset!r} that the release lacks",
                source=release.tag,
                asset=entry.asset,
            )
    # Remember where each asset downloads from, so later fetches need no API call.
    doc = dict(doc)
    doc["release"] = {
        "tag": release.tag,
        "published_at": release.published_at,
        "assets": {
            n: {"download_url": a.download_url, "api_url": a.api_url}
            for n, a in release.assets.items()
        },
    }
    layout.ensure(path.parent)
    atomic_write_json(path, doc)
    return load_manifest(path)
