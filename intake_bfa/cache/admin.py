"""Inspect and maintain the local cache: status, clear, refresh, verify, prune.

Backs ``bfa cache ...``; every function returns data and never prints. A folder is
removed by renaming it to ``<cache_dir>/.removing-*`` first, so no reader ever sees
half a version. Names starting with ``.`` or ending in ``.part`` (``.part.json``) are temporary files
(in flight, or left by a crash; a ``.part`` lets a broken download resume): reported,
and removed by ``clear(temporary=True)`` only once untouched for :data:`TEMP_MIN_AGE`
seconds. It also says what the cache knows about one dataset (:func:`dataset_state`), which
the notebook displays show: read from the cache only, never the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import (
    FORMAT_DIR,
    SIDECAR_SUFFIX,
    CacheLayout,
    read_access_stats,
    read_ref,
    read_sidecar,
    sidecar_path,
)
from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import (
    ConfigError,
    DownloadError,
    ManifestError,
    VersionNotFoundError,
    nearest,
)
from intake_bfa.http import safe_url
from intake_bfa.manifest import MANIFEST_NAME, load_manifest
from intake_bfa.resolve import resolve_release
from intake_bfa.schema import DATASETS

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # 1 MiB: any file size with bounded memory
#: A running download rewrites its temporary file every chunk and times out after
#: BFA_TIMEOUT, so one untouched for an hour belongs to a process that died.
TEMP_MIN_AGE = 3600.0


@dataclass(frozen=True)
class Entry:
    """A file, or a leftover (``name`` relative to the cache dir); ``age`` in seconds."""

    name: str
    size: int
    age: float


@dataclass(frozen=True)
class VersionStatus:
    """One cached version; hash sidecars count in ``size`` but are not listed."""

    version: str
    size: int
    latest: bool
    has_manifest: bool
    files: list[Entry]


@dataclass(frozen=True)
class RepoStatus:
    """One repository's cache: versions, the "latest" ref, hit/miss counters."""

    repo: str
    configured: bool
    size: int
    latest: str | None
    latest_resolved_at: float | None
    latest_age: float | None
    hits: int
    misses: int
    hit_rate: float | None
    versions: list[VersionStatus]


@dataclass(frozen=True)
class CacheStatus:
    """What :func:`cache_status` found; ``dataclasses.asdict`` of it is JSON-ready."""

    cache_dir: str
    exists: bool
    total_size: int
    repos: list[RepoStatus]
    leftovers: list[Entry]
    leftover_size: int

    def _repr_html_(self) -> str:
        from intake_bfa.display.tables import cache_status_html

        return cache_status_html(self)


@dataclass(frozen=True)
class CleanupResult:
    """What :func:`clear` or :func:`prune` removed and kept, and the bytes freed."""

    removed: list[str]
    kept: list[str]
    bytes_freed: int
    latest_ref_removed: bool = False


@dataclass(frozen=True)
class RefreshResult:
    """The ``version`` "latest" points to now, the ``previous`` one, and if it ``changed``."""

    version: str
    previous: str | None
    changed: bool


# --- walking the cache -----------------------------------------------------------------------


def _is_leftover(name: str) -> bool:
    # ".x.tmp": atomic writes; "x.part" + "x.part.json": a download to resume (fetch.py).
    return name.startswith(".") or name.endswith((".part", ".part.json"))


def _entries(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:  # missing, or removed while we looked
        return []


def _subdirs(path: Path, skip: tuple[str, ...] = (".",)) -> list[Path]:
    found = [p for p in _entries(path) if p.is_dir() and not p.is_symlink()]
    return [p for p in found if not p.name.startswith(skip)]


def _repo_dirs(root: Path) -> dict[str, Path]:
    """``{"owner/name": folder}`` for every repository cached under ``root``."""
    owners = _subdirs(root / FORMAT_DIR)
    return {f"{o.name}/{r.name}": r for o in owners for r in _subdirs(o)}


def _version_dirs(repo_dir: Path) -> list[Path]:
    """Version folders, complete or not, newest version string first."""
    return sorted(_subdirs(repo_dir, (".", "_")), key=lambda d: d.name, reverse=True)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:  # removed while we looked: another process is cleaning up
        return None


def _data_files(folder: Path, now: float) -> list[Entry]:
    """Regular files of a version folder, leaving out leftovers and hash sidecars."""
    found = []
    for path in _entries(folder):
        st, name = _lstat(path), path.name
        if st and stat.S_ISREG(st.st_mode) and not name.endswith(SIDECAR_SUFFIX):
            found.append(Entry(name, st.st_size, max(0.0, now - st.st_mtime)))
    return [e for e in found if not _is_leftover(e.name)]


def _tree_size(path: Path, *, leftovers: bool = True) -> int:
    """Bytes of the regular files at or under ``path`` (optionally not leftovers)."""
    st = _lstat(path)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if leftovers or not _is_leftover(d)]
        for name in files:
            if leftovers or not _is_leftover(name):
                total += _tree_size(Path(folder, name))
    return total


