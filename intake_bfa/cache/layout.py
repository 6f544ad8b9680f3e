"""Where things live in the local cache, and how files get there atomically.

Layout (``<cache_dir>`` from :func:`intake_bfa.config.get_settings`)::

    <cache_dir>/CACHEDIR.TAG
    <cache_dir>/v1/<owner>/<repo>/_refs/latest.json        "latest" -> version, resolved_at
    <cache_dir>/v1/<owner>/<repo>/_api/releases.json       release list + its ETag
    <cache_dir>/v1/<owner>/<repo>/<version>/manifest.json
    <cache_dir>/v1/<owner>/<repo>/<version>/<asset files>
    <cache_dir>/v1/_source/<folder>-<hash>/...              a release folder (BFA_SOURCE)

A file under its final name is always complete: it is written under a temporary
name in the same folder, flushed, fsynced and moved into place with ``os.replace``.
Nothing is written at import time. A write that fails (read-only folder, full disk,
file-size limit, a file where a folder should be) raises
:class:`~intake_bfa.errors.CacheError` naming the folder, the cause and the fix
(:func:`cache_writes`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from intake_bfa.config import Settings
from intake_bfa.display.text import human_size
from intake_bfa.errors import BfaError, CacheError

log = logging.getLogger(__name__)

FORMAT_DIR = "v1"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by intake-bfa.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


#: The owner folder of release folders read as a source (BFA_SOURCE): no GitHub account
#: name starts with "_", so a source never shares a cache folder with a repository.
SOURCE_OWNER = "_source"


@functools.lru_cache(maxsize=64)
def _repo_dir(cache_dir: Path, owner: str, name: str, source: Path | None) -> Path:
    # Built on every read of every dataset (a few pathlib joins): computed once per repo.
    if source is not None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", source.name).strip("-.")[:40] or "folder"
        digest = hashlib.sha256(os.fsencode(source)).hexdigest()[:12]
        return cache_dir / FORMAT_DIR / SOURCE_OWNER / f"{slug}-{digest}"
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
        self.repo_dir = _repo_dir(
            settings.cache_dir, settings.owner, settings.name, settings.source
        )

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
        """Create the cache root (with its ``CACHEDIR.TAG``) and the folder ``path``.

        Raises
        ------
        CacheError
            A folder cannot be created (read-only, a file in the way, no space).
        """
        root = self.root
        target = path if path is not None else self.repo_dir
        with cache_writes(root, target):
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                atomic_write_bytes(tag, CACHEDIR_TAG.encode())
            target.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, path: Path, obj: Any) -> Path:
        """Atomically write ``obj`` as JSON to ``path`` in this cache (its folder created).

        Raises
        ------
        CacheError
            The cache cannot be written.
        """
        self.ensure(path.parent)
        with cache_writes(self.root, path):
            return atomic_write_json(path, obj)

    def check_writable(self, folder: Path) -> None:
        """Raise :class:`~intake_bfa.errors.CacheError` unless a file can be made in ``folder``.

        For commands whose only purpose is to write (``bfa cache refresh``): they fail
        with the cache's own error, not with what a later, quieter fallback would say.
        """
        self.ensure(folder)
        with cache_writes(self.root, folder):
            temp_file(folder / ".probe").unlink()


# --- failed writes -> CacheError --------------------------------------------------------------

#: errno values meaning "this folder may not be written": a read-only mount (EROFS),
#: permissions (EACCES), an immutable flag or a security policy (EPERM).
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
#: The disk or the user's quota is full (EDQUOT is missing on some platforms).
NO_SPACE_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)
#: A file stands where a folder is needed (mkdir: EEXIST; a path through a file: ENOTDIR).
NOT_A_FOLDER_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST})
# pyarrow's writers raise a bare OSError whose text holds the cause: "... [errno 28] ...".
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def write_problem(err: OSError) -> tuple[str, int | None, str]:
    """Classify a failed write: ``(kind, errno, cause)``.

    ``kind`` is ``"read_only"``, ``"no_space"``, ``"file_too_big"``, ``"not_a_folder"`` or
    ``"other"``; ``cause`` is ``"Errno 28: No space left on device"`` (or the error's text
    when it has no errno). Shared by :class:`~intake_bfa.errors.CacheError` and
    :class:`~intake_bfa.errors.OutputError`.
    """
    code = err.errno
    if code is None:
        found = _ERRNO_IN_TEXT.search(str(err))
        code = int(found.group(1)) if found else None
    if code in READ_ONLY_ERRNOS:
        kind = "read_only"
    elif code in NO_SPACE_ERRNOS:
        kind = "no_space"
    elif code == errno.EFBIG:
        kind = "file_too_big"
    elif code in NOT_A_FOLDER_ERRNOS:
        kind = "not_a_folder"
    else:
        kind = "other"
    cause = f"Errno {code}: {os.strerror(code)}" if code is not None else str(err)
    return kind, code, cause


def in_the_way(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists but is not a folder (else ``path``):
    what blocks creating ``path`` when the error is ``ENOTDIR`` / ``EEXIST``."""
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def free_space(path: Path) -> int | None:
    """Bytes free for this user on the file system that holds (or would hold) ``path``."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def cache_write_error(
    err: OSError, path: Path, cache_dir: Path, *, size: int | None = None
) -> CacheError:
    """The :class:`~intake_bfa.errors.CacheError` for ``err``, raised writing ``path``.

    Parameters
    ----------
    err
        What the operating system (or pyarrow) raised.
    path
        The file or folder being written into the cache.
    cache_dir
        The cache root (``BFA_CACHE_DIR``), named in the message with the fix.
    size
        The size ``path`` has once complete, when known: a full disk then reports how
        much more is needed (``size`` less what ``path`` already holds).

    Returns
    -------
    CacheError
        With ``path``, ``cache_dir``, ``kind``, ``errno``, ``strerror``, ``filename``, and
        ``need`` / ``free`` (bytes, or None) when the disk is full.
    """
    kind, code, cause = write_problem(err)
    need = free = None
    if kind == "read_only":
        message = (
            f"cache folder {cache_dir} is read-only: cannot write {path} ({cause}); make it "
            "writable or set BFA_CACHE_DIR to a writable folder"
        )
    elif kind == "no_space":
        free = free_space(path)
        if size is not None:
            try:
                have = path.stat().st_size if path.is_file() else 0
            except OSError:
                have = 0
            need = max(size - have, 0)
        wanted = f"need about {human_size(need)} more" if need else "need more space"
        message = (
            f"no space left in cache folder {cache_dir} to write {path} ({cause}): {wanted} "
            f"(free: {human_size(free, 'unknown')}); free some space there (e.g. `bfa cache "
            "prune`) or set BFA_CACHE_DIR to a folder with more room"
        )
    elif kind == "file_too_big":
        wanted = f" of {human_size(size)}" if size else ""
        message = (
            f"cannot write {path} in cache folder {cache_dir}: the file exceeds the file-size "
            f"limit ({cause}); raise the limit (`ulimit -f unlimited`) or set BFA_CACHE_DIR "
            f"to a folder on a file system that allows files{wanted}"
        )
    elif kind == "not_a_folder":
        message = (
            f"cache folder {cache_dir} cannot be used: {in_the_way(path)} is not a folder "
            f"({cause}); point BFA_CACHE_DIR at a folder"
        )
    else:
        message = (
            f"cannot write {path} in cache folder {cache_dir} ({cause}); check that folder "
            "or set BFA_CACHE_DIR to another one"
        )
    return CacheError(
        message,
        path=str(path),
        cache_dir=str(cache_dir),
        kind=kind,
        errno=code,
        strerror=os.strerror(code) if code is not None else str(err),
        filename=err.filename if err.filename is not None else str(path),
        need=need,
        free=free,
    )


@contextmanager
def cache_writes(cache_dir: Path, path: Path, *, size: int | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`~intake_bfa.errors.CacheError`.

    Wrap only writes into the cache: intake-bfa's own errors (a ``DownloadError`` is an
    ``OSError`` too) pass through unchanged. Arguments as for :func:`cache_write_error`.
    """
    try:
        yield
    except BfaError:
        raise
    except OSError as err:
        raise cache_write_error(err, path, cache_dir, size=size) from err


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
    layout.ensure(path.parent)
    lock = FileLock(path)
    with cache_writes(layout.root, path):  # taking the lock creates its file: a write
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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


