"""The read-only fsspec filesystem behind remote queries: release assets by HTTP ranges.

:class:`RemoteFileSystem` (``bfa-remote://OWNER/REPO/VERSION/ASSET``) serves DuckDB
(through :mod:`intake_bfa.remote.relation`, whose docstring gives the design choices and their
measurements), pyarrow, pandas and Dask. Ranges are verified against the manifest (total
size, Parquet magic at both ends, an unchanged ETag): a range cannot be hashed.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import http.client
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import DownloadError, IntegrityError, NotCachedError
from intake_bfa.http import (
    lost_connection,
    open_url,
    parse_content_range,
    safe_url,
    with_retries,
)

# One logger name for every remote read (the relation and its filesystem), as users configure it.
log = logging.getLogger("intake_bfa.remote.relation")

PROTOCOL = "bfa-remote"
#: The footer read DuckDB and pyarrow both start with (their default); prefetched.
TAIL_BYTES = 64 * 1024
#: Footers up to this size are kept in memory whole (ours: ~1 % of the file).
FOOTER_LIMIT = 32 << 20
#: Block size when a caller picks a block cache (``cache_type="readahead"``...).
DEFAULT_BLOCK_SIZE = 128 * 1024
_MAGIC = b"PAR1"
_COUNTERS = ("bytes_transferred", "requests", "range_reads", "retries")
_PATH = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/([0-9A-Za-z][0-9A-Za-z._-]*)/([^/]+)$")


def offline_error(settings: Settings, what: str) -> NotCachedError:
    """The error of a remote read attempted with ``BFA_OFFLINE=1``."""
    return NotCachedError(
        f"{what} needs the network, and BFA_OFFLINE=1 forbids it; unset BFA_OFFLINE, or "
        "query the cached copy instead (to_duckdb(..., remote=False) downloads it once)",
        dataset=None,
        version=None,
        cache_dir=str(settings.cache_dir),
    )


def release_manifest(version: str, settings: Settings) -> Any:
    """The manifest of ``version`` (``"latest"`` resolved); no request once cached."""
    from intake_bfa.resolve import pin

    return pin(version, settings)


@dataclass
class _Asset:
    """One remote file: where it lives, what it must look like, what was learnt reading it."""

    version: str
    name: str
    size: int
    sha256: str | None
    modified: dt.datetime
    urls: list[str]
    url: str | None = None  # the candidate that answered first; never changed afterwards
    target: str | None = None  # signed redirect target being reused
    validator: str | None = None
    tail: bytes = b""
    warned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def parquet(self) -> bool:
        return self.name.endswith(".parquet")


class RemoteFile(AbstractBufferedFile):
    """A read-only remote file whose reads are ranged GETs (see :class:`RemoteFileSystem`).

    The position is per thread: DuckDB seeks, then reads, from several threads on one file
    object; a shared position could hand one thread another thread's bytes.
    """

    def __init__(self, fs: RemoteFileSystem, path: str, asset: _Asset, **kwargs: Any) -> None:
        self._pos = threading.local()
        self._asset = asset
        self._serial = threading.Lock()
        super().__init__(fs, path, mode="rb", size=asset.size, **kwargs)

    @property
    def loc(self) -> int:  # type: ignore[override]
        return getattr(self._pos, "loc", 0)

    @loc.setter
    def loc(self, value: int) -> None:
        self._pos.loc = value

    def read(self, length: int = -1) -> bytes:
        if self.cache.name == "none":  # stateless: reads may run in parallel
            return super().read(length)
        with self._serial:  # block caches keep state
            return super().read(length)

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.read_range(self._asset, start, min(end, self.size))


class RemoteFileSystem(AbstractFileSystem):
    """Release assets over HTTP range requests, as a read-only fsspec filesystem.

    Paths are ``bfa-remote://OWNER/REPO/VERSION/ASSET`` (:func:`intake_bfa.remote.relation.remote_url`);
    size, sha256 and URLs come from the (cached) release manifest: ``info`` sends nothing.

    Parameters
    ----------
    settings
        Configuration (token, API, timeout, retries); default :func:`get_settings`.
    cache_type, block_size
        fsspec cache of each opened file; ``"none"`` (default): each read is one ranged
        GET, which suits DuckDB's and pyarrow's coalesced reads.
    cache_redirects
        Reuse a redirect's signed URL until it answers 4xx (default), instead of asking
        the original URL (one more request) for every read.

    Attributes
    ----------
    bytes_transferred, requests, range_reads, retries
        Response body bytes received, HTTP requests (redirect hops included), ranged
        reads and retries, since creation or :meth:`reset_counters`.
    last_error
        The last exception a read raised (DuckDB only passes on its text).
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False  # every instance has its own counters

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        cache_type: str = "none",
        block_size: int = DEFAULT_BLOCK_SIZE,
        cache_redirects: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self.cache_type, self.block_size = cache_type, block_size
        self.cache_redirects = cache_redirects
        self._assets: dict[str, _Asset] = {}
        self._lock = threading.Lock()
        self.last_error: BaseException | None = None
        self.reset_counters()

    # -- counters ---------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Set the transfer counters to zero."""
        with self._lock:
            for name in _COUNTERS:
                setattr(self, name, 0)

    def stats(self) -> dict[str, int]:
        """The counters as a dict (a consistent snapshot)."""
        with self._lock:
            return {k: getattr(self, k) for k in _COUNTERS}

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    # -- paths and metadata -----------------------------------------------------------

    def asset(self, path: str) -> _Asset:
        """The asset behind ``path`` (resolved from the manifest once per instance)."""
        path = self._strip_protocol(path)
        with self._lock:
            found = self._assets.get(path)
        if found is not None:
            return found
        match = _PATH.match(path)
        if match is None:
            raise FileNotFoundError(
                f"{PROTOCOL}://{path}: not a remote asset path; use "
                f"{PROTOCOL}://OWNER/REPO/VERSION/ASSET (see intake_bfa.remote.relation.remote_url)"
            )
        from intake_bfa.fetch import asset_urls

        repo, version, name = match.groups()
        settings = self.settings.with_(repo=repo)
        manifest = release_manifest(version, settings)
        pinned = manifest.version
        entry = next((e for e in manifest.datasets.values() if e.asset == name), None)
        if entry is None or entry.size is None:
            # Without the published size, no range could be checked against anything.
            raise FileNotFoundError(f"{repo} {pinned} has no asset {name!r} of known size")
        stamp = manifest.raw.get("release", {}).get("published_at") or manifest.created_at
        try:
            modified = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            modified = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        found = _Asset(
            version=pinned,
            name=name,
            size=entry.size,
            sha256=entry.sha256,
            # DuckDB keys its file cache on (path, modified): a republished asset differs.
            modified=modified.astimezone(dt.UTC).replace(tzinfo=None),
            urls=asset_urls(settings, manifest, name, entry.urls),
        )
        with self._lock:
            return self._assets.setdefault(path, found)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        asset = self.asset(path)
        return {
            "name": self._strip_protocol(path),
            "size": asset.size,
            "type": "file",
            "version": asset.version,
            "sha256": asset.sha256,
        }

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entry = self.info(path)
        return [entry] if detail else [entry["name"]]

    def modified(self, path: str) -> dt.datetime:
        """The release's publication time (DuckDB needs it to key its file cache)."""
        return self.asset(path).modified

    def ukey(self, path: str) -> str:
        """The published sha256: identical bytes, identical key."""
        asset = self.asset(path)
        return asset.sha256 or f"{asset.version}/{asset.name}/{asset.size}"

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any):
        if mode != "rb":
            raise PermissionError(f"{PROTOCOL}:// is read-only; cannot open {path} with {mode!r}")
        asset = self.asset(path)
        return RemoteFile(
            self,
            self._strip_protocol(path),
            asset,
            block_size=block_size or self.block_size,
            cache_type=kwargs.get("cache_type", self.cache_type),
        )

    def check(self, path: str) -> None:
        """Fetch the footer now: size, magic and reachability fail here with typed errors.

        The footer is kept and served from memory: DuckDB reads it once to bind a
        relation and again to run it, and a view rebinds on every query.
        """
        asset = self.asset(path)
        size = asset.size
        if asset.tail:
            return
        tail = self._fetch(asset, max(0, size - TAIL_BYTES), size)
        if asset.parquet and len(tail) >= 8:
            need = int.from_bytes(tail[-8:-4], "little") + 8
            if need + 4 > size:
                raise self._integrity(asset, f"its footer length {need - 8} exceeds the file")
            if len(tail) < need <= FOOTER_LIMIT:
                tail = self._fetch(asset, size - need, size - len(tail)) + tail
        asset.tail = tail

    # -- reading ----------------------------------------------------------------------

    def read_range(self, asset: _Asset, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``asset``; the prefetched tail is served from memory."""
        if start >= end:
            return b""
        tail_start = asset.size - len(asset.tail)
        if asset.tail and end > tail_start:
            cached = asset.tail[max(start, tail_start) - tail_start : end - tail_start]
            if start >= tail_start:
                return cached
            return self._fetch(asset, start, tail_start) + cached
        return self._fetch(asset, start, end)

    def _fetch(self, asset: _Asset, start: int, end: int) -> bytes:
        if self.settings.offline:
            raise offline_error(self.settings, f"reading {asset.name} remotely")
        try:
            if asset.url is None:
                return self._first_fetch(asset, start, end)
            return self._retrying(asset, asset.url, start, end)
        except Exception as err:
            # A copy without traceback: its frames would tie this filesystem (held by DuckDB
            # from C++) to the connection in a cycle the garbage collector cannot free.
            with contextlib.suppress(Exception):
                self.last_error = None
                self.last_error = copy.copy(err)
            raise

    def _first_fetch(self, asset: _Asset, start: int, end: int) -> bytes:
        # The first candidate that answers is kept for good: bytes from two servers must
        # never be mixed, since only sizes (not contents) can be checked for a range.
        errors: list[Exception] = []
        for url in asset.urls:
            try:
                data = self._retrying(asset, url, start, end)
            except (DownloadError, IntegrityError) as err:
                errors.append(err)
                log.warning("%s failed for %s; trying the next URL", safe_url(url), asset.name)
                continue
            with asset.lock:
                asset.url = asset.url or url
            return data
        if not errors:
            raise DownloadError(f"no URL to read {asset.name} from", url=None, status=None)
        raise next((e for e in errors if isinstance(e, IntegrityError)), errors[-1])

    def _retrying(self, asset: _Asset, url: str, start: int, end: int) -> bytes:
        return with_retries(
            lambda: self._attempt(asset, url, start, end),
            self.settings,
            what=f"range read of {asset.name} from {safe_url(url)}",
            on_retry=lambda err: self._count(retries=1),
        )

    def _attempt(self, asset: _Asset, url: str, start: int, end: int) -> bytes:
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept": "application/octet-stream"}
        target = asset.target if self.cache_redirects else None
        try:
            resp = open_url(target or url, self.settings, headers=headers, ok=(200, 206))
        except DownloadError as err:
            status = err.context.get("status") or 0
            if not target or not 400 <= status < 500:
                raise
            # The signed URL expired (or was revoked): a fresh one comes from the original.
            log.debug("signed URL for %s answered %s; asking %s", asset.name, status, url)
            self._count(requests=1)
            with asset.lock:
                asset.target = None
            resp = open_url(url, self.settings, headers=headers, ok=(200, 206))
            target = None
        hops = 1 if resp.url == (target or url) else 2  # GitHub: exactly one redirect
        self._count(requests=hops, range_reads=1)
        if self.cache_redirects and resp.url != (target or url):
            with asset.lock:
                asset.target = resp.url
        with resp:
            data, received = self._body(asset, resp, url, start, end)
        self._count(bytes_transferred=received)
        if asset.parquet and (
            (start == 0 and data[:4] != _MAGIC)
            or (end == asset.size and len(data) >= 4 and data[-4:] != _MAGIC)
        ):
            raise self._integrity(asset, "it does not start and end with PAR1")
        return data

    def _body(self, asset: _Asset, resp: Any, url: str, start: int, end: int):
        """Check the headers, read the wanted bytes; returns (data, body bytes received)."""
        skip = 0
        if resp.status == 206:
            parsed = parse_content_range(resp.headers.get("Content-Range"))
            if parsed is None or parsed[:2] != (start, end - 1):
                raise DownloadError(
                    f"{safe_url(resp.url)} answered Content-Range "
                    f"{resp.headers.get('Content-Range')!r} to a request for {start}-{end - 1}",
                    url=safe_url(url),
                    status=206,
                )
            total = parsed[2]
        else:  # 200: the server ignored Range; the body is the whole file
            length = resp.headers.get("Content-Length")
            total, skip = int(length) if length else None, start
            if not asset.warned:
                asset.warned = True
                log.warning(
                    "%s ignores Range requests: each remote read of %s transfers the file "
                    "up to the bytes wanted; consider to_duckdb(..., remote=False)",
                    safe_url(resp.url),
                    asset.name,
                )
        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        with asset.lock:
            asset.validator = asset.validator or validator
        if total is not None and total != asset.size:
            why = f"{safe_url(resp.url)} serves {total} bytes, the manifest says {asset.size}"
            raise self._integrity(asset, why)
        if validator is not None and validator != asset.validator:
            raise self._integrity(asset, f"{safe_url(resp.url)} changed while being read")
        _read_exact(resp.stream, skip, resp.url, keep=False)
        return _read_exact(resp.stream, end - start, resp.url), skip + end - start

    @staticmethod
    def _integrity(asset: _Asset, why: str) -> IntegrityError:
        return IntegrityError(
            f"remote {asset.name} of version {asset.version} is not the published file: {why}; "
            "retry later, or download it (remote=False) to verify its sha256",
            asset=asset.name,
            version=asset.version,
            expected=asset.size,
        )


def _read_exact(stream: Any, n: int, url: str, *, keep: bool = True) -> bytes:
    """Read exactly ``n`` body bytes (discarding them if not ``keep``); short is retryable."""
    chunks, got = [], 0
    while got < n:
        try:
            chunk = stream.read(min(n - got, 1 << 20))
        except (OSError, http.client.HTTPException) as err:
            raise lost_connection(url, err) from None
        if not chunk:
            raise lost_connection(url, EOFError(f"body ended after {got} of {n} bytes"))
        got += len(chunk)
        if keep:
            chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["PROTOCOL", "RemoteFile", "RemoteFileSystem"]
