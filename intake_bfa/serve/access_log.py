"""Structured access logs: one JSON object per request on logger ``intake_bfa.serve.access``.

Fields: ``ts`` (UTC), ``request_id`` (the client's ``X-Request-ID`` if sane, else a new
one; echoed in the response), ``client``, ``method``, ``path``, ``query`` (values of
secret-looking parameters replaced by ``***``; at most 2,000 characters), ``status``,
``bytes`` (response body), ``duration_ms``, ``version`` (the pinned version answered
from) and ``user_agent``. Request headers are never logged, so neither is any
``Authorization`` header.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

access_log = logging.getLogger("intake_bfa.serve.access")

_SECRET = re.compile(r"token|secret|password|passwd|key|auth|signature|credential", re.I)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_QUERY = 2000


def _redacted(query: bytes) -> str:
    if not query:
        return ""
    text = query.decode("latin-1")
    try:
        pairs = parse_qsl(text, keep_blank_values=True)
    except ValueError:
        return text[:_MAX_QUERY]
    if any(_SECRET.search(k) for k, _ in pairs):
        text = urlencode([(k, "***" if _SECRET.search(k) else v) for k, v in pairs])
    return text[:_MAX_QUERY]


class AccessLogMiddleware:
    """ASGI middleware writing one structured log record per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state: dict[str, Any] = {"status": 500, "bytes": 0, "version": None}

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = list(message.get("headers") or [])
                for name, value in headers:
                    if name.lower() == b"x-bfa-version":
                        state["version"] = value.decode("latin-1")
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body") or b"")
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            headers = dict(scope.get("headers") or [])
            client = scope.get("client")
            record = {
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "client": f"{client[0]}:{client[1]}" if client else None,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "query": _redacted(scope.get("query_string") or b""),
                "status": state["status"],
                "bytes": state["bytes"],
                "duration_ms": round(1e3 * (time.perf_counter() - start), 3),
                "version": state["version"],
                "user_agent": headers.get(b"user-agent", b"").decode("latin-1")[:200],
            }
            access_log.info(json.dumps(record, ensure_ascii=False))
