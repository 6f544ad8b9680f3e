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

log = logging.getLogger(__name__)

DATED_TAG_RE = re.compile(r"^data-(\d{4}-\d{2}-\d{2})$")
ROLLING_TAG = "latest"
ROLLING_DB_ASSETS = ("availability.duckdb.gz", "availability.duckdb")
ROLLING_RANKINGS_ASSET = "volume-rankings-timeseries.parquet"


def missing_dataset_note(release_layout: str, dataset: str) -> str:
    """Why a release may lack ``dataset``, naming the asset it would come from."""
    if release_layout == "rolling" and dataset == "volume_rankings":
        # The upstream workflow's rankings step may fail on its own (continue-on-error).
        return f"the rolling release has no {ROLLING_RANKINGS_ASSET} asset"
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
    match = _META_RE.search(body or "")
    if not match:
        return {}
    try:
        meta = json.loads(match.group(1))
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _parse_asset(raw: dict[str, Any]) -> Asset | None:
    try:
        name = check_asset_name(raw["name"], "release asset")
    except (KeyError, ManifestError):
        log.warning("skipping release asset with unsafe name %r", raw.get("name"))
        return None
    digest = raw.get("digest") or ""
    sha = digest[7:].lower() if digest.startswith("sha256:") else None
    return Asset(
        name=name,
        size=int(raw.get("size") or 0),
        sha256=sha,
        download_url=raw.get("browser_download_url", ""),
        api_url=raw.get("url", ""),
        updated_at=raw.get("updated_at") or raw.get("created_at") or "",
    )


def parse_release(raw: dict[str, Any]) -> Release | None:
    """Turn one API release object into a :class:`Release`, or None if it holds no dataset."""
    if raw.get("draft") or raw.get("prerelease"):
        return None
    tag = raw.get("tag_name") or ""
    assets = {a.name: a for a in map(_parse_asset, raw.get("assets") or []) if a}
    dated = DATED_TAG_RE.match(tag)
    if dated and MANIFEST_NAME in assets:
        layout, version = "dated", dated.group(1)
    elif tag == ROLLING_TAG and any(n in assets for n in ROLLING_DB_ASSETS):
        layout = "rolling"
        stamps = [a.updated_at for n, a in assets.items() if n in (*ROLLING_DB_ASSETS,)]
        stamp = max(stamps).replace("-", "").replace(":", "")
        version = f"rolling-{stamp[:15]}Z" if len(stamp) >= 15 else "rolling-00000000T000000Z"
    else:
        return None
    return Release(
        version=version,
        tag=tag,
        layout=layout,
        published_at=raw.get("published_at"),
        assets=assets,
        meta=_body_meta(raw.get("body")),
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
    releases = [r for r in map(parse_release, raw_list) if r]
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
    """
    if DATED_TAG_RE.match(f"data-{version}"):
        status, data, _ = api_get_json(
            settings, f"/repos/{settings.repo}/releases/tags/data-{version}", deadline=deadline
        )
        if status == 200 and isinstance(data, dict):
            release = parse_release(data)
            if release and release.version == version:
                return release
    releases = fetch_releases(settings, layout, deadline=deadline)
    for release in releases:
        if release.version == version:
            return release
    raise _not_found(settings, version, releases)
