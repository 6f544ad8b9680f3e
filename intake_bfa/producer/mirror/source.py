"""What ``bfa mirror sync`` copies: a built release folder, or a published version.

A release folder (``bfa build``'s output, before ``bfa publish``) can still change, so the sync
can make it list the mirror: each manifest asset entry gets ``urls`` with the asset's public
mirror URL and ``catalog.yaml`` gets the ``mirrors`` template. Only ``manifest.json`` and
``catalog.yaml`` change; no other file records their hashes (the manifest lists the dataset
assets, which stay byte for byte; ``RELEASE_NOTES.md`` and ``validation.json`` describe those
assets only), so the folder stays consistent for ``bfa publish``.

A published version is immutable: its files are fetched through the verified download path
(the cache for plain assets; a staging folder for compressed ones, whose cache copy is
decompressed), only when an upload needs their bytes.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import CacheLayout, atomic_write_bytes
from intake_bfa.config import Settings
from intake_bfa.errors import ConfigError, ManifestError
from intake_bfa.manifest import MANIFEST_NAME, check_asset_name, parse_manifest
from intake_bfa.producer.build import sha256_file
from intake_bfa.producer.release_folder import CATALOG_NAME, read_release_dir
from intake_bfa.releases import Asset

log = logging.getLogger(__name__)


@dataclass
class SourceFile:
    """One release file to mirror: its expected size and sha256, and where its bytes are.

    Attributes
    ----------
    name
        Release asset name (and object name on the mirror).
    size, sha256
        Expected bytes (sha256 None: not published; fetched to learn it).
    path
        Local verified copy, if at hand.
    fetch
        Makes a verified local copy on demand (published versions).
    pending
        New bytes for ``path`` (a release folder's manifest or catalog listing the mirror),
        written only once every asset is on the mirror.
    """

    name: str
    size: int | None
    sha256: str | None
    path: Path | None = None
    fetch: Callable[[], Path] | None = None
    pending: bytes | None = None

    def local(self) -> Path:
        """The verified local copy (fetched on first use), with pending bytes written."""
        if self.path is None and self.fetch is not None:
            self.path = self.fetch()
        if self.path is None:
            raise ManifestError(f"no local copy of {self.name}", asset=self.name)
        if self.pending is not None:
            atomic_write_bytes(self.path, self.pending)
            self.pending = None
        if self.sha256 is None or self.size is None:
            self.size, self.sha256 = self.path.stat().st_size, sha256_file(self.path)
        return self.path

    def expect(self) -> tuple[int, str]:
        """``(size, sha256)``, fetching the file only when they are not published."""
        if self.size is None or self.sha256 is None:
            self.local()
        assert self.size is not None and self.sha256 is not None
        return self.size, self.sha256

    def replace(self, data: bytes) -> None:
        """Plan new content (written by :meth:`local`)."""
        import hashlib

        self.pending, self.size, self.sha256 = data, len(data), hashlib.sha256(data).hexdigest()


@dataclass
class MirrorSource:
    """A release to mirror: its files in upload order, ``manifest.json`` last."""

    label: str
    version: str
    tag: str
    files: dict[str, SourceFile]
    manifest: dict[str, Any]
    folder: Path | None = None  # a release folder (may list the mirror); None: published


def from_release_dir(release_dir: str | Path) -> MirrorSource:
    """A built release folder, checked like ``bfa publish`` checks it."""
    local = read_release_dir(release_dir)
    files = {
        name: SourceFile(name, f.size, f.sha256, path=Path(f.path))
        for name, f in local.assets.items()
    }
    return MirrorSource(
        str(release_dir), local.version, local.tag, files, local.manifest, Path(release_dir)
    )


@contextmanager
def from_published(version: str, settings: Settings) -> Iterator[MirrorSource]:
    """A published dated version of ``settings.repo`` (``"latest"`` resolved first).

    Nothing is downloaded until a file's bytes are needed; a staging folder for compressed
    assets (under the version's cache folder, named like every cache leftover) is removed on
    exit.
    """
    from intake_bfa.datasets import ensure_local
    from intake_bfa.fetch import download
    from intake_bfa.releases import find_release
    from intake_bfa.resolve import get_manifest, resolve_release

    pinned, _ = resolve_release(version, settings)
    layout = CacheLayout(settings)
    release = find_release(settings, layout, pinned)
    if release.layout != "dated" or MANIFEST_NAME not in release.assets:
        raise ConfigError(
            f"{settings.repo} version {pinned} is a {release.layout}-layout release; only dated "
            "releases (data-YYYY-MM-DD, with a manifest) can be mirrored",
            variable="version",
            value=version,
        )
    manifest = get_manifest(settings, pinned, release)
    staging: list[Path] = []

    def fetch_raw(asset: Asset, size: int | None, sha256: str | None, extra=()) -> Path:
        if not staging:
            folder = layout.ensure(layout.version_dir(pinned))
            staging.append(Path(tempfile.mkdtemp(prefix=".mirror-", dir=folder)))
        urls = [asset.download_url, *([asset.api_url] if settings.token else []), *extra]
        return download(urls, staging[0] / asset.name, settings, size=size, sha256=sha256)

    def fetcher(key: str, raw: dict[str, Any]) -> Callable[[], Path]:
        entry, asset = manifest.datasets.get(key), release.assets[raw["asset"]]
        if entry is not None and not entry.compression and not entry.derived_from:
            return lambda: ensure_local(settings, manifest, key)  # the cache file is the asset
        return lambda: fetch_raw(asset, raw.get("size"), raw.get("sha256"), raw.get("urls") or ())

    files: dict[str, SourceFile] = {}
    for key, raw in sorted(manifest.raw["datasets"].items()):
        if isinstance(raw, dict) and raw.get("asset"):
            name = check_asset_name(raw["asset"], f"{release.tag}: dataset {key!r}")
            if name not in release.assets:
                raise ManifestError(f"{release.tag} lacks asset {name!r}", asset=name)
            files[name] = SourceFile(name, raw.get("size"), raw.get("sha256"))
            files[name].fetch = fetcher(key, raw)
    for name in (CATALOG_NAME, MANIFEST_NAME):
        if name in release.assets:
            a = release.assets[name]
            files[name] = SourceFile(name, a.size, a.sha256)
            files[name].fetch = lambda a=a: fetch_raw(a, a.size, a.sha256)
    doc = {k: v for k, v in manifest.raw.items() if k != "release"}
    try:
        yield MirrorSource(f"{settings.repo}@{release.tag}", pinned, release.tag, files, doc)
    finally:
        for folder in staging:
            shutil.rmtree(folder, ignore_errors=True)


# --- listing the mirror in a release folder -----------------------------------------------


def listed_manifest(manifest: dict[str, Any], public: Callable[[str], str]) -> dict[str, Any]:
    """``manifest`` with each asset's mirror URL (``public(asset)``) in its ``urls``."""
    doc = json.loads(json.dumps(manifest))
    for entry in doc["datasets"].values():
        if isinstance(entry, dict) and entry.get("asset"):
            url = public(entry["asset"])
            urls = [u for u in entry.get("urls") or [] if u != url]
            entry["urls"] = [*urls, url]
    return doc


def listed_catalog(text: str, template: str) -> str:
    """A release ``catalog.yaml`` with ``template`` among every data entry's ``mirrors``."""
    import yaml

    from intake_bfa.config import check_mirrors

    check_mirrors([template], "public_url")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise ManifestError("catalog.yaml has no 'data' section; rebuild the release folder")
    for item in doc["data"].values():
        kwargs = item.setdefault("kwargs", {}) if isinstance(item, dict) else None
        if isinstance(kwargs, dict) and "dataset" in kwargs:
            kwargs["mirrors"] = [m for m in kwargs.get("mirrors") or [] if m != template]
            kwargs["mirrors"].append(template)
    header = []  # keep the generated file's leading comment
    for line in text.splitlines(True):
        if not line.startswith("#"):
            break
        header.append(line)
    return "".join(header) + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def plan_listing(source: MirrorSource, public: Callable[[str], str], template: str) -> list[str]:
    """Plan the folder's manifest and catalog listing the mirror; names that change."""
    changed = []
    manifest = source.files[MANIFEST_NAME]
    doc = listed_manifest(source.manifest, public)
    parse_manifest(doc, source=f"{source.label}/{MANIFEST_NAME}")  # still a valid manifest
    if doc != source.manifest:
        manifest.replace(json.dumps(doc, indent=1).encode())
        source.manifest = doc
        changed.append(MANIFEST_NAME)
    catalog = source.files.get(CATALOG_NAME)
    if catalog is not None and catalog.path is not None:
        text = catalog.path.read_text(encoding="utf-8")
        new = listed_catalog(text, template)
        if new != text:
            catalog.replace(new.encode())
            changed.insert(0, CATALOG_NAME)
    return changed