def _leftovers(root: Path, now: float) -> list[Entry]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = _lstat(Path(folder, name)) if _is_leftover(name) else None
            if st is None:
                continue
            mtime = st.st_mtime
            if name.endswith(".part.json"):  # as fresh as the download it describes
                part = _lstat(Path(folder, name.removesuffix(".json")))
                mtime = max(mtime, part.st_mtime) if part else mtime
            rel = Path(folder, name).relative_to(root).as_posix()
            found.append(Entry(rel, _tree_size(root / rel), max(0.0, now - mtime)))
        dirs[:] = [d for d in dirs if not _is_leftover(d)]  # already counted as a whole
    return sorted(found, key=lambda e: e.name)


# --- status ----------------------------------------------------------------------------------


def cache_status(settings: Settings) -> CacheStatus:
    """Describe every repository and version in the cache (the configured ``repo`` first).

    Returns
    -------
    CacheStatus
        Sizes in bytes, ages in seconds (from mtimes), hit rate in 0..1 (None: no reads).
    """
    now, root = time.time(), settings.cache_dir
    others = sorted(n for n in _repo_dirs(root) if n != settings.repo)
    repos = [_repo_status(settings.with_(repo=n), n == settings.repo, now) for n in others]
    repos.insert(0, _repo_status(settings, True, now))
    leftovers = _leftovers(root, now) if root.is_dir() else []
    return CacheStatus(
        str(root), root.is_dir(), _tree_size(root), repos, leftovers, sum(e.size for e in leftovers)
    )


def _repo_status(settings: Settings, configured: bool, now: float) -> RepoStatus:
    layout = CacheLayout(settings)
    ref = read_ref(layout) or {}
    at = ref.get("resolved_at")
    resolved_at = float(at) if isinstance(at, int | float) else None
    versions = [
        VersionStatus(
            version=d.name,
            size=_tree_size(d, leftovers=False),
            latest=d.name == ref.get("version"),
            has_manifest=(d / MANIFEST_NAME).is_file(),
            files=_data_files(d, now),
        )
        for d in _version_dirs(layout.repo_dir)
    ]
    stats = read_access_stats(layout)
    reads = stats["hits"] + stats["misses"]
    return RepoStatus(
        repo=settings.repo,
        configured=configured,
        size=_tree_size(layout.repo_dir, leftovers=False),
        latest=ref.get("version"),
        latest_resolved_at=resolved_at,
        latest_age=max(0.0, now - resolved_at) if resolved_at is not None else None,
        hits=stats["hits"],
        misses=stats["misses"],
        hit_rate=stats["hits"] / reads if reads else None,
        versions=versions,
    )


# --- removal ---------------------------------------------------------------------------------


def _remove(path: Path, root: Path) -> None:
    """Delete a file or a folder; a folder disappears at once (renamed aside first)."""
    try:
        if not path.is_dir() or path.is_symlink():
            path.unlink(missing_ok=True)
            return
        trash = Path(tempfile.mkdtemp(prefix=".removing-", dir=root))
        try:
            os.rename(path, trash / path.name)
        except OSError:  # e.g. on another file system: delete in place instead
            trash.rmdir()
            trash = path
        shutil.rmtree(trash)
    except OSError as err:
        raise ConfigError(
            f"cannot remove {path}: {err}; check the permissions of the cache dir",
            variable="BFA_CACHE_DIR",
            value=str(root),
        ) from None
    log.info("removed %s", path)


