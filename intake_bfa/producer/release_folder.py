"""A built release folder, read and checked before publishing.

Every asset ``manifest.json`` lists must exist with the size and sha256 it records;
``catalog.yaml`` and ``changes.json`` are published too when present, ``RELEASE_NOTES.md`` becomes the release
notes, and ``manifest.json`` is always uploaded last (a release without it is incomplete
to consumers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake_bfa.errors import ManifestError, PublishError
from intake_bfa.manifest import MANIFEST_NAME, check_asset_name, parse_manifest
from intake_bfa.producer.build import sha256_file
from intake_bfa.producer.github_write import LocalFile
from intake_bfa.producer.validate import CHANGES_NAME
from intake_bfa.releases import DATED_TAG_RE, release_body_metadata

CATALOG_NAME = "catalog.yaml"
NOTES_NAME = "RELEASE_NOTES.md"


@dataclass(frozen=True)
class LocalRelease:
    """A release folder, read and checked: what to publish and how to describe it."""

    version: str
    tag: str
    name: str
    body: str
    assets: dict[str, LocalFile]  # asset name -> file, in upload order: manifest.json last
    manifest: dict[str, Any]
    meta: dict[str, Any]  # embedded in release bodies for list_versions (coverage, rows)


def _local(path: Path, expect: dict[str, Any] | None = None) -> LocalFile:
    if not path.is_file():
        raise ManifestError(f"{path} is missing; rebuild the release folder", path=str(path))
    asset = LocalFile(path, path.stat().st_size, sha256_file(path))
    for key in ("size", "sha256"):
        if expect and expect.get(key) is not None and expect[key] != getattr(asset, key):
            msg = f"{path}: {key} differs from manifest.json; rebuild the release folder"
            raise ManifestError(msg, path=str(path))
    return asset


def read_release_dir(release_dir: str | Path, version: str | None = None) -> LocalRelease:
    """Read and check a release folder written by :func:`~.build.build_release`.

    Every asset listed in ``manifest.json`` must exist with the size and sha256 it records;
    ``catalog.yaml`` and ``changes.json`` are published too if present, and ``RELEASE_NOTES.md`` (if present)
    becomes the release notes.

    Raises
    ------
    ManifestError
        If the manifest is missing or invalid, or a file does not match it.
    PublishError
        If ``version`` is given and differs from the manifest's, or is not a date.
    """
    root = Path(release_dir)
    manifest_path = root / MANIFEST_NAME
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestError(
            f"cannot read {manifest_path}: {err}; is {root} a built release folder?",
            path=str(manifest_path),
        ) from None
    manifest = parse_manifest(raw, source=str(manifest_path))
    if version is not None and version != manifest.version:
        msg = f"{manifest_path} is version {manifest.version}, not {version}"
        raise PublishError(msg, version=version)
    tag = f"data-{manifest.version}"
    if not DATED_TAG_RE.match(tag):
        raise PublishError(
            f"version {manifest.version!r} is not a date (YYYY-MM-DD); dated releases need one",
            version=manifest.version,
        )
    assets: dict[str, LocalFile] = {}
    # Every asset the manifest names, also datasets this intake-bfa does not know yet.
    for key, entry in sorted(raw["datasets"].items()):
        if isinstance(entry, dict) and entry.get("asset"):
            name = check_asset_name(entry["asset"], f"{manifest_path}: dataset {key!r}")
            assets[name] = _local(root / name, entry)
    for extra in (CATALOG_NAME, CHANGES_NAME):  # published when the build wrote them
        if (root / extra).is_file():
            assets[extra] = _local(root / extra)
    assets[MANIFEST_NAME] = _local(manifest_path)
    meta = {
        "coverage": raw.get("coverage"),
        "rows": (raw["datasets"].get("daily_availability") or {}).get("rows"),
        "synthetic": manifest.synthetic,
    }
    v, cov = manifest.version, meta["coverage"] or {}
    notes_path = root / NOTES_NAME
    notes = notes_path.read_text(encoding="utf-8").strip() if notes_path.is_file() else ""
    notes = notes or (
        f"Binance USDT-M futures availability {v}: one row per symbol and day from "
        f"{cov.get('start', '?')} to {cov.get('end', '?')}.\n\n"
        f'Read it with `intake_bfa.read("daily_availability", version="{v}")`.'
    )
    if manifest.synthetic and not notes_path.is_file():
        notes = f"**Synthetic sample data.** {raw.get('note', '')}\n\n{notes}"
    title = f"Binance futures availability {v}" + (" (SYNTHETIC sample)" * manifest.synthetic)
    body = f"{notes}\n\n{release_body_metadata(meta)}"
    return LocalRelease(v, tag, title, body, assets, raw, meta)
