"""Minimal HTTP client: GitHub API calls and streamed downloads.

Built on the standard library on purpose: it imports in a millisecond, streams at
loopback speed, honours ``HTTPS_PROXY``, and its ``timeout`` is a connect and
per-read limit, never a total one (a 150 MB asset on a slow link must not be cut
off). Redirects are followed by hand so that the token is attached only to
requests for the configured API origin and never to a redirect target or mirror.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from . import __version__
from .config import Settings, _origin
from .errors import AuthenticationError, DownloadError, RateLimitError
from .retry import with_retries

log = logging.getLogger(__name__)

USER_AGENT = f"intake-bfa/{__version__} (+https://github.com/intake-bfa/intake-bfa)"
_REDIRECTS = {301, 302, 303, 307, 308}
#: Statuses worth asking again (plus every 5xx).
RETRY_STATUSES = {408, 425, 429}
_MAX_REDIRECTS = 8


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would copy Authorization onto the redirect target; we follow by hand.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class Response:
    """An open HTTP response.

    Attributes
    ----------
    status
        Final status code (after redirects).
    headers
        Response headers (case-insensitive mapping).
    url
        The URL that answered (the redirect target, if any).
    stream
        File-like body; read it in chunks and close it (or use ``with``).
    """

    status: int
    headers: Any
    url: str
    stream: Any

    def read(self) -> bytes:
        """Read the whole body and close the stream."""
        try:
            return self.stream.read()
        finally:
            self.stream.close()

    def close(self) -> None:
        """Close the underlying connection."""
        self.stream.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safe_url(url: str) -> str:
    """A URL fit for logs and error messages: no query string (signatures) or userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def open_url(
    url: str,
    settings: Settings,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    ok: tuple[int, ...] = (200, 206, 304),
) -> Response:
    """Open ``url``, following redirects, and return the streaming response.

    Parameters
    ----------
    url
        Absolute URL.
    settings
        Supplies the token, its allowed origin and the timeout.
    headers
        Extra request headers (``Range``, ``If-None-Match``...).
    method
        HTTP method.
    ok
        Status codes returned to the caller; any other raises.

    Returns
    -------
    Response

    Raises
    ------
    DownloadError
        Connection failures, timeouts and unexpected statuses (``.status`` is set
        for HTTP errors, None otherwise).
    RateLimitError, AuthenticationError
        For GitHub's rate-limit answers and rejected credentials.
    """
    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        req = urllib.request.Request(current, method=method)
        req.add_header("User-Agent", USER_AGENT)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        if settings.token and _origin(current) == settings.api_origin:
            # Unredirected: urllib itself would never forward it, and we re-check per hop.
            req.add_unredirected_header("Authorization", f"Bearer {settings.token}")
        try:
            resp = _OPENER.open(req, timeout=settings.timeout)
        except urllib.error.HTTPError as err:
            resp = err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(
                f"could not reach {safe_url(current)}: {reason}; check the network, "
                "BFA_API_URL, or set BFA_OFFLINE=1 to use cached data only",
                url=safe_url(url),
                status=None,
                # Refused and unresolvable hosts fail the same way a moment later: fail fast
                # (and fall back to the cache). Resets and timeouts are worth retrying.
                retryable=not isinstance(reason, ConnectionRefusedError | socket.gaierror),
            ) from None
        status = resp.status if hasattr(resp, "status") else resp.code
        if status in _REDIRECTS:
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise DownloadError(
                    f"{safe_url(current)} answered {status} without a Location header",
                    url=safe_url(url),
                    status=status,
                )
            current = urljoin(current, location)
            continue
        if status in ok:
            return Response(status=status, headers=resp.headers, url=current, stream=resp)
        _raise_for_status(resp, status, url, current)
    raise DownloadError(f"too many redirects from {safe_url(url)}", url=safe_url(url), status=None)


def lost_connection(url: str, err: BaseException) -> DownloadError:
    """The (retryable) error for a connection that died while a body was being read."""
    return DownloadError(
        f"connection lost while reading {safe_url(url)}: {err}",
        url=safe_url(url),
        status=None,
        retryable=True,
    )


def read_body(resp: Response, url: str) -> bytes:
    """Read a whole body and close the response; a dropped connection is :func:`lost_connection`."""
    with resp:
        try:
            return resp.stream.read()
        except (OSError, http.client.HTTPException) as err:
            raise lost_connection(url, err) from None