def _remove_versions(layout: CacheLayout, doomed: list[str], kept: list[str]) -> CleanupResult:
    ref = read_ref(layout)
    ref_removed = bool(ref and ref["version"] in doomed)
    if ref_removed:  # first, so nothing resolves "latest" to a folder being deleted
        layout.ref_path().unlink(missing_ok=True)
    freed = 0
    for version in doomed:
        freed += _tree_size(layout.version_dir(version))
        _remove(layout.version_dir(version), layout.root)
    return CleanupResult(doomed, kept, freed, ref_removed)


def clear(
    settings: Settings,
    *,
    version: str | None = None,
    all: bool = False,
    temporary: bool = False,
) -> CleanupResult:
    """Remove cached data: exactly one of ``version``, ``all``, ``temporary`` (no default).

    Parameters
    ----------
    version
        A cached version of the configured repository (``data-`` prefix accepted);
        the "latest" ref goes too if it points there.
    all
        Remove ``<cache_dir>/v1``: every repository's versions, refs, release lists and
        hit/miss counters. ``CACHEDIR.TAG`` stays.
    temporary
        Remove temporary files left untouched for :data:`TEMP_MIN_AGE` seconds (an
        interrupted download whose ``.part`` goes starts over instead of resuming).

    Returns
    -------
    CleanupResult
        Versions removed (``owner/name/version`` for ``all``; paths for ``temporary``).

    Raises
    ------
    ConfigError
        Not exactly one choice, or a file cannot be removed.
    VersionNotFoundError
        ``version`` is not cached; the message lists the cached versions.
    """
    layout, root = CacheLayout(settings), settings.cache_dir
    cached = [d.name for d in _version_dirs(layout.repo_dir)]
    listed = f"cached versions of {settings.repo}: {', '.join(cached) or 'none'}"
    if [version is not None, all, temporary].count(True) != 1:
        raise ConfigError(
            f"say what to clear, one of: a version (--data-version V; {listed}), everything "
            "(--all), or leftover temporary files (--temp)",
            variable="clear",
            value=None,
        )
    if version is not None:
        wanted = version.removeprefix("data-")
        if wanted not in cached:  # also keeps any path-like input out of the file system
            raise VersionNotFoundError(
                f"version {version} is not cached in {root}; {listed}",
                version=version,
                repo=settings.repo,
                available=cached,
                nearest=nearest(wanted, cached),
            )
        return _remove_versions(layout, [wanted], [v for v in cached if v != wanted])
    if all:
        base = root / FORMAT_DIR
        gone = [f"{n}/{d.name}" for n, rd in _repo_dirs(root).items() for d in _version_dirs(rd)]
        freed, existed = _tree_size(base), base.exists()
        if existed:
            _remove(base, root)
        return CleanupResult(gone, [], freed, latest_ref_removed=existed)
    stale, fresh = [], []
    for entry in _leftovers(root, time.time()) if root.is_dir() else []:
        (stale if entry.age >= TEMP_MIN_AGE else fresh).append(entry)
    for entry in stale:
        _remove(root / entry.name, root)
    return CleanupResult(
        [e.name for e in stale], [e.name for e in fresh], sum(e.size for e in stale)
    )