def remove_temp_leftovers(*paths: Path) -> list[Path]:
    """Remove the temporary files that killed writes of ``paths`` left beside them.

    A write of ``path`` goes through :func:`temp_file` (``.<name>.<8 random>.tmp`` in the same
    folder), which only the writer removes: a process killed mid-write (SIGKILL, a power cut)
    leaves it behind. Only names made for exactly these ``paths`` are matched, so another
    file's writes are never touched.

    Call it only while holding the :func:`file_lock` of the file that ``paths`` belong to
    (the file itself and its companions: hash sidecar, download state): every writer of
    these names holds that lock, so a temporary file found then belongs to an attempt that
    died, never to one in progress.

    Parameters
    ----------
    *paths
        Final paths whose temporary files to remove.

    Returns
    -------
    list of pathlib.Path
        The files removed. One that cannot be removed is logged and left for
        ``bfa cache prune --temp``; this never raises.
    """
    removed: list[Path] = []
    by_folder: dict[Path, list[re.Pattern[str]]] = {}
    for path in paths:
        # mkstemp's names: the prefix, 8 of [a-z0-9_], the suffix (see temp_file).
        pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
        by_folder.setdefault(path.parent, []).append(pattern)
    for folder, patterns in by_folder.items():
        try:
            names = os.listdir(folder)
        except OSError:  # no folder yet: nothing was left there
            continue
        for name in names:
            if not any(p.fullmatch(name) for p in patterns):
                continue
            leftover = folder / name
            try:
                leftover.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                log.warning("could not remove leftover temporary file %s: %s", leftover, err)
                continue
            log.info("removed %s, left by an interrupted write", leftover)
            removed.append(leftover)
    return removed


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
    except (FileNotFoundError, NotADirectoryError):  # not written yet, or no cache folder
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
    """Record that ``ref`` resolved to ``version`` now.

    Raises
    ------
    CacheError
        The cache cannot be written (``kind == "read_only"`` for a read-only cache).
    """
    layout.write_json(
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
    except OSError:  # a full disk: counters are not worth failing a read for
        pass
    finally:
        os.close(fd)


def read_access_stats(layout: CacheLayout) -> dict[str, int]:
    """``{"hits": n, "misses": n}`` recorded for this repository's cache."""
    try:
        data = _access_log(layout).read_bytes()
    except OSError:
        data = b""
    return {"hits": data.count(b"h"), "misses": data.count(b"m")}
