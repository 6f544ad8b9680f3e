"""``bfa cache verify``: re-hash every cached file and remove what is corrupt.

Each file is checked against its hash sidecar, else (a release asset exactly as
downloaded) against the manifest; anything else is reported unverified and left
alone. A corrupt file is removed before its sidecar, so the next read downloads it
again and a crash in between leaves only a harmless orphan sidecar.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from .cache import FORMAT_DIR, read_sidecar, sidecar_path
from .cache_admin import CHUNK, _data_files, _remove, _repo_dirs, _version_dirs
from .config import Settings
from .errors import ManifestError
from .manifest import MANIFEST_NAME, load_manifest

log = logging.getLogger(__name__)

_STATUSES = ("ok", "corrupt", "unverified")


@dataclass(frozen=True)
class VerifyReport:
    """Paths (relative to ``<cache_dir>/v1``) found ok, corrupt (and removed with their
    sidecars) or unverified (no recorded hash; left alone); ``details`` says why."""

    ok: list[str]
    corrupt: list[str]
    unverified: list[str]
    details: dict[str, str]
    bytes_hashed: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, expected: tuple[int | None, str | None] | None) -> tuple[str, str, int]:
    """``(status, detail, bytes hashed)`` of ``path`` against its sidecar, else ``expected``.

    ``expected`` is the manifest's ``(size, sha256)`` when ``path`` is a release asset
    exactly as downloaded: files cached before sidecars existed have only that.
    """
    recorded = read_sidecar(path)
    if recorded is None and sidecar_path(path).exists():
        log.warning("unreadable hash sidecar of %s; ignoring it", path)
    if recorded is not None:
        (sha, size), source = recorded, "sidecar"
    elif expected is not None:
        (size, sha), source = expected, "manifest"
    else:
        return "unverified", "no recorded hash (derived or decompressed file)", 0
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return "corrupt", f"{actual_size} bytes, the {source} says {size}", 0
    if sha is None:
        return "unverified", "size matches the manifest, which has no sha256", 0
    actual = _sha256(path)
    if actual != sha:
        return "corrupt", f"sha256 {actual[:12]}..., the {source} says {sha[:12]}...", actual_size
    return "ok", f"sha256 matches the {source}", actual_size


def _check_manifest(path: Path, version: str) -> tuple[str, str, dict[str, tuple]]:
    """``(status, detail, {asset: (size, sha256)})`` of a cached manifest."""
    status, detail, _ = _check(path, None)
    if status == "corrupt":
        return status, detail, {}
    try:
        parsed = load_manifest(path)
        if parsed.version != version:
            raise ManifestError(f"it describes version {parsed.version}, not {version}")
    except ManifestError as err:
        return "corrupt", f"invalid manifest: {err}", {}
    return "ok", "valid manifest", {e.asset: (e.size, e.sha256) for e in parsed.datasets.values()}


def verify(settings: Settings) -> VerifyReport:
    """Re-hash every cached file of every repository; remove what is corrupt.

    A file is checked against its hash sidecar, else (a release asset as downloaded)
    against the manifest's size and sha256; any other file is reported unverified
    and left alone. A manifest must parse and describe its folder's version. A
    corrupt file is removed with its sidecar, so the next read downloads it again.

    Returns
    -------
    VerifyReport
    """
    base = settings.cache_dir / FORMAT_DIR
    outcome: dict[str, tuple[str, str]] = {}
    hashed = 0
    for repo_dir in _repo_dirs(settings.cache_dir).values():
        for folder in _version_dirs(repo_dir):
            expected: dict = {}
            manifest = folder / MANIFEST_NAME
            if manifest.is_file():  # first: it holds the hashes of files without a sidecar
                status, detail, expected = _check_manifest(manifest, folder.name)
                outcome[manifest.relative_to(base).as_posix()] = (status, detail)
            for entry in _data_files(folder, 0.0):
                if entry.name == MANIFEST_NAME:
                    continue
                path = folder / entry.name
                try:
                    status, detail, n = _check(path, expected.get(entry.name))
                except OSError as err:  # unreadable is no proof of corruption: leave it
                    status, detail, n = "unverified", f"cannot read: {err}", 0
                outcome[path.relative_to(base).as_posix()] = (status, detail)
                hashed += n
    for rel, (status, detail) in outcome.items():
        if status == "corrupt":
            log.info("removing corrupt cached file %s (%s)", base / rel, detail)
            # The file first: a crash in between leaves only a harmless orphan sidecar.
            _remove(base / rel, settings.cache_dir)
            _remove(sidecar_path(base / rel), settings.cache_dir)
    by_status = {s: [rel for rel, (st, _) in outcome.items() if st == s] for s in _STATUSES}
    details = {rel: detail for rel, (_, detail) in outcome.items()}
    return VerifyReport(**by_status, details=details, bytes_hashed=hashed)
