"""The REST API origin (api.github.com): JSON with ETags and 304s, pagination, a rate limit."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from intake_bfa.testing.server.errors import JSON_TYPE, api_error
from intake_bfa.testing.server.faults import send
from intake_bfa.testing.server.objects import Signer
from intake_bfa.testing.server.store import Release, Repo, Store

_RATE_MSG = (
    "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated "
    "requests get a higher rate limit. Check out the documentation for more details.)"
)


class ApiOrigin:
    """Handlers and per-server state (token, rate limit) of the REST API origin.

    Parameters
    ----------
    store : Store
        The releases served.
    signer : Signer
        Signs the object-store URLs binary asset requests are redirected to.
    url : callable
        Maps an origin name to its base URL (for pagination links).
    token : str or None
        Token that authenticates requests; see :class:`~.ReleaseServer`.
    limit : int
        Requests allowed before the API answers 403.
    chunk_size : int
        Bytes per write when streaming bodies.

    Attributes
    ----------
    used : int
        Requests charged against the rate limit so far.
    reset_at : int
        Epoch seconds reported as ``X-RateLimit-Reset``.
    """

    def __init__(
        self,
        store: Store,
        signer: Signer,
        url: Callable[[str], str],
        *,
        token: str | None,
        limit: int,
        chunk_size: int,
    ) -> None:
        self._store, self._signer, self._url = store, signer, url
        self._token, self._limit, self._chunk_size = token, limit, chunk_size
        self.used, self.reset_at = 0, 0  # rate-limit state, touched only on the loop thread

    def authed(self, request: web.Request) -> bool:
        """Whether ``request`` carries the server's token."""
        scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
        return (
            self._token is not None
            and scheme.lower() in ("bearer", "token")
            and hmac.compare_digest(cred.strip().encode(), self._token.encode())
        )

    @web.middleware
    async def rate_limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Middleware answering 403 once the rate limit is used up (before any fault)."""
        if self.used >= self._limit:
            return api_error(403, _RATE_MSG)
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Charge the request and add the ``X-RateLimit-*`` headers, as the status goes out."""
        # GitHub only promises free conditional requests when authenticated.
        if response.status != 304 or not self.authed(request):
            self.used = min(self._limit, self.used + 1)
        rate = {
            "Limit": self._limit,
            "Remaining": self._limit - self.used,
            "Used": self.used,
            "Reset": self.reset_at,
            "Resource": "core",
        }
        for key, value in rate.items():
            # setdefault lets an injected fault fake its own rate-limit headers.
            response.headers.setdefault(f"X-RateLimit-{key}", str(value))

    def _payload(self, kind: str, info: Mapping[str, str], repo: Repo, rels: list[Release]) -> Any:
        store = self._store
        if kind == "repo":
            return store.repo_json(repo)
        if kind == "releases":
            return [store.release_json(repo, r) for r in rels]
        if kind == "asset":
            found = [(r, a) for r in rels for a in r.assets.values() if str(a.id) == info["aid"]]
            return store.asset_json(repo, *found[0]) if found else None
        if kind == "latest":
            rels = [r for r in rels if not (r.draft or r.prerelease)]
        else:  # "tag", "id" or "assets"
            rels = [r for r in rels if r.tag == info.get("tag") or str(r.id) == info.get("rid")]
        out = store.release_json(repo, rels[0]) if rels else None
        return out["assets"] if out and kind == "assets" else out

    def _paginate(self, request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        query = {k: int(v) for k, v in request.rel_url.query.items() if v.isdigit()}
        per_page, page = min(query.get("per_page") or 30, 100), max(query.get("page", 1), 1)
        last = max(1, math.ceil(len(items) / per_page))
        rels = [(page - 1, "prev")] if page > 1 else []
        rels += [(page + 1, "next"), (last, "last")] if page < last else []
        rels += [(1, "first")] if page > 1 else []
        link = ", ".join(
            f'<{self._url("api")}{request.rel_url.update_query(page=p)}>; rel="{rel}"'
            for p, rel in rels
        )
        return items[(page - 1) * per_page : page * per_page], {"Link": link} if link else {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer any API route; the route name says which resource was asked for."""
        kind = request.match_info.route.name or ""
        info = request.match_info
        with self._store.lock:  # build JSON under the lock: add_release may run concurrently
            repo, rels = self._store.visible(info["o"], info["r"], self.authed(request))
            payload = self._payload(kind, info, repo, rels) if repo else None
        if payload is None or repo is None:
            return api_error(404, "Not Found")
        headers: dict[str, str] = {}
        if kind == "asset" and "application/octet-stream" in request.headers.get("Accept", ""):
            # As on GitHub: binary requests are redirected to a signed object-store URL.
            headers["Location"] = self._signer.url(repo.full_name, payload["id"])
            resp, _ = await send(request, 302, headers, b"", chunk_size=self._chunk_size)
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
        headers = {"Content-Type": JSON_TYPE, "ETag": etag, **headers}
        resp, _ = await send(request, 200, headers, body, chunk_size=self._chunk_size)
        return resp
