"""Version resolution and manifests: "latest" -> a pinned version -> its validated manifest.

``"latest"`` costs no request while the cached pointer is younger than ``BFA_TTL``
and one conditional API request otherwise; offline, rate-limited or unreachable,
the last resolved version is served with a warning. A pinned version whose
manifest is cached costs no request at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import time
from pathlib import Path

from intake_bfa.cache.layout import CacheLayout, read_ref, write_ref
from intake_bfa.config import Settings, get_settings
from intake_bfa.display.text import age as format_age
from intake_bfa.errors import (
    CacheError,
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
    ROLLING_TAG,
    Release,
    VersionInfo,
    VersionList,
    fetch_releases,
    find_release,
    synthesize_rolling,
)
from intake_bfa.untrusted import loads_json

log = logging.getLogger(__name__)

#: What to do when data is missing while offline on purpose (BFA_OFFLINE=1 or --offline).
OFFLINE_FIX = "unset BFA_OFFLINE (or drop --offline) and run again to download it"

# ASCII digits only ("\d" matches "２"), and nothing after the version (not even "\n").
_PINNED_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|rolling-[0-9]{8}T[0-9]{6}Z")


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
    if settings.source is not None:
        # A folder may be rebuilt under the same version: its manifest is checked each time.
        from intake_bfa.local_source import folder_manifest

        return folder_manifest(settings, resolve_release(version, settings)[0])
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
    if settings.source is not None:
        from intake_bfa.local_source import no_release_error, source_releases

        # A local folder costs a scan, not a request: "latest" is always its newest release.
        found = source_releases(settings.source)
        if not found:
            raise no_release_error(settings)
        return found[0].version, found[0].release
    layout = CacheLayout(settings)
    ref = read_ref(layout)
    if ref and time.time() - float(ref.get("resolved_at", 0)) < settings.ttl:
        return ref["version"], None
    if settings.offline:
        return _fallback_latest(layout, "offline (BFA_OFFLINE=1)", None), None
    try:
        # A silent or stalled API must not hold the caller for minutes of retries: past
        # BFA_RESOLVE_TIMEOUT this fails as a network failure, so the cache is served.
        deadline = time.monotonic() + settings.resolve_timeout
        releases = fetch_releases(settings, layout, deadline=deadline)
    except DownloadError as err:
        # Stale data beats no data when the server is unreachable, rate-limits us or is slow.
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
    try:
        write_ref(layout, newest.version, tag=newest.tag, release_layout=newest.layout)
    except CacheError as err:
        if err.kind != "read_only":
            raise
        return _read_only_latest(layout, newest, err)
    return newest.version, newest


#: (cache root, version) pairs already warned about: a long-lived process that resolves
#: "latest" again and again past the TTL says it once.
_warned_read_only: set[tuple[str, str]] = set()


def _read_only_latest(
    layout: CacheLayout, newest: Release, err: CacheError
) -> tuple[str, Release | None]:
    """Resolve "latest" when its pointer cannot be written (a read-only cache): keep serving.

    The version just listed if it is cached; else (a release newer than the cache) the one
    the old pointer names, or the newest cached one. With nothing cached there is nothing
    to serve: ``err`` is raised.
    """
    version, release = newest.version, newest
    if not layout.manifest_path(newest.version).is_file():
        ref = read_ref(layout)
        if ref and layout.manifest_path(ref["version"]).is_file():
            version, release = ref["version"], None
        elif layout.cached_versions():
            version, release = layout.cached_versions()[0], None
        else:
            raise err
    newer = f" (the newer {newest.version} cannot be cached there)" if release is None else ""
    key = (str(layout.root), version)
    level = logging.DEBUG if key in _warned_read_only else logging.WARNING
    _warned_read_only.add(key)
    log.log(
        level,
        "could not refresh 'latest' in read-only cache %s (Errno %s: %s); serving version %s%s",
        layout.root,
        err.errno,
        err.strerror,
        version,
        newer,
    )
    return version, release


def _check_pinned(version: str) -> str:
    if isinstance(version, str) and version.startswith("data-"):
        version = version[5:]  # accept the tag name too
    if not isinstance(version, str) or not _PINNED_RE.fullmatch(version):
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


def get_manifest(settings: Settings, version: str, release: Release | None = None) -> Manifest:
    """The validated manifest of a pinned ``version``; no request when it is cached.

    ``release`` (from :func:`resolve_release`) saves looking the release up again.
    """
    if settings.source is not None:
        from intake_bfa.local_source import folder_manifest

        return folder_manifest(settings, version)
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
            doc = loads_json(body)
        except ValueError as err:
            raise ManifestError(
                f"{MANIFEST_NAME} of release {release.tag} ({safe_url(asset.download_url)}) "
                f"is not valid JSON ({err}); the release is malformed, report it to its "
                "publisher or pin another version",
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
    layout.write_json(path, doc)  # CacheError when the cache cannot take it
    return load_manifest(path)


def list_versions(*, settings: Settings | None = None, repo: str | None = None) -> VersionList:
    """Every dataset version of the repository, newest first, with coverage and size.

    Offline, lists the cached versions instead; with a release folder as the source
    (``BFA_SOURCE``), the releases in that folder.

    Parameters
    ----------
    settings
        Configuration; default :func:`get_settings` (with ``repo`` if given).
    repo
        Shortcut for ``get_settings(repo=...)``.
    """
    settings = settings or get_settings(repo=repo)
    layout = CacheLayout(settings)
    cached = set(layout.cached_versions())
    if settings.source is not None:
        from intake_bfa.local_source import no_release_error, source_releases

        releases = [found.release for found in source_releases(settings.source)]
        if not releases:
            raise no_release_error(settings)
    elif settings.offline:
        rows = []
        for version in sorted(cached, reverse=True):
            m = load_manifest(layout.manifest_path(version))
            tag = m.raw.get("release", {}).get("tag", version)
            rows.append(_info_from_manifest(m, tag, version in cached, not rows))
        return VersionList(rows)
    else:
        releases = fetch_releases(settings, layout)
    rows = []
    for i, rel in enumerate(releases):
        cov = rel.meta.get("coverage") or {}
        rows_count = rel.meta.get("rows")
        if rel.version in cached and not cov:
            m = load_manifest(layout.manifest_path(rel.version))
            cov = {"start": m.coverage[0], "end": m.coverage[1]} if m.coverage else {}
        rows.append(
            VersionInfo(
                version=rel.version,
                tag=rel.tag,
                layout=rel.layout,
                published_at=rel.published_at,
                coverage_start=cov.get("start"),
                coverage_end=cov.get("end"),
                rows=rows_count,
                size=rel.size,
                cached=rel.version in cached,
                latest=i == 0,
            )
        )
    return VersionList(rows)


def _info_from_manifest(m: Manifest, tag: str, cached: bool, latest: bool) -> VersionInfo:
    main = m.datasets.get("daily_availability")
    return VersionInfo(
        version=m.version,
        tag=tag,
        layout=m.layout,
        published_at=m.raw.get("release", {}).get("published_at"),
        coverage_start=m.coverage[0] if m.coverage else None,
        coverage_end=m.coverage[1] if m.coverage else None,
        rows=main.rows if main else None,
        size=m.total_size,
        cached=cached,
        latest=latest,
    )
