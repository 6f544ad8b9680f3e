"""The one path by which downloaded bytes enter the cache: stream, hash, verify, move into place.

The caller holds the file's inter-process lock (:func:`intake_bfa.cache.layout.file_lock`).
:func:`download` streams into ``<name>.part`` while hashing, remembers the server's
validator in ``<name>.part.json``, resumes a broken transfer with ``Range`` +
``If-Range`` (starting over when the server ignores Range or the file changed),
retries what is worth retrying, moves on to the next mirror when a URL keeps
failing, verifies size and sha256, writes the hash sidecar, fsyncs, and only then
``os.replace``-s the file into place. A file under its final name is therefore
always complete and verified; a kill at any moment leaves at most a ``.part``
that the next call resumes. :func:`decompress` does the same for local
decompression. A cache that cannot be written (read-only, full, a file-size limit)
raises :class:`~intake_bfa.errors.CacheError` at once: it is neither retried nor
taken for a bad mirror, and it leaves at most that resumable ``.part``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import (
    atomic_write_bytes,
    atomic_writer,
    cache_writes,
    read_sidecar,
    remove_temp_leftovers,
    sidecar_path,
    write_sidecar,
)
from intake_bfa.config import Settings
from intake_bfa.errors import DownloadError, IntegrityError
from intake_bfa.http import open_url, parse_content_range, safe_url, with_retries
from intake_bfa.manifest import Manifest

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # 1 MiB: ~1 GB/s on loopback, small enough for memory


class _NoCallback:
    """Stand-in for an fsspec ``Callback`` when the caller passes none."""

    def set_size(self, size: Any) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        pass


class _Writeback:
    """Flush written data to disk in a background thread while the download continues.

    The final fsync is what makes a cached file durable; issued only at the end it
    costs ~0.1 s per 200 MB here, after the network is done. Syncing every 32 MiB
    from a helper thread (fdatasync releases the GIL) overlaps that work with the
    transfer, so the closing fsync only flushes the tail.
    """

    EVERY = 32 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = 0
        self.wake = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self._run, name="bfa-writeback", daemon=True)
        self.thread.start()

    def wrote(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.EVERY:
            self.pending = 0
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.done:
                return
            try:
                os.fdatasync(self.fd)
            except OSError:  # the final fsync in close() reports real problems
                return

    def close(self, *, sync: bool) -> None:
        """Stop the helper thread (idempotent); ``sync=True`` makes the file durable."""
        if not self.done:
            self.done = True
            self.wake.set()
            self.thread.join()
        if sync:
            os.fsync(self.fd)


def part_path(dest: Path) -> Path:
    """Where an unfinished download of ``dest`` accumulates."""
    return dest.with_name(dest.name + ".part")


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def remove_leftovers(dest: Path) -> list[Path]:
    """Remove what interrupted attempts to cache ``dest`` left behind; keep what resumes.

    The temporary files of ``dest``, of its hash sidecar and of its download state go, and
    so does a hash sidecar whose file is gone (it describes nothing). A ``.part`` and its
    state stay: the next download resumes them. The caller holds ``dest``'s
    :func:`~intake_bfa.cache.layout.file_lock`, so no live attempt owns any of these.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed = remove_temp_leftovers(dest, sidecar_path(dest), _meta_path(dest))
    sidecar = sidecar_path(dest)
    if not dest.exists() and sidecar.exists():
        sidecar.unlink(missing_ok=True)
        log.info("removed %s: its file is not cached", sidecar)
        removed.append(sidecar)
    return removed


def _discard_part(dest: Path) -> None:
    part_path(dest).unlink(missing_ok=True)
    _meta_path(dest).unlink(missing_ok=True)


