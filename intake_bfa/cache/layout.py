"""Where things live in the local cache, and how files get there atomically.

Layout (``<cache_dir>`` from :func:`intake_bfa.config.get_settings`)::

    <cache_dir>/CACHEDIR.TAG
    <cache_dir>/v1/<owner>/<repo>/_refs/latest.json        "latest" -> version, resolved_at
    <cache_dir>/v1/<owner>/<repo>/_api/releases.json       release list + its ETag
    <cache_dir>/v1/<owner>/<repo>/<version>/manifest.json
    <cache_dir>/v1/<owner>/<repo>/<version>/<asset files>

A file under its final name is always complete: it is written under a temporary
name in the same folder, flushed, fsynced and moved into place with ``os.replace``.
Nothing is written at import time.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from intake_bfa.config import Settings
from intake_bfa.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT_DIR = "v1"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by intake-bfa.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


@functools.lru_cache(maxsize=64)
def _repo_dir(cache_dir: Path, owner: str, name: str) -> Path:
    # Built on every read of every dataset (a few pathlib joins): computed once per repo.
    return cache_dir / FORMAT_DIR / owner / name


class CacheLayout:
    """Paths of one repository's cache.

    Parameters
    ----------
    settings
        Supplies ``cache_dir`` and ``repo``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.cache_dir
        self.repo_dir = _repo_dir(settings.cache_dir, settings.owner, settings.name)

    def version_dir(self, version: str) -> Path:
        """Folder holding one version's manifest and files."""
        return self.repo_dir / version

    def manifest_path(self, version: str) -> Path:
        """Cached manifest of ``version``."""
        return self.version_dir(version) / "manifest.json"

    def file_path(self, version: str, name: str) -> Path:
        """Cached file ``name`` of ``version``."""
        return self.version_dir(version) / name

    def ref_path(self, ref: str = "latest") -> Path:
        """Small JSON pointer from a moving ref to a version."""
        return self.repo_dir / "_refs" / f"{ref}.json"

    @property
    def releases_path(self) -> Path:
        """Cached release list with its ETag (for conditional requests)."""
        return self.repo_dir / "_api" / "releases.json"

    def cached_versions(self) -> list[str]:
        """Versions with a cached manifest, newest first."""
        if not self.repo_dir.is_dir():
            return []
        found = [
            p.name
            for p in self.repo_dir.iterdir()
            if not p.name.startswith("_") and (p / "manifest.json").is_file()
        ]
        return sorted(found, reverse=True)

    def ensure(self, path: Path | None = None) -> Path:
        """Create the cache root (with its ``CACHEDIR.TAG``) and ``path``'s folder."""
        root = self.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                atomic_write_bytes(tag, CACHEDIR_TAG.encode())
            target = path if path is not None else self.repo_dir
            target.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(
                f"cache dir {root} is not a folder; point BFA_CACHE_DIR at a folder",
                variable="BFA_CACHE_DIR",
                value=str(root),
            ) from None
        except PermissionError:
            raise ConfigError(
                f"cache dir {root} is not writable; set BFA_CACHE_DIR to a writable folder",
                variable="BFA_CACHE_DIR",
                value=str(root),
            ) from None
        return target


