"""GitHub releases -> dataset versions: list, detect the layout, resolve "latest", get manifests.

Two release layouts are understood without the user saying which:

* **dated** (this project's): immutable tags ``data-YYYY-MM-DD`` with a
  ``manifest.json`` asset; the version is the date.
* **rolling** (the public project's today): one tag ``latest`` re-uploaded daily
  with ``availability.duckdb.gz`` and ``volume-rankings-timeseries.parquet``; the
  version is ``rolling-<UTC time of the newest upload>``.

When a repository has both, dated versions win.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from intake_bfa.cache.layout import CacheLayout, read_json
from intake_bfa.config import Settings
from intake_bfa.errors import (
    CacheError,
    DownloadError,
    ManifestError,
    RepoNotFoundError,
    VersionNotFoundError,
    nearest,
)
from intake_bfa.http import api_get_json, safe_url
from intake_bfa.manifest import MANIFEST_NAME, check_asset_name
from intake_bfa.untrusted import loads_json

log = logging.getLogger(__name__)

# ASCII digits only: "\d" matches "２" too, and such a version breaks every URL it enters.
DATED_TAG_RE = re.compile(r"^data-([0-9]{4}-[0-9]{2}-[0-9]{2})\Z")
#: The start of an API timestamp (``2026-11-20T06:00:00Z``), which a rolling version is made of.
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_DATE_ONLY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ROLLING_TAG = "latest"
ROLLING_DB_ASSETS = ("availability.duckdb.gz", "availability.duckdb")
ROLLING_RANKINGS_ASSET = "volume-rankings-timeseries.parquet"


def missing_dataset_note(release_layout: str, dataset: str) -> str:
    """Why a release may lack ``dataset``, naming the asset it would come from."""
    if release_layout == "rolling" and dataset == "volume_rankings":
        # The upstream workflow's rankings step may fail on its own (continue-on-error).
        return f"the rolling release has no {ROLLING_RANKINGS_ASSET} asset"
    if release_layout == "rolling" and dataset == "availability_events":
        return "the rolling layout publishes no event history"
    return "its manifest does not list it"


_META_RE = re.compile(r"<!--\s*bfa-metadata:\s*(\{.*?\})\s*-->", re.S)


@dataclass(frozen=True)
class Asset:
    """A release asset as the API lists it."""

    name: str
    size: int
    sha256: str | None
    download_url: str
    api_url: str
    updated_at: str


@dataclass(frozen=True)
class Release:
    """A release that holds a dataset version."""

    version: str
    tag: str
    layout: str
    published_at: str | None
    assets: dict[str, Asset]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Total bytes of the release's assets."""
        return sum(a.size for a in self.assets.values())


@dataclass(frozen=True)
class VersionInfo:
    """One row of :func:`list_versions`."""

    version: str
    tag: str
    layout: str
    published_at: str | None
    coverage_start: str | None
    coverage_end: str | None
    rows: int | None
    size: int
    cached: bool
    latest: bool


class VersionList(list):
    """What :func:`list_versions` returns: a plain list of :class:`VersionInfo`, with a
    compact terminal repr and a notebook table (see :mod:`intake_bfa.display.notebook`)."""

    def _repr_html_(self) -> str:
        from intake_bfa.display.tables import versions_html

        return versions_html(self)

    def __repr__(self) -> str:
        from intake_bfa.display.tables import versions_text

        return versions_text(self)


def release_body_metadata(meta: dict[str, Any]) -> str:
    """Machine-readable metadata a publisher embeds in a release body (coverage, rows)."""
    return f"<!-- bfa-metadata: {json.dumps(meta, sort_keys=True)} -->"