def prune(settings: Settings, keep: int) -> CleanupResult:
    """Keep the ``keep`` newest cached versions of the configured repository; remove the rest.

    Versions order by their string (dates: newest first). The version the "latest"
    ref points to is always kept too, so "latest" keeps working offline.

    Raises
    ------
    ConfigError
        ``keep`` is not a whole number of at least 1.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(
            f"keep={keep!r}: keep at least 1 version (to remove everything: "
            "`bfa cache clear --all`)",
            variable="keep",
            value=keep,
        )
    layout = CacheLayout(settings)
    cached = [d.name for d in _version_dirs(layout.repo_dir)]
    ref = read_ref(layout)
    keepers = set(cached[:keep]) | ({ref["version"]} if ref else set())
    doomed = [v for v in cached if v not in keepers]
    return _remove_versions(layout, doomed, [v for v in cached if v in keepers])


def refresh(settings: Settings) -> RefreshResult:
    """Resolve "latest" now, however young the cached pointer is (ignores ``BFA_TTL``).

    Raises
    ------
    ConfigError
        Offline: refreshing needs the release server.
    DownloadError
        The release server did not answer (the cached pointer stays as it was).
    CacheError
        The cache cannot be written (a read-only cache: reads still serve what it holds).
    """
    if settings.offline:
        raise ConfigError(
            "refreshing 'latest' needs the release server; drop --offline / unset BFA_OFFLINE",
            variable="BFA_OFFLINE",
            value="1",
        )
    layout = CacheLayout(settings)
    # Refreshing is a write: a read-only cache fails here with its own error, not later as
    # "no answer from the release server" after resolve_release served the old pointer.
    layout.check_writable(layout.ref_path().parent)
    before = read_ref(layout)
    version, _ = resolve_release("latest", settings.with_(ttl=0))
    after = read_ref(layout)
    if after is None or after == before:
        # resolve_release fell back to the cached pointer (and logged why): no refresh.
        raise DownloadError(
            f"could not refresh 'latest' of {settings.repo}: no answer from the release "
            f"server at {safe_url(settings.api_url)}; still using {version}",
            url=safe_url(settings.api_url),
            status=None,
        )
    previous = before["version"] if before else None
    return RefreshResult(version, previous, version != previous)


# --- verify: re-hash every cached file and remove what is corrupt ----------------------------
# Each file is checked against its hash sidecar, else (a release asset exactly as downloaded)
# against the manifest; anything else is reported unverified and left alone. A corrupt file is
# removed before its sidecar, so the next read downloads it again and a crash in between
# leaves only a harmless orphan sidecar.

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


#: Cached versions inspected per dataset by :func:`dataset_state` (each is one small JSON read).
MAX_STATE_VERSIONS = 30


# --- what the cache knows about one dataset (for displays) ----------------------------------


@dataclass
class DatasetState:
    """What the local cache knows about one dataset (no network involved)."""

    name: str
    description: str = ""
    repo: str = ""
    version: str | None = None  # the version shown (pinned, or the cached "latest")
    source: str = ""  # "pinned", "latest ref", "newest cached", "release folder" or ""
    coverage: tuple[str, str] | None = None
    rows: int | None = None
    size: int | None = None
    cached: bool = False
    cached_versions: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def coverage_text(self) -> str:
        """``"start .. end"`` or ``""``."""
        return f"{self.coverage[0]} .. {self.coverage[1]}" if self.coverage else ""


def _manifest_entry(layout, version: str, name: str):
    from intake_bfa.manifest import load_manifest

    m = load_manifest(layout.manifest_path(version))
    return m, m.datasets.get(name)


def _file_cached(layout, version: str, name: str) -> bool:
    try:
        _, entry = _manifest_entry(layout, version, name)
    except Exception:
        return False
    return entry is not None and layout.file_path(version, entry.local_name).is_file()


def dataset_state(name: str, data: Any = None, description: str | None = None) -> DatasetState:
    """Describe dataset ``name`` from the cache only.

    Parameters
    ----------
    name
        Dataset name.
    data
        Its :class:`~intake_bfa.readers.BfaData` (repository and pinned version);
        None uses the environment's settings and "latest".
    description
        Overrides the registry's description (e.g. a catalog's metadata).
    """
    spec = DATASETS.get(name)
    state = DatasetState(name, description or (spec.description if spec else ""))
    try:
        settings = data.settings() if data is not None else get_settings()
        state.repo = settings.repo
        layout = CacheLayout(settings)
        versions = layout.cached_versions()
        state.cached_versions = [
            v for v in versions[:MAX_STATE_VERSIONS] if _file_cached(layout, v, name)
        ]
        pinned = getattr(data, "version", "latest") or "latest"
        ref = read_ref(layout)
        if settings.source is not None:
            # A release folder resolves without the network (a scan and a manifest copy),
            # so its display shows what a read would use, even before the first read.
            from intake_bfa.resolve import pin

            state.version = pin(pinned, settings).version
            state.source = "pinned" if pinned != "latest" else "release folder"
            versions = layout.cached_versions()
        elif pinned != "latest":
            state.version, state.source = pinned, "pinned"
        elif ref and ref["version"] in versions:
            state.version, state.source = ref["version"], "latest ref"
        elif versions:
            state.version, state.source = versions[0], "newest cached"
        if state.version and state.version in versions:
            m, entry = _manifest_entry(layout, state.version, name)
            if entry is not None:
                state.coverage = entry.coverage or m.coverage
                state.rows, state.size = entry.rows, entry.size
                state.cached = layout.file_path(state.version, entry.local_name).is_file()
    except Exception as err:
        state.error = f"{type(err).__name__}: {err}"
    return state