def download(
    urls: Sequence[str],
    dest: Path,
    settings: Settings,
    *,
    size: int | None,
    sha256: str | None,
    callback: Any = None,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that delivers the right bytes.

    Parameters
    ----------
    urls
        Candidate URLs for the same bytes, in order (release asset, then mirrors).
    dest
        Final path; it exists afterwards only if the bytes matched.
    settings
        Timeouts, retry budget and token rules (the token only goes to the API origin).
    size, sha256
        Expected size in bytes and hex sha256; at least one should be known.
    callback
        An fsspec ``Callback`` (``set_size``/``relative_update``) for progress.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    IntegrityError
        Every URL delivered wrong bytes (nothing is left in the cache).
    DownloadError
        Every URL failed; the last error is raised.
    CacheError
        The cache cannot be written; raised at once (another URL or a retry cannot cure a
        full or read-only disk), leaving at most the resumable ``.part``.
    """
    if dest.exists():
        return dest
    callback = callback or _NoCallback()
    errors: list[Exception] = []

    def attempt(url: str) -> Path:
        # Network failures are DownloadErrors by now (open_url, the read loop): an OSError
        # left is the cache's own (a write, a rename, the .part), and passes no retry.
        with cache_writes(settings.cache_dir, part_path(dest), size=size):
            return _attempt(url, dest, settings, size, sha256, callback)

    for url in urls:
        try:
            return with_retries(
                lambda url=url: attempt(url),
                settings,
                what=f"download of {dest.name} from {safe_url(url)}",
            )
        except (DownloadError, IntegrityError) as err:
            errors.append(err)
            if len(urls) > 1:
                log.warning("%s failed for %s; trying the next URL", safe_url(url), dest.name)
    if not errors:
        raise DownloadError(f"no URL to download {dest.name} from", path=str(dest), url=None)
    # Wrong bytes anywhere matter more than a mirror being down.
    raise next((e for e in errors if isinstance(e, IntegrityError)), errors[-1])


def _resume_state(dest: Path, size: int | None, sha256: str | None) -> tuple[int, str | None]:
    """Bytes already in ``<name>.part`` for the same expected content, and their validator."""
    part = part_path(dest)
    try:
        meta = json.loads(_meta_path(dest).read_text())
        have = part.stat().st_size
    except (OSError, ValueError):
        _discard_part(dest)
        return 0, None
    same_target = meta.get("size") == size and meta.get("sha256") == sha256
    if not same_target or not meta.get("validator") or (size is not None and have > size):
        _discard_part(dest)
        return 0, None
    return have, meta["validator"]


def _hash_prefix(part: Path) -> Any:
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest


def _attempt(
    url: str, dest: Path, settings: Settings, size: int | None, sha256: str | None, callback: Any
) -> Path:
    """One request for ``url``: resume or start ``<name>.part``, then verify and finish."""
    started = time.perf_counter()
    part = part_path(dest)
    offset, validator = _resume_state(dest, size, sha256)
    callback.set_size(size)
    if offset and size is not None and offset == size:
        return _finish(url, dest, _hash_prefix(part), offset, size, sha256)
    headers = {"Accept": "application/octet-stream"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    resp = open_url(url, settings, headers=headers, ok=(200, 206, 416))
    with resp:
        if resp.status == 416:  # our offset is past the end: the file changed
            _discard_part(dest)
            raise DownloadError(
                f"{safe_url(url)} refused the resume range; starting over",
                url=safe_url(url),
                status=416,
                retryable=True,
            )
        if resp.status == 206 and offset:
            answered = parse_content_range(resp.headers.get("Content-Range"))
            if answered is None or answered[0] != offset:
                offset = 0  # a range we did not ask for: do not trust it
        else:
            offset = 0  # 200: the server ignored Range, or the file changed (If-Range)
        if offset:
            digest = _hash_prefix(part)
            callback.relative_update(offset)
            log.info("resuming %s at byte %d", dest.name, offset)
        else:
            digest = hashlib.sha256()
            if resp.status == 206:
                raise DownloadError(
                    f"{safe_url(url)} answered an unexpected partial response",
                    url=safe_url(url),
                    status=206,
                    retryable=True,
                )
        announced = _announced_total(resp, offset)
        if size is not None and announced is not None and announced != size:
            # Not the file the release publishes (a replaced asset, a wrong redirect, an
            # endless stream): refuse it before reading a byte.
            _discard_part(dest)
            raise _size_mismatch(url, dest, size, announced, "(announced by the server)")
        new_validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        atomic_write_bytes(
            _meta_path(dest),
            json.dumps({"size": size, "sha256": sha256, "validator": new_validator}).encode(),
        )
        received = offset
        overflow = 0  # bytes past ``size`` that arrived: then the body is not the asset
        with open(part, "r+b" if offset else "wb") as fh:
            fh.seek(offset)
            fh.truncate()
            writeback = _Writeback(fh.fileno())
            try:
                # read1 returns what has arrived (up to CHUNK): read(CHUNK) would block for a
                # full MiB and lose everything it buffered if the connection dies meanwhile.
                read = getattr(resp.stream, "read1", resp.stream.read)
                while True:
                    try:
                        chunk = read(CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        fh.flush()
                        raise DownloadError(
                            f"connection lost while downloading {safe_url(url)} after "
                            f"{received} bytes ({type(err).__name__}); will resume",
                            url=safe_url(url),
                            status=None,
                            retryable=True,
                        ) from None
                    if not chunk:
                        break
                    if size is not None and received + len(chunk) > size:
                        # An over-long or endless body would fill the disk: stop before
                        # writing past the published size.
                        overflow = received + len(chunk) - size
                        break
                    fh.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    writeback.wrote(len(chunk))
                    callback.relative_update(len(chunk))
                fh.flush()
                writeback.close(sync=True)
            finally:
                writeback.close(sync=False)
    if overflow:
        _discard_part(dest)
        raise _size_mismatch(url, dest, size, size + overflow, "or more (stopped reading there)")
    result = _finish(url, dest, digest, received, size, sha256)
    elapsed = time.perf_counter() - started
    log.info(
        "downloaded %s (%d bytes, %.1f MB/s)",
        dest.name,
        received - offset,
        (received - offset) / 1e6 / max(elapsed, 1e-9),
    )
    return result


_NOT_CACHED = (
    "nothing was cached. Retry; if it persists the release is damaged: report it to its publisher"
)


def _announced_total(resp: Any, offset: int) -> int | None:
    """The file size a response announces: ``offset`` + Content-Length (None if absent)."""
    if resp.status == 206:
        answered = parse_content_range(resp.headers.get("Content-Range"))
        if answered is not None and answered[2] is not None:
            return answered[2]
    raw = (resp.headers.get("Content-Length") or "").strip()
    return offset + int(raw) if raw.isascii() and raw.isdigit() else None


def _size_mismatch(url: str, dest: Path, size: int, actual: int, note: str = "") -> IntegrityError:
    """The error for a body of ``actual`` bytes (``note`` says how we know) instead of ``size``."""
    return IntegrityError(
        f"size mismatch for {dest.name} from {safe_url(url)}:\n"
        f"  expected: {size} bytes\n  actual:   {actual} bytes{' ' + note if note else ''}\n"
        f"{_NOT_CACHED}",
        url=safe_url(url),
        path=str(dest),
        expected=size,
        actual=actual,
    )


def _finish(
    url: str, dest: Path, digest: Any, received: int, size: int | None, sha256: str | None
) -> Path:
    """Verify the complete ``.part`` and move it into place (with its hash sidecar)."""
    actual = digest.hexdigest()
    if size is not None and received < size:
        raise DownloadError(
            f"download of {safe_url(url)} ended early: {received} of {size} bytes; will resume",
            url=safe_url(url),
            status=None,
            retryable=True,
        )
    if size is not None and received != size:
        _discard_part(dest)
        raise _size_mismatch(url, dest, size, received)
    if sha256 is not None and actual != sha256:
        _discard_part(dest)
        raise IntegrityError(
            f"sha256 mismatch for {dest.name} from {safe_url(url)}:\n"
            f"  expected: {sha256}\n  actual:   {actual}\n{_NOT_CACHED}",
            url=safe_url(url),
            path=str(dest),
            expected=sha256,
            actual=actual,
        )
    if sha256 is None:
        log.warning("no sha256 published for %s; verified its size only", dest.name)
    write_sidecar(dest, actual, received)
    os.replace(part_path(dest), dest)
    _meta_path(dest).unlink(missing_ok=True)
    return dest


class _Unreadable(Exception):
    """The compressed source failed to read (damaged): kept apart from failed writes."""


def decompress(
    src: Path,
    dest: Path,
    compression: str,
    *,
    callback: Any = None,
    cache_dir: Path | None = None,
) -> Path:
    """Decompress a verified ``src`` into ``dest`` atomically (no-op if ``dest`` exists).

    Raises
    ------
    IntegrityError
        ``src`` cannot be decompressed. If it no longer matches the hash recorded when it
        was verified, it (and only it) is removed so that the next read downloads it again;
        if it does match, the release itself is damaged and ``src`` is kept.
    CacheError
        ``dest`` cannot be written (``cache_dir``, default ``dest``'s folder, is named in
        the message); ``src`` is kept.
    """
    if dest.exists():
        return dest
    callback = callback or _NoCallback()
    callback.set_size(os.path.getsize(src))
    digest = hashlib.sha256()
    written = 0

    def write(fh) -> None:
        nonlocal written
        with open(src, "rb") as raw:
            damaged: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
            if compression == "gzip":
                reader: Any = gzip.GzipFile(fileobj=raw)
            elif compression == "zstd":
                import zstandard  # optional: only producers that choose zstd need it

                reader = zstandard.ZstdDecompressor().stream_reader(raw)
                damaged = (*damaged, zstandard.ZstdError)
            else:
                raise ValueError(f"unsupported compression {compression!r}")
            last = 0
            with reader:
                while True:
                    try:
                        chunk = reader.read(CHUNK * 4)
                    except damaged as err:
                        raise _Unreadable(err) from err
                    if not chunk:
                        break
                    fh.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    pos = raw.tell()
                    callback.relative_update(pos - last)
                    last = pos
        write_sidecar(dest, digest.hexdigest(), written)

    try:
        # Reading errors are _Unreadable by now: an OSError left is a failed write.
        with cache_writes(cache_dir or dest.parent, dest):
            atomic_writer(dest, write)
    except _Unreadable as err:
        if _as_verified(src):
            # The very bytes the release publishes: downloading them again cannot help.
            raise IntegrityError(
                f"cannot decompress {src.name}: {err.__cause__}; it is exactly the file the "
                "release publishes (its sha256 matches), so the release itself is damaged: "
                "report it to its publisher, or pin another version",
                path=str(src),
            ) from None
        # Damaged since it was verified (disk, another program): only it goes.
        src.unlink(missing_ok=True)
        sidecar_path(src).unlink(missing_ok=True)
        raise IntegrityError(
            f"cannot decompress {src.name}: {err.__cause__}; the cached copy no longer "
            "matches its recorded sha256 and is removed: retry to download it again",
            path=str(src),
        ) from None
    return dest


def _as_verified(path: Path) -> bool:
    """True if ``path`` still has the size and sha256 recorded when it was verified."""
    recorded = read_sidecar(path)
    try:
        if recorded is None or path.stat().st_size != recorded[1]:
            return False
        return _hash_prefix(path).hexdigest() == recorded[0]
    except OSError:  # unreadable: as good as damaged
        return False


def asset_urls(settings: Settings, manifest: Manifest, asset: str, mirrors: list[str]) -> list[str]:
    """Release asset first, then the manifest's mirrors, then configured mirror templates."""
    release = manifest.raw.get("release", {})
    info = release.get("assets", {}).get(asset, {})
    urls = [u for u in (info.get("download_url"),) if u]
    if settings.token and info.get("api_url"):
        # Private repositories only serve assets through the API with the token.
        urls.append(info["api_url"])
    fields = {
        "asset": asset,
        "version": manifest.version,
        "tag": release.get("tag", ""),
        "repo": settings.repo,
        "owner": settings.owner,
        "name": settings.name,
    }
    # Every URL gets the same sha256 check; the token only ever goes to the API origin.
    return urls + list(mirrors) + [t.format(**fields) for t in settings.mirrors]


def copy_verified(
    src: Path,
    dest: Path,
    *,
    size: int | None,
    sha256: str | None,
    callback: Any = None,
    cache_dir: Path | None = None,
) -> Path:
    """Copy a release folder's file into the cache, verified like a download.

    The bytes are hashed as they are copied into a temporary file beside ``dest``, which
    replaces ``dest`` only when size and sha256 match what the manifest publishes (no-op if
    ``dest`` exists). Used for a release folder read as a source (``BFA_SOURCE``).

    Raises
    ------
    IntegrityError
        The file differs from its manifest, or cannot be read (nothing is cached).
    CacheError
        The cache folder cannot be written (read-only, full...).
    """
    if dest.exists():
        return dest
    callback = callback or _NoCallback()
    callback.set_size(size)
    digest = hashlib.sha256()
    copied = 0

    def read_chunks():
        # Reading the release folder fails differently from writing the cache: its own error.
        try:
            with open(src, "rb") as raw:
                yield from iter(lambda: raw.read(CHUNK * 4), b"")
        except OSError as err:
            raise IntegrityError(
                f"cannot read {src}: {err.strerror or err}; check the release folder (a "
                "removed disk?) or copy it again",
                path=str(src),
            ) from None

    def write(fh) -> None:
        nonlocal copied
        more = ""
        for chunk in read_chunks():
            if size is not None and copied + len(chunk) > size:
                copied += len(chunk)  # longer than published: copy no further
                more = " or more"
                break
            fh.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
            callback.relative_update(len(chunk))
        actual = digest.hexdigest()
        if (size is not None and copied != size) or (sha256 is not None and actual != sha256):
            what = "size" if size is not None and copied != size else "sha256"
            raise IntegrityError(
                f"{what} mismatch for {src}:\n"
                f"  expected: {f'{size} bytes' if what == 'size' else sha256}\n"
                f"  actual:   {f'{copied} bytes{more}' if what == 'size' else actual}\n"
                "nothing was cached. The release folder is damaged or was changed after its "
                "manifest was written: rebuild it or copy it again",
                path=str(src),
                expected=size if what == "size" else sha256,
                actual=copied if what == "size" else actual,
            )
        if sha256 is None:
            log.warning("no sha256 published for %s; verified its size only", src.name)
        write_sidecar(dest, actual, copied)

    with cache_writes(cache_dir or dest.parent, dest, size=size):
        atomic_writer(dest, write)
    log.info("copied %s from release folder (%d bytes)", dest.name, copied)
    return dest
