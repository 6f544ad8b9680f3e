"""The download origins: github.com's 302 redirect and the signed, Range-capable object store."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from intake_bfa.testing.server.errors import expired, not_found, xml_error
from intake_bfa.testing.server.faults import ignores_range, send
from intake_bfa.testing.server.store import Store

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _parse_range(value: str, total: int) -> tuple[int, int] | None:
    """Inclusive span of a single byte range; None means ignore the header (serve 200)."""
    m = _RANGE.fullmatch(value.strip())
    if m is None or not (m[1] or m[2]) or (m[1] and m[2] and int(m[2]) < int(m[1])):
        return None  # multi-range or malformed: RFC 9110 allows answering with the full body
    start = max(total - int(m[2]), 0) if not m[1] else int(m[1])
    if start >= total or (not m[1] and int(m[2]) == 0):
        headers = {"Content-Range": f"bytes */{total}"}
        raise web.HTTPRequestRangeNotSatisfiable(headers=headers)
    return start, min(int(m[2]), total - 1) if m[1] and m[2] else total - 1


class Signer:
    """Signs object-store URLs with a per-server key, valid for ``ttl`` seconds.

    Parameters
    ----------
    ttl : float
        Seconds a signed URL stays valid.
    url : callable
        Maps an origin name to its base URL.
    """

    def __init__(self, ttl: float, url: Callable[[str], str]) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl, self._url = ttl, url

    def _sign(self, path: str, expires: str) -> str:
        return hmac.new(self._key, f"{path}{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, full_name: str, asset_id: int) -> str:
        """A fresh signed object-store URL for asset ``asset_id`` of ``full_name``."""
        path = f"/{full_name}/assets/{asset_id}"
        expires = f"{time.time() + self._ttl:.3f}"  # milliseconds, so sub-second TTLs work
        signature = self._sign(path, expires)
        return f"{self._url('objects')}{path}?expires={expires}&signature={signature}"

    def check(self, request: web.Request) -> web.Response | None:
        """The 403 to answer if ``request`` is not validly signed or has expired, else None."""
        expires, signature = request.query.get("expires", ""), request.query.get("signature", "")
        if not hmac.compare_digest(signature.encode(), self._sign(request.path, expires).encode()):
            return xml_error(403, "AccessDenied", "Request signature does not match")
        if float(expires) < time.time():  # well-formed: we signed it ourselves
            return expired()
        return None


class DownloadOrigins:
    """Handlers of the web (github.com) and objects origins.

    Parameters
    ----------
    store : Store
        The releases served.
    signer : Signer
        Signs the redirect targets and checks the object-store requests.
    chunk_size : int
        Bytes per write when streaming bodies.
    """

    def __init__(self, store: Store, signer: Signer, *, chunk_size: int) -> None:
        self._store, self._signer, self._chunk_size = store, signer, chunk_size

    async def web(self, request: web.Request) -> web.StreamResponse:
        """Redirect a github.com download URL to a signed object-store URL."""
        info = request.match_info
        with self._store.lock:  # downloads only ever see published releases
            repo, rels = self._store.visible(info["o"], info["r"], authed=False)
            rel = next((r for r in rels if r.tag == info["tag"]), None)
            asset = rel.assets.get(info["name"]) if rel else None
        if repo is None or asset is None:
            return not_found("web")
        location = self._signer.url(repo.full_name, asset.id)
        resp, _ = await send(
            request, 302, {"Location": location}, b"Found", chunk_size=self._chunk_size
        )
        return resp

    async def objects(self, request: web.Request) -> web.StreamResponse:
        """Serve an asset's bytes from a signed URL, honouring Range and If-Range."""
        if (denied := self._signer.check(request)) is not None:
            return denied
        info = request.match_info
        with self._store.lock:  # no draft check: a valid signature proves access was granted
            asset = self._store.asset(info["o"], info["r"], info["aid"])
        if asset is None:  # e.g. replaced since the URL was signed
            return not_found("objects")
        etag = f'"0x{asset.sha256[:16].upper()}"'
        modified = email.utils.format_datetime(asset.updated_at, usegmt=True)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": modified,
            "Accept-Ranges": "bytes",
        }
        start, end, status = 0, asset.size - 1, 200
        range_, if_range = request.headers.get("Range"), request.headers.get("If-Range")
        # An If-Range naming another version means "send me the whole new one instead".
        if (
            range_
            and not ignores_range()
            and (if_range is None or if_range.strip() in (etag, modified))
            and (span := _parse_range(range_, asset.size)) is not None
        ):
            (start, end), status = span, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{asset.size}"
        resp, complete = await send(
            request,
            status,
            headers,
            asset.source,
            start,
            end - start + 1,
            chunk_size=self._chunk_size,
        )
        if complete and end == asset.size - 1:  # count a download once, resumed or not
            with self._store.lock:
                asset.download_count += 1
        return resp