@contextmanager
def file_lock(layout: CacheLayout, version: str, name: str) -> Iterator[None]:
    """Hold the inter-process lock for one cached file of ``version``.

    ``filelock`` gives the same exclusive lock on every platform (``fcntl`` on POSIX,
    ``msvcrt`` on Windows), so concurrent processes download a file once everywhere.
    Lock files live in ``_locks/`` (not next to the data) and are never deleted:
    deleting a lock file while another process waits on it would split the lock.
    """
    from filelock import FileLock

    path = layout.repo_dir / "_locks" / f"{version}__{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file here: ``0o666`` less the umask.

    ``tempfile.mkstemp`` creates files ``0600``; every file we move into place (cache files,
    release files, charts) gets these instead, like a file written directly.
    """
    try:  # Linux: read the umask without changing it (os.umask is process-wide)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_file(dest: Path, suffix: str = ".tmp") -> Path:
    """An empty temporary file beside ``dest`` (same folder, so ``os.replace`` is atomic),
    with :func:`new_file_mode` permissions; the caller fills it, then replaces or removes it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp's mode means nothing
            os.fchmod(fd, new_file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def atomic_writer(path: Path, write: Callable[[IO[bytes]], Any], *, suffix: str = ".tmp") -> Path:
    """Write ``path`` atomically: ``write(fileobj)`` fills a temp file that replaces it.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    tmp = temp_file(path, suffix)
    try:
        with open(tmp, "r+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    return atomic_writer(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Atomically replace ``path`` with ``obj`` as pretty JSON."""
    return atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def read_json(path: Path) -> Any | None:
    """Read a JSON file written by this package; None if missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        # Only our own atomic writes create these files, so damage means outside
        # interference; treat as absent so it is fetched again.
        log.warning("ignoring unreadable cache file %s: %s", path, err)
        return None


#: Refs by path, with the file's identity when read: "latest" is read from disk once per
#: process and again only when the file is replaced (every write is an atomic replace).
_refs_read: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def read_ref(layout: CacheLayout, ref: str = "latest") -> dict[str, Any] | None:
    """The cached pointer ``ref`` (``{"version", "resolved_at", ...}``), or None."""
    path = layout.ref_path(ref)
    try:
        st = os.stat(path)
    except OSError:
        return None
    ident = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _refs_read.get(str(path))
    if hit is not None and hit[0] == ident:
        return dict(hit[1])
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        return None
    log.debug("read ref %s: %s", path, data["version"])
    _refs_read[str(path)] = (ident, data)
    return dict(data)


def write_ref(layout: CacheLayout, version: str, ref: str = "latest", **extra: Any) -> None:
    """Record that ``ref`` resolved to ``version`` now."""
    layout.ensure(layout.ref_path(ref).parent)
    atomic_write_json(
        layout.ref_path(ref), {"version": version, "resolved_at": time.time(), **extra}
    )


# --- per-file hash sidecars ------------------------------------------------------------------
# Every file the cache serves gets "<file>.sha256" ("<hex> <size>\n"), written *before* the
# file is moved into place, so `bfa cache verify` can re-hash decompressed and derived
# files too, which have no published hash.

SIDECAR_SUFFIX = ".sha256"


def sidecar_path(path: Path) -> Path:
    """The hash sidecar of a cached file."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: Path, sha256: str, size: int) -> None:
    """Record the verified hash and size of ``path`` (call before moving it into place)."""
    atomic_write_bytes(sidecar_path(path), f"{sha256} {size}\n".encode())


def read_sidecar(path: Path) -> tuple[str, int] | None:
    """The recorded ``(sha256, size)`` of ``path``, or None."""
    try:
        sha, size = sidecar_path(path).read_text().split()
        return sha, int(size)
    except (OSError, ValueError):
        return None


# --- hit/miss counters -----------------------------------------------------------------------
# One byte per access appended with O_APPEND: atomic across processes without a lock and
# cheap enough (~10 µs) for the cache-hit path.


def _access_log(layout: CacheLayout) -> Path:
    return layout.repo_dir / "_stats" / "access.log"


def record_access(layout: CacheLayout, hit: bool) -> None:
    """Count one cache hit or miss for ``bfa cache status``; never raises."""
    path = _access_log(layout)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
    except OSError:
        return
    try:
        os.write(fd, b"h" if hit else b"m")
    finally:
        os.close(fd)


def read_access_stats(layout: CacheLayout) -> dict[str, int]:
    """``{"hits": n, "misses": n}`` recorded for this repository's cache."""
    try:
        data = _access_log(layout).read_bytes()
    except OSError:
        data = b""
    return {"hits": data.count(b"h"), "misses": data.count(b"m")}
