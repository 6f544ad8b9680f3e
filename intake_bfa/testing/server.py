"""A local stand-in for GitHub Releases, served over real sockets.

:class:`ReleaseServer` serves the three hosts a release download touches (REST API, github.com
download redirects, signed object store) from a background thread, implements the subset of
GitHub that download clients rely on, and injects faults so retry and resume paths are testable.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import itertools
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

__all__ = ["RecordedRequest", "ReleaseServer"]

log = logging.getLogger(__name__)

_JSON = "application/json; charset=utf-8"
_DOCS = "https://docs.github.com/rest"
_ORIGINS = ("api", "web", "objects")
_FAULTS = ("status", "reset", "truncate", "slow", "ignore_range", "expired", "corrupt")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# mimetypes reports compression as an "encoding"; GitHub labels such files by it.
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
_AUTHOR = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
_RATE_MSG = (
    "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated "
    "requests get a higher rate limit. Check out the documentation for more details.)"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by a :class:`ReleaseServer`.

    Attributes
    ----------
    origin : str
        ``"api"``, ``"web"`` or ``"objects"``.
    method : str
        HTTP method, e.g. ``"GET"``.
    path : str
        Path plus query string, exactly as sent (still percent-encoded).
    headers : dict of str to str
        Request headers as received.
    status : int
        Status code answered (for cut-short responses, the status line that was sent).
    """

    origin: str
    method: str
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class _Asset:
    name: str
    source: bytes | Path  # bytes live in memory; a Path is streamed from disk when served
    size: int
    sha256: str
    with_digest: bool
    id: int = 0
    updated_at: datetime = field(default_factory=lambda: _utc(None))
    download_count: int = 0


@dataclass
class _Release:
    id: int
    tag: str
    name: str
    body: str
    draft: bool
    prerelease: bool
    created_at: datetime
    assets: dict[str, _Asset] = field(default_factory=dict)


@dataclass
class _Repo:
    id: int
    full_name: str
    releases: dict[str, _Release] = field(default_factory=dict)


@dataclass
class _Fault:
    regex: re.Pattern[str]
    kind: str
    times: int
    status: int
    headers: dict[str, str]
    after_bytes: int
    delay: float


# The fault picked for the request being handled: aiohttp runs each request in its own task
# (and so its own context), and the middleware sets it before every handler.
_FAULT: ContextVar[_Fault | None] = ContextVar("_FAULT", default=None)


def _utc(dt: datetime | None) -> datetime:
    # GitHub timestamps have one-second resolution; truncating keeps our sort order identical
    # to the one a client can reconstruct from the JSON.
    dt = (dt or datetime.now(UTC)).replace(microsecond=0)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _load(name: str, data: bytes | str | os.PathLike[str], with_digest: bool) -> _Asset:
    if isinstance(data, bytes | bytearray | memoryview):
        blob = bytes(data)
        return _Asset(name, blob, len(blob), hashlib.sha256(blob).hexdigest(), with_digest)
    path, digest, size = Path(data), hashlib.sha256(), 0
    with path.open("rb") as fh:  # streamed: assets may be hundreds of MB
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return _Asset(name, path, size, digest.hexdigest(), with_digest)


def _api_error(status: int, message: str) -> web.Response:
    payload = {"message": message, "documentation_url": _DOCS, "status": str(status)}
    return web.Response(status=status, body=json.dumps(payload), headers={"Content-Type": _JSON})


def _xml_error(status: int, code: str, message: str) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code>"
    body += f"<Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


def _not_found(origin: str) -> web.Response:
    if origin == "api":
        return _api_error(404, "Not Found")
    if origin == "objects":
        return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
    return web.Response(status=404, text="Not Found")