def _body_meta(body: str | None) -> dict[str, Any]:
    """The metadata a publisher embedded in a release body; what is malformed is left out.

    It only saves reading manifests for ``bfa versions``, so a bad value is dropped (and
    logged), never an error.
    """
    match = _META_RE.search(body or "")
    if not match:
        return {}
    try:
        meta = loads_json(match.group(1))
    except ValueError as err:
        log.debug("ignoring release body metadata: %s", err)
        return {}
    if not isinstance(meta, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, value in meta.items():
        if key == "coverage":
            ok = (
                isinstance(value, dict)
                and all(isinstance(value.get(k), str) for k in ("start", "end"))
                and all(_DATE_ONLY_RE.fullmatch(value[k]) for k in ("start", "end"))
            )
        elif key == "rows":
            ok = value is None or (type(value) is int and value >= 0)
        elif key == "synthetic":
            ok = isinstance(value, bool)
        else:
            ok = True
        if ok:
            kept[key] = value
        else:
            log.debug("ignoring release body metadata %s=%r", key, value)
    return kept


def _malformed(source: str, field: str, message: str, **context: Any) -> ManifestError:
    return ManifestError(
        f"{source}: {field} {message}; the release is malformed, report it to its publisher",
        source=source,
        field=field,
        **context,
    )


def _optional(raw: dict[str, Any], key: str, kind: type, source: str) -> Any:
    """``raw[key]`` if absent, None or a ``kind`` (a bool is no int); else a ManifestError."""
    value = raw.get(key)
    if value is None or (isinstance(value, kind) and not (kind is int and type(value) is bool)):
        return value
    raise _malformed(
        source, key, f"must be {kind.__name__}, got {type(value).__name__} {value!r:.60}"
    )


def _parse_asset(raw: Any, where: str) -> Asset | None:
    """One asset of a release; None (with a warning) if its name is unsafe.

    Raises
    ------
    ManifestError
        The asset is not an object or a field has the wrong type or range.
    """
    if not isinstance(raw, dict):
        raise _malformed(where, "asset", f"must be an object, got {type(raw).__name__}")
    try:
        name = check_asset_name(raw.get("name"), f"{where}.name")
    except ManifestError as err:
        log.warning("skipping release asset: %s", err)
        return None
    where = f"{where} ({name!r})"
    size = _optional(raw, "size", int, where)
    if size is not None and size < 0:
        raise _malformed(where, "size", f"must not be negative, got {size}")
    digest = _optional(raw, "digest", str, where) or ""
    sha = digest[7:].lower() if digest.startswith("sha256:") else None
    stamp = _optional(raw, "updated_at", str, where) or _optional(raw, "created_at", str, where)
    return Asset(
        name=name,
        size=size or 0,
        sha256=sha,
        download_url=_optional(raw, "browser_download_url", str, where) or "",
        api_url=_optional(raw, "url", str, where) or "",
        updated_at=stamp or "",
    )


def parse_release(raw: Any, *, source: str = "release") -> Release | None:
    """Turn one API release object into a :class:`Release`, or None if it holds no dataset.

    Parameters
    ----------
    raw
        The release as the API answers it.
    source
        Where it comes from (URL, and position in a list), for messages.

    Returns
    -------
    Release or None
        None for drafts, prereleases and releases of no layout of ours.

    Raises
    ------
    ManifestError
        The release is not an object, or a field has the wrong type or range (``tag_name``
        not a string, ``assets`` not a list, an asset's ``size`` not an integer...); the
        message names the field and ``source``.
    """
    if not isinstance(raw, dict):
        raise _malformed(source, "release", f"must be an object, got {type(raw).__name__}")
    tag = raw.get("tag_name")
    if not isinstance(tag, str):
        raise _malformed(source, "tag_name", f"must be a string, got {tag!r:.60}")
    source = f"{source} (tag {tag!r:.80})"
    if _optional(raw, "draft", bool, source) or _optional(raw, "prerelease", bool, source):
        return None
    body = _optional(raw, "body", str, source)
    published_at = _optional(raw, "published_at", str, source)
    raw_assets = _optional(raw, "assets", list, source) or []
    assets = {}
    for i, raw_asset in enumerate(raw_assets):
        asset = _parse_asset(raw_asset, f"{source}: assets[{i}]")
        if asset is not None:
            assets[asset.name] = asset
    dated = DATED_TAG_RE.match(tag)
    if dated and MANIFEST_NAME in assets:
        layout, version = "dated", dated.group(1)
    elif tag == ROLLING_TAG and any(n in assets for n in ROLLING_DB_ASSETS):
        layout = "rolling"
        stamps = []
        for name in ROLLING_DB_ASSETS:
            if name in assets:
                stamp = assets[name].updated_at
                if not _TIMESTAMP_RE.match(stamp):
                    raise _malformed(
                        f"{source}: asset {name!r}",
                        "updated_at",
                        f"must be a timestamp like 2026-11-20T06:00:00Z, got {stamp!r:.60}",
                    )
                stamps.append(stamp)
        stamp = max(stamps).replace("-", "").replace(":", "")
        version = f"rolling-{stamp[:15]}Z"
    else:
        return None
    return Release(
        version=version,
        tag=tag,
        layout=layout,
        published_at=published_at,
        assets=assets,
        meta=_body_meta(body),
    )


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


def fetch_releases(
    settings: Settings, layout: CacheLayout, *, deadline: float | None = None
) -> list[Release]:
    """Dataset releases of the repository, newest first, in one conditional API request.

    A malformed release in the list (not an object, a field of the wrong type) is skipped
    with a warning naming its position, tag and field, so it cannot hide the others.

    ``deadline`` (absolute :func:`time.monotonic` time) bounds the request, retries
    included; see :func:`intake_bfa.http.api_get_json`.
    """
    cached = read_json(layout.releases_path) or {}
    etag = cached.get("etag") if isinstance(cached.get("releases"), list) else None
    path = f"/repos/{settings.repo}/releases?per_page=100"
    status, data, new_etag = api_get_json(settings, path, etag=etag, deadline=deadline)
    if status == 404:
        raise RepoNotFoundError(
            f"repository {settings.repo!r} not found at {safe_url(settings.api_url)} (404); "
            "check BFA_REPO (owner/name), BFA_API_URL, and GITHUB_TOKEN for private repos",
            repo=settings.repo,
            url=safe_url(settings.api_url + path),
        )
    if status == 304:
        raw_list = cached["releases"]
    else:
        if not isinstance(data, list):
            raise DownloadError(
                f"{safe_url(settings.api_url + path)} did not answer a release list",
                url=safe_url(settings.api_url + path),
                status=status,
            )
        raw_list = data
        try:
            layout.write_json(
                layout.releases_path,
                {"etag": new_etag, "fetched_at": time.time(), "releases": raw_list},
            )
        except CacheError as err:
            # The stored list only saves the next request's body (ETag): a read-only cache
            # still serves. Callers that must write (the "latest" pointer) say so once.
            if err.kind != "read_only":
                raise
            log.debug("release list not stored: %s", err)
    releases = []
    where = safe_url(settings.api_url + path)
    for i, raw in enumerate(raw_list):
        # One malformed release must not hide the good ones: it is skipped, and said so.
        try:
            release = parse_release(raw, source=f"{where} [{i}]")
        except ManifestError as err:
            log.warning("skipping release: %s", err)
            continue
        if release is not None:
            releases.append(release)
    # Dated versions first (newest date first), then the rolling one.
    return sorted(releases, key=lambda r: (r.layout == "dated", r.version), reverse=True)


def _not_found(settings: Settings, version: str, releases: list[Release]) -> VersionNotFoundError:
    names = [r.version for r in releases]
    close = nearest(version, names)
    hint = f"nearest available: {', '.join(close)}" if close else "the repository has none"
    extra = ""
    if version.startswith("rolling-"):
        extra = " (a rolling release is replaced daily; only its newest upload can be fetched)"
    return VersionNotFoundError(
        f"version {version} not found in {settings.repo}{extra}; {hint}. "
        "See `bfa versions` for the full list",
        version=version,
        repo=settings.repo,
        available=names,
        nearest=close,
    )


def find_release(
    settings: Settings, layout: CacheLayout, version: str, *, deadline: float | None = None
) -> Release:
    """The release holding ``version`` (one API request for a dated version).

    ``deadline`` (absolute :func:`time.monotonic` time) bounds the lookup, retries
    included; see :func:`intake_bfa.http.api_get_json`.

    Raises
    ------
    ManifestError
        The API's release for that tag is malformed (the message names the field); in a
        release *list*, a malformed release is skipped with a warning instead.
    VersionNotFoundError
        No release holds ``version``.
    """
    if DATED_TAG_RE.match(f"data-{version}"):
        path = f"/repos/{settings.repo}/releases/tags/data-{version}"
        status, data, _ = api_get_json(settings, path, deadline=deadline)
        if status == 200:
            # The release asked for: malformed, it is an error naming the field.
            release = parse_release(data, source=safe_url(settings.api_url + path))
            if release and release.version == version:
                return release
    releases = fetch_releases(settings, layout, deadline=deadline)
    for release in releases:
        if release.version == version:
            return release
    raise _not_found(settings, version, releases)