def _raise_for_status(resp, status: int, url: str, current: str) -> None:
    try:
        body = resp.read(2048)
    except (OSError, http.client.HTTPException):
        body = b""
    finally:
        resp.close()
    message = ""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()[:200]
    headers = resp.headers
    where = safe_url(current)
    remaining = headers.get("X-RateLimit-Remaining")
    if status == 403 and remaining != "0" and headers.get("Retry-After"):
        # GitHub's secondary rate limit (too many requests at once): wait as told, retry.
        raise RateLimitError(
            f"GitHub's secondary rate limit at {where}; retry after {headers.get('Retry-After')} s",
            url=safe_url(url),
            status=status,
            reset=None,
            retry_after=headers.get("Retry-After"),
            retryable=True,
        )
    if status == 429 or (status == 403 and remaining == "0"):
        reset = _reset_time(headers)
        hint = f" (resets at {time.strftime('%H:%M:%S UTC', time.gmtime(reset))})" if reset else ""
        raise RateLimitError(
            f"GitHub API rate limit exhausted at {where}{hint}; set GITHUB_TOKEN for 5000 "
            "requests/hour, or use cached data with BFA_OFFLINE=1",
            url=safe_url(url),
            status=status,
            reset=reset,
            retry_after=headers.get("Retry-After"),
            retryable=True,
        )
    if status == 401:
        raise AuthenticationError(
            f"{where} rejected the credentials (401 {message}); check or unset GITHUB_TOKEN",
            url=safe_url(url),
            status=status,
        )
    # A 403 from a redirect target is an expired signed URL: asking the original URL
    # again yields a fresh signature.
    expired = status == 403 and _origin(current) != _origin(url)
    raise DownloadError(
        f"{where} answered HTTP {status}" + (f": {message}" if message else ""),
        url=safe_url(url),
        status=status,
        retry_after=headers.get("Retry-After"),
        retryable=status in RETRY_STATUSES or status >= 500 or expired,
    )


def _reset_time(headers) -> float | None:
    raw = headers.get("X-RateLimit-Reset")
    if raw and raw.isdigit():
        return float(raw)
    retry = headers.get("Retry-After")
    if retry:
        if retry.isdigit():
            return time.time() + int(retry)
        parsed = email.utils.parsedate_to_datetime(retry)
        return parsed.timestamp() if parsed else None
    return None


_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def api_get(
    settings: Settings, url: str, *, etag: str | None = None, ok: tuple[int, ...] = (200, 304, 404)
) -> tuple[int, Any, Any]:
    """GET a GitHub REST URL (retried); return ``(status, JSON or None, headers)``.

    ``url`` is absolute (a ``Link: rel="next"`` page, say); the token goes only to the
    API origin, as for every request (:func:`open_url`). ``etag`` is sent as
    ``If-None-Match``. Statuses in ``ok`` other than 200 are returned with None.
    """
    headers = dict(_API_HEADERS)
    if etag:
        headers["If-None-Match"] = etag
    started = time.perf_counter()

    def attempt() -> tuple[Response, bytes]:
        resp = open_url(url, settings, headers=headers, ok=ok)
        with resp:
            return resp, read_body(resp, url) if resp.status == 200 else b""

    resp, body = with_retries(attempt, settings, what=f"GET {safe_url(url)}")
    log.debug(
        "GET %s -> %s in %.0f ms", safe_url(url), resp.status, 1e3 * (time.perf_counter() - started)
    )
    if resp.status != 200:
        return resp.status, None, resp.headers
    try:
        return resp.status, json.loads(body), resp.headers
    except ValueError:
        raise DownloadError(
            f"{safe_url(url)} did not answer JSON; is BFA_API_URL a GitHub REST API base?",
            url=safe_url(url),
            status=resp.status,
        ) from None


def api_get_json(
    settings: Settings, path: str, *, etag: str | None = None
) -> tuple[int, Any, str | None]:
    """GET a GitHub REST resource under the configured API base.

    Parameters
    ----------
    settings
        Configuration (API base, token, timeout).
    path
        Path below the API base, e.g. ``/repos/o/r/releases?per_page=100``.
    etag
        Previous ``ETag``; sent as ``If-None-Match`` so an unchanged answer is a 304.

    Returns
    -------
    (status, data, etag)
        ``data`` is None for a 304. ``status`` is 200, 304 or 404 (404 is returned,
        not raised, because its meaning depends on the caller).
    """
    status, data, headers = api_get(settings, settings.api_url + path, etag=etag)
    return status, data, headers.get("ETag") or (etag if status == 304 else None)


def is_network_failure(err: BaseException) -> bool:
    """True when ``err`` means "could not talk to the server" (not "server said no")."""
    return isinstance(err, DownloadError) and (
        err.context.get("status") is None or err.context.get("status", 0) >= 500
    )


__all__ = [
    "Response",
    "api_get",
    "api_get_json",
    "is_network_failure",
    "lost_connection",
    "open_url",
    "read_body",
    "safe_url",
]