class ReleaseServer:
    """In-process fake of GitHub Releases on three local HTTP origins.

    Parameters
    ----------
    token : str, optional
        Token that authenticates API requests (``Authorization: Bearer <token>`` or
        ``token <token>``); authenticated requests see drafts and get free 304s. Any other
        token is treated as anonymous.
    signed_url_ttl : float
        Seconds an objects-origin signed URL stays valid.
    rate_limit : int
        API requests allowed (per server lifetime) before the API answers 403.
    chunk_size : int
        Bytes per write when streaming response bodies.

    Attributes
    ----------
    requests : list of RecordedRequest
        Every request on the three origins, appended (under a lock) as its response starts.

    Examples
    --------
    >>> with ReleaseServer() as srv:  # doctest: +SKIP
    ...     rel = srv.add_release("o/r", "v1", {"a.csv": b"x,y\\n"})
    ...     urllib.request.urlopen(rel["assets"][0]["browser_download_url"]).read()
    """

    api_url = property(lambda self: self._url("api"), doc="REST API origin (api.github.com).")
    web_url = property(lambda self: self._url("web"), doc="github.com origin (downloads).")
    objects_url = property(lambda self: self._url("objects"), doc="Signed object store origin.")

    def __init__(
        self,
        *,
        token: str | None = None,
        signed_url_ttl: float = 300.0,
        rate_limit: int = 5000,
        chunk_size: int = 256 * 1024,
    ) -> None:
        self._token, self._ttl, self._limit = token, signed_url_ttl, rate_limit
        self._chunk_size = max(1, chunk_size)
        self._used, self._reset_at = 0, 0  # rate-limit state, touched only on the loop thread
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()  # guards repos, faults, requests and download counts
        self._ids = itertools.count(1)
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[str, list[_Fault]] = {o: [] for o in _ORIGINS}
        self._urls: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.requests: list[RecordedRequest] = []

    def _url(self, origin: str) -> str:
        if origin not in self._urls:
            raise RuntimeError("ReleaseServer is not started; call start() first")
        return self._urls[origin]

    def start(self) -> ReleaseServer:
        """Bind three ports on 127.0.0.1 and serve them from a daemon thread.

        Returns
        -------
        ReleaseServer
            ``self``, so ``srv = ReleaseServer().start()`` works.
        """
        if self._loop is not None:
            raise RuntimeError("ReleaseServer is already running")
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="ReleaseServer", daemon=True)
        self._thread.start()
        self._reset_at = int(time.time()) + 3600
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(30)
        except BaseException:
            self.stop()
            raise
        log.info("ReleaseServer listening on %s", self._urls)
        return self

    def stop(self) -> None:
        """Close the sites and the loop and join the thread; safe to call twice."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> ReleaseServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        rel = "/repos/{o}/{r}/releases"
        # fmt: off
        routes = {"api": [("/repos/{o}/{r}", "repo"), (rel, "releases"),
                          (f"{rel}/latest", "latest"), (f"{rel}/tags/{{tag:.+}}", "tag"),
                          (rf"{rel}/{{rid:\d+}}", "id"),
                          (rf"{rel}/{{rid:\d+}}/assets", "assets"),
                          (rf"{rel}/assets/{{aid:\d+}}", "asset")],
                  "web": [("/{o}/{r}/releases/download/{tag:.+}/{name:[^/]+}", "web")],
                  "objects": [(r"/{o}/{r}/assets/{aid:\d+}", "objects")]}
        # fmt: on
        handlers = {"api": self._h_api, "web": self._h_web, "objects": self._h_object}
        for origin in _ORIGINS:
            app = web.Application(middlewares=[self._middleware(origin)])
            app.on_response_prepare.append(self._on_prepare(origin))
            for path, name in routes[origin]:
                app.router.add_get(path, handlers[origin], name=name)
            app.router.add_route("*", "/{tail:.*}", self._fallback(origin))
            # A short shutdown_timeout keeps stop() quick while a "slow" fault is sleeping.
            runner = web.AppRunner(app, shutdown_timeout=0.5)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._urls[origin] = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _shutdown(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await asyncio.get_running_loop().shutdown_default_executor()

    # -- state ---------------------------------------------------------------------------

    def add_repo(self, repo: str) -> None:
        """Create repository ``"owner/name"`` with no releases (no-op if it exists)."""
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ValueError(f"repo must look like 'owner/name', got {repo!r}")
        with self._lock:
            if repo.lower() not in self._repos:  # GitHub matches owner/repo case-insensitively
                self._repos[repo.lower()] = _Repo(next(self._ids), repo)

    def _release(self, repo: str, tag: str) -> tuple[_Repo, _Release]:
        rec = self._repos.get(repo.lower())
        if rec is None or tag not in rec.releases:
            raise KeyError(f"no release {tag!r} in {repo!r}")
        return rec, rec.releases[tag]

    def add_release(
        self,
        repo: str,
        tag: str,
        assets: Mapping[str, bytes | str | os.PathLike[str]],
        *,
        name: str | None = None,
        body: str = "",
        draft: bool = False,
        prerelease: bool = False,
        created_at: datetime | None = None,
        with_digest: bool = True,
    ) -> dict[str, Any]:
        """Publish a release, creating the repository if needed.

        Parameters
        ----------
        repo : str
            ``"owner/name"``.
        tag : str
            Tag name, new in ``repo``.
        assets : mapping of str to bytes, str or path-like
            Asset name to content. Bytes are kept in memory; a str or path-like is a file,
            hashed now and streamed from disk whenever it is served.
        name, body, draft, prerelease
            Release fields; ``name`` defaults to ``tag``.
        created_at : datetime, optional
            Creation time (naive means UTC); defaults to now.
        with_digest : bool
            If false, assets carry ``"digest": null`` like releases made before 2025.

        Returns
        -------
        dict
            The release JSON, as the API serves it.
        """
        self._url("api")  # the JSON embeds URLs, so fail before mutating anything
        loaded = [_load(n, d, with_digest) for n, d in assets.items()]  # hash outside the lock
        name = tag if name is None else name
        self.add_repo(repo)
        with self._lock:
            rec = self._repos[repo.lower()]
            if tag in rec.releases:
                raise ValueError(f"release {tag!r} already exists in {repo!r}")
            rel = _Release(next(self._ids), tag, name, body, draft, prerelease, _utc(created_at))
            for asset in loaded:
                asset.id = next(self._ids)
                rel.assets[asset.name] = asset
            rec.releases[tag] = rel
            return self._release_json(rec, rel)

    def replace_asset(
        self,
        repo: str,
        tag: str,
        name: str,
        data: bytes | str | os.PathLike[str],
        *,
        with_digest: bool = True,
    ) -> dict[str, Any]:
        """Re-upload asset ``name`` as a rolling release does (delete, then upload).

        Returns
        -------
        dict
            The new asset JSON: new id and digest, strictly later ``updated_at``.

        Raises
        ------
        KeyError
            If the release or the asset does not exist.
        """
        self._url("api")
        new = _load(name, data, with_digest)
        with self._lock:
            rec, rel = self._release(repo, tag)
            old = rel.assets[name]
            new.id = next(self._ids)
            new.updated_at = max(new.updated_at, old.updated_at + timedelta(seconds=1))
            rel.assets[name] = new
            return self._asset_json(rec, rel, new)

    def delete_release(self, repo: str, tag: str) -> None:
        """Delete a release and its assets; KeyError if it does not exist."""
        with self._lock:
            rec, _ = self._release(repo, tag)
            del rec.releases[tag]

    def clear_requests(self) -> None:
        """Forget all recorded requests."""
        with self._lock:
            self.requests.clear()

    def count(self, origin: str | None = None, path_contains: str = "") -> int:
        """Count recorded requests on ``origin`` (any if None) whose path contains a string."""
        with self._lock:
            return sum(
                origin in (None, r.origin) and path_contains in r.path for r in self.requests
            )

    def inject(
        self,
        origin: str,
        path_regex: str,
        fault: str,
        *,
        times: int = 1,
        status: int = 500,
        headers: Mapping[str, str] | None = None,
        after_bytes: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for the next ``times`` requests on ``origin`` matching a regex.

        Parameters
        ----------
        origin : {"api", "web", "objects"}
            Origin whose requests are affected.
        path_regex : str
            ``re.search``-ed against the raw path plus query string.
        fault : str
            ``"status"`` answers ``status`` with ``headers``; ``"reset"`` (TCP RST) and
            ``"truncate"`` (clean close) cut the body after ``after_bytes``; ``"slow"``
            sleeps ``delay`` before each chunk past ``after_bytes``; ``"ignore_range"``
            answers a Range request with 200; ``"expired"`` answers 403 AccessDenied;
            ``"corrupt"`` flips bytes without changing the length.
        times : int
            Number of matching requests the fault applies to.
        status, headers, after_bytes, delay
            Parameters of the fault kinds above.
        """
        if origin not in _ORIGINS or fault not in _FAULTS or times < 1:
            raise ValueError(f"bad fault {fault!r} on origin {origin!r} (times={times})")
        f = _Fault(
            re.compile(path_regex), fault, times, status, dict(headers or {}), after_bytes, delay
        )
        with self._lock:
            self._faults[origin].append(f)

    # -- plumbing shared by the origins ----------------------------------------------------

    def _middleware(self, origin: str) -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            if origin == "api" and self._used >= self._limit:
                return _api_error(403, _RATE_MSG)
            fault = self._take_fault(origin, request.raw_path)
            _FAULT.set(fault)
            if fault is not None and fault.kind == "status":
                if origin == "api":
                    resp = _api_error(fault.status, "Injected fault")
                else:
                    resp = web.Response(status=fault.status, text="Injected fault")
                resp.headers.update(fault.headers)
                return resp
            if fault is not None and fault.kind == "expired":
                return _xml_error(403, "AccessDenied", "Request has expired")
            return await handler(request)

        return middleware

    def _on_prepare(self, origin: str) -> Any:
        # Runs right before the status line goes out, so it sees the status really sent,
        # also for responses later cut short and for aiohttp's own error pages.
        async def hook(request: web.Request, response: web.StreamResponse) -> None:
            if origin == "api":
                # GitHub only promises free conditional requests when authenticated.
                if response.status != 304 or not self._authed(request):
                    self._used = min(self._limit, self._used + 1)
                rate = {
                    "Limit": self._limit,
                    "Remaining": self._limit - self._used,
                    "Used": self._used,
                    "Reset": self._reset_at,
                    "Resource": "core",
                }
                for key, value in rate.items():
                    # setdefault lets an injected fault fake its own rate-limit headers.
                    response.headers.setdefault(f"X-RateLimit-{key}", str(value))
            headers = dict(request.headers)
            rec = RecordedRequest(
                origin, request.method, request.raw_path, headers, response.status
            )
            with self._lock:
                self.requests.append(rec)

        return hook

    def _take_fault(self, origin: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults[origin]:
                if fault.regex.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults[origin].remove(fault)
                    log.debug("injecting %s fault into %s %s", fault.kind, origin, path)
                    return fault
        return None

    def _authed(self, request: web.Request) -> bool:
        scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
        return (
            self._token is not None
            and scheme.lower() in ("bearer", "token")
            and hmac.compare_digest(cred.strip().encode(), self._token.encode())
        )

    async def _send(
        self,
        request: web.Request,
        status: int,
        headers: dict[str, str],
        source: bytes | Path,
        start: int = 0,
        size: int | None = None,
    ) -> tuple[web.StreamResponse, bool]:
        """Stream ``size`` bytes of ``source`` from ``start``; True if all were sent."""
        size = len(source) - start if isinstance(source, bytes) and size is None else size
        fault = _FAULT.get()
        kind, after = (fault.kind, fault.after_bytes) if fault else ("", 0)
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = size
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp, False
        end = min(after, size) if kind in ("reset", "truncate") else size
        fh = None
        try:
            if isinstance(source, Path):  # file I/O in a thread so big files can't stall the loop
                fh = await asyncio.to_thread(source.open, "rb")
                await asyncio.to_thread(fh.seek, start)
            off = 0
            while off < end:
                # Never let a chunk straddle after_bytes, so "slow" starts exactly there.
                n = min(end - off, self._chunk_size, *([after - off] if off < after else []))
                pos = start + off
                chunk = source[pos : pos + n] if fh is None else await asyncio.to_thread(fh.read, n)
                if not chunk:
                    raise OSError(f"{source} shrank while being served")
                if kind == "slow" and off >= after:
                    await asyncio.sleep(fault.delay)  # type: ignore[union-attr]
                if kind == "corrupt":
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                await resp.write(chunk)
                off += len(chunk)
            if kind not in ("reset", "truncate"):
                return resp, True
            transport = request.transport
            assert transport is not None
            # Flush what was written first, so the client sees exactly after_bytes of body.
            for _ in range(400):
                if not transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.005)
            if kind == "truncate":
                transport.close()
                return resp, False
            await asyncio.sleep(0.01)  # let loopback deliver the bytes before the RST
            # Linger 0 turns close() into an RST: the client gets "connection reset by peer".
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        except ConnectionError:
            log.debug("client went away during %s", request.raw_path)
        finally:
            if fh is not None:
                fh.close()
        return resp, False

    @staticmethod
    def _fallback(origin: str) -> Any:
        async def not_found(request: web.Request) -> web.Response:
            return _not_found(origin)

        return not_found

    # -- API origin --------------------------------------------------------------------------

    def _asset_json(self, repo: _Repo, rel: _Release, a: _Asset) -> dict[str, Any]:
        ctype, enc = mimetypes.guess_type(a.name, strict=False)
        # fmt: off
        return {
            "url": f"{self.api_url}/repos/{repo.full_name}/releases/assets/{a.id}",
            "id": a.id, "node_id": f"RA_{a.id:010d}", "name": a.name, "label": "",
            "uploader": _AUTHOR, "state": "uploaded", "size": a.size,
            "content_type": _ENCODED.get(enc or "") or ctype or "application/octet-stream",
            "digest": f"sha256:{a.sha256}" if a.with_digest else None,
            "download_count": a.download_count,
            # A re-upload is a brand-new asset, so both times move together.
            "created_at": _ts(a.updated_at), "updated_at": _ts(a.updated_at),
            "browser_download_url": f"{self.web_url}/{repo.full_name}/releases/download/"
                                    f"{quote(rel.tag)}/{quote(a.name, safe='')}",
        }
        # fmt: on

    def _release_json(self, repo: _Repo, rel: _Release) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{repo.full_name}/releases/{rel.id}"
        # fmt: off
        return {
            "url": url, "assets_url": f"{url}/assets", "upload_url": f"{url}/assets{{?name,label}}",
            "html_url": f"{self.web_url}/{repo.full_name}/releases/tag/{quote(rel.tag)}",
            "id": rel.id, "node_id": f"RE_{rel.id:010d}", "tag_name": rel.tag,
            "target_commitish": "main", "name": rel.name, "body": rel.body,
            "draft": rel.draft, "prerelease": rel.prerelease, "created_at": _ts(rel.created_at),
            "published_at": None if rel.draft else _ts(rel.created_at), "author": _AUTHOR,
            "assets": [self._asset_json(repo, rel, a) for a in rel.assets.values()],
        }
        # fmt: on

    def _visible(self, request: web.Request) -> tuple[_Repo | None, list[_Release]]:
        """The repo named in the URL and the releases this caller may see, newest first."""
        repo = self._repos.get(f"{request.match_info['o']}/{request.match_info['r']}".lower())
        authed = self._authed(request)
        rels = [r for r in (repo.releases.values() if repo else ()) if authed or not r.draft]
        return repo, sorted(rels, key=lambda r: (r.created_at, r.id), reverse=True)

    def _payload(
        self, kind: str, info: Mapping[str, str], repo: _Repo, rels: list[_Release]
    ) -> Any:
        if kind == "repo":
            owner, name = repo.full_name.split("/")
            return {
                "id": repo.id, "node_id": f"R_{repo.id:010d}", "name": name,
                "full_name": repo.full_name, "private": False, "owner": {"login": owner},
                "url": f"{self.api_url}/repos/{repo.full_name}", "default_branch": "main",
            }  # fmt: skip
        if kind == "releases":
            return [self._release_json(repo, r) for r in rels]
        if kind == "asset":
            found = [(r, a) for r in rels for a in r.assets.values() if str(a.id) == info["aid"]]
            return self._asset_json(repo, *found[0]) if found else None
        if kind == "latest":
            rels = [r for r in rels if not (r.draft or r.prerelease)]
        else:  # "tag", "id" or "assets"
            rels = [r for r in rels if r.tag == info.get("tag") or str(r.id) == info.get("rid")]
        out = self._release_json(repo, rels[0]) if rels else None
        return out["assets"] if out and kind == "assets" else out

    def _paginate(self, request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        query = {k: int(v) for k, v in request.rel_url.query.items() if v.isdigit()}
        per_page, page = min(query.get("per_page") or 30, 100), max(query.get("page", 1), 1)
        last = max(1, math.ceil(len(items) / per_page))
        rels = [(page - 1, "prev")] if page > 1 else []
        rels += [(page + 1, "next"), (last, "last")] if page < last else []
        rels += [(1, "first")] if page > 1 else []
        link = ", ".join(
            f'<{self.api_url}{request.rel_url.update_query(page=p)}>; rel="{rel}"'
            for p, rel in rels
        )
        return items[(page - 1) * per_page : page * per_page], {"Link": link} if link else {}

    async def _h_api(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info.route.name or ""
        with self._lock:  # build JSON under the lock: add_release may run concurrently
            repo, rels = self._visible(request)
            payload = self._payload(kind, request.match_info, repo, rels) if repo else None
        if payload is None or repo is None:
            return _api_error(404, "Not Found")
        headers: dict[str, str] = {}
        if kind == "asset" and "application/octet-stream" in request.headers.get("Accept", ""):
            # As on GitHub: binary requests are redirected to a signed object-store URL.
            headers["Location"] = self._signed_url(repo.full_name, payload["id"])
            resp, _ = await self._send(request, 302, headers, b"")
            return resp
        if kind in ("releases", "assets"):
            payload, headers = self._paginate(request, payload)
        body = json.dumps(payload).encode()
        etag = f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()}"'
        # If-None-Match compares weakly (RFC 9110 section 13.1.2), so W/ prefixes are ignored.
        tags = {
            t.strip().removeprefix("W/")
            for t in request.headers.get("If-None-Match", "").split(",")
        }
        if tags & {"*", etag}:
            return web.Response(status=304, headers={"ETag": etag})
        resp, _ = await self._send(
            request, 200, {"Content-Type": _JSON, "ETag": etag, **headers}, body
        )
        return resp

    # -- web and objects origins ---------------------------------------------------------------

    def _sign(self, path: str, expires: str) -> str:
        return hmac.new(self._key, f"{path}{expires}".encode(), hashlib.sha256).hexdigest()

    def _signed_url(self, full_name: str, asset_id: int) -> str:
        path = f"/{full_name}/assets/{asset_id}"
        expires = f"{time.time() + self._ttl:.3f}"  # milliseconds, so sub-second TTLs work
        return f"{self.objects_url}{path}?expires={expires}&signature={self._sign(path, expires)}"

    async def _h_web(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        with self._lock:
            repo, rels = self._visible(request)
            rel = next((r for r in rels if r.tag == info["tag"] and not r.draft), None)
            asset = rel.assets.get(info["name"]) if rel else None
        if repo is None or asset is None:
            return _not_found("web")
        location = self._signed_url(repo.full_name, asset.id)
        resp, _ = await self._send(request, 302, {"Location": location}, b"Found")
        return resp

    async def _h_object(self, request: web.Request) -> web.StreamResponse:
        expires, signature = request.query.get("expires", ""), request.query.get("signature", "")
        if not hmac.compare_digest(signature.encode(), self._sign(request.path, expires).encode()):
            return _xml_error(403, "AccessDenied", "Request signature does not match")
        if float(expires) < time.time():  # well-formed: we signed it ourselves
            return _xml_error(403, "AccessDenied", "Request has expired")
        info = request.match_info
        with self._lock:  # no draft check: a valid signature proves access was granted
            repo = self._repos.get(f"{info['o']}/{info['r']}".lower())
            assets = [
                a for r in (repo.releases.values() if repo else ()) for a in r.assets.values()
            ]
            asset = next((a for a in assets if str(a.id) == info["aid"]), None)
        if asset is None:  # e.g. replaced since the URL was signed
            return _not_found("objects")
        etag = f'"0x{asset.sha256[:16].upper()}"'
        modified = email.utils.format_datetime(asset.updated_at, usegmt=True)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": modified,
            "Accept-Ranges": "bytes",
        }
        start, end, status = 0, asset.size - 1, 200
        fault = _FAULT.get()
        range_, if_range = request.headers.get("Range"), request.headers.get("If-Range")
        # An If-Range naming another version means "send me the whole new one instead".
        if (
            range_
            and (fault is None or fault.kind != "ignore_range")
            and (if_range is None or if_range.strip() in (etag, modified))
            and (span := _parse_range(range_, asset.size)) is not None
        ):
            (start, end), status = span, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{asset.size}"
        resp, complete = await self._send(
            request, status, headers, asset.source, start, end - start + 1
        )
        if complete and end == asset.size - 1:  # count a download once, resumed or not
            with self._lock:
                asset.download_count += 1
        return resp
