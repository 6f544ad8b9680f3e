"""The one path by which bytes enter the cache: stream, hash, verify, move into place.

Every downloaded asset goes through :func:`download`, every decompressed one
through :func:`decompress`. Both write a temporary file next to the target and
``os.replace`` it only after verification, so a file under its final name is
always complete and verified; a failure leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cache import atomic_writer
from .config import Settings
from .errors import DownloadError, IntegrityError
from .http import open_url, safe_url

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # 1 MiB: large enough for ~1 GB/s on loopback, small enough for memory


class _NoCallback:
    """Stand-in for an fsspec ``Callback`` when the caller passes none."""

    def set_size(self, size: Any) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        pass


def download(
    urls: Sequence[str],
    dest: Path,
    settings: Settings,
    *,
    size: int | None,
    sha256: str | None,
    callback: Any = None,
) -> Path:
    """Download the first URL that works into ``dest``, verified.

    Parameters
    ----------
    urls
        Candidate URLs for the same bytes, tried in order (release asset, mirrors).
    dest
        Final path; it exists afterwards only if the bytes matched.
    settings
        Timeout and token rules (the token only goes to the API origin).
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
        The bytes did not match (nothing is left in the cache).
    DownloadError
        Every URL failed; the last error is chained.
    """
    if dest.exists():
        return dest
    callback = callback or _NoCallback()
    last: Exception | None = None
    for url in urls:
        try:
            return _download_one(url, dest, settings, size, sha256, callback)
        except DownloadError as err:
            log.warning("download of %s failed: %s", safe_url(url), err)
            last = err
    if last is None:
        raise DownloadError(f"no URL to download {dest.name} from", path=str(dest), url=None)
    raise last


def _download_one(
    url: str, dest: Path, settings: Settings, size: int | None, sha256: str | None, callback: Any
) -> Path:
    started = time.perf_counter()
    digest = hashlib.sha256()
    received = 0

    def write(fh) -> None:
        nonlocal received
        with open_url(url, settings, headers={"Accept": "application/octet-stream"}) as resp:
            length = resp.headers.get("Content-Length")
            callback.set_size(size if size is not None else (int(length) if length else None))
            read = resp.stream.read
            while True:
                try:
                    chunk = read(CHUNK)
                except OSError as err:
                    raise DownloadError(
                        f"connection lost while downloading {safe_url(url)} after "
                        f"{received} bytes: {err}",
                        url=safe_url(url),
                        status=None,
                    ) from None
                if not chunk:
                    break
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                callback.relative_update(len(chunk))
        _verify(url, dest, received, digest.hexdigest(), size, sha256)

    atomic_writer(dest, write, suffix=".part")
    elapsed = time.perf_counter() - started
    log.info(
        "downloaded %s (%d bytes, %.1f MB/s) into %s",
        safe_url(url),
        received,
        received / 1e6 / max(elapsed, 1e-9),
        dest,
    )
    return dest


def _verify(
    url: str, dest: Path, received: int, actual: str, size: int | None, sha256: str | None
) -> None:
    if size is not None and received != size:
        if received < size:
            # A short body is a transport failure, not corruption: retryable.
            raise DownloadError(
                f"download of {safe_url(url)} ended early: {received} of {size} bytes",
                url=safe_url(url),
                status=None,
            )
        raise IntegrityError(
            f"size mismatch for {dest.name} from {safe_url(url)}: expected {size} bytes, "
            f"got {received}; nothing was cached. Retry; if it persists the release is "
            "damaged: report it to its publisher",
            url=safe_url(url),
            path=str(dest),
            expected=size,
            actual=received,
        )
    if sha256 is not None and actual != sha256:
        raise IntegrityError(
            f"sha256 mismatch for {dest.name} from {safe_url(url)}:\n"
            f"  expected: {sha256}\n  actual:   {actual}\n"
            "nothing was cached. Retry; if it persists the release is damaged: report it "
            "to its publisher",
            url=safe_url(url),
            path=str(dest),
            expected=sha256,
            actual=actual,
        )
    if sha256 is None:
        log.warning("no sha256 published for %s; verified its size only", dest.name)


def decompress(src: Path, dest: Path, compression: str, *, callback: Any = None) -> Path:
    """Decompress a verified ``src`` into ``dest`` atomically (no-op if ``dest`` exists)."""
    if dest.exists():
        return dest
    callback = callback or _NoCallback()
    callback.set_size(os.path.getsize(src))

    def write(fh) -> None:
        with open(src, "rb") as raw:
            if compression == "gzip":
                reader: Any = gzip.GzipFile(fileobj=raw)
            elif compression == "zstd":
                import zstandard  # optional: only producers that choose zstd need it

                reader = zstandard.ZstdDecompressor().stream_reader(raw)
            else:
                raise ValueError(f"unsupported compression {compression!r}")
            last = 0
            with reader:
                while True:
                    chunk = reader.read(CHUNK * 4)
                    if not chunk:
                        break
                    fh.write(chunk)
                    pos = raw.tell()
                    callback.relative_update(pos - last)
                    last = pos

    try:
        atomic_writer(dest, write)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        src.unlink(missing_ok=True)
        raise IntegrityError(
            f"cannot decompress {src.name}: {err}; the cached copy is removed, retry to "
            "download it again",
            path=str(src),
        ) from None
    return dest
