"""The project's one HTTP transport: every request, its token rule, its errors and retries.

Built on the standard library on purpose: it imports in a millisecond, streams at
loopback speed and honours ``HTTPS_PROXY``. A connection must be made within
``BFA_CONNECT_TIMEOUT`` and each read answered within ``BFA_TIMEOUT``; there is no total
limit (a 150 MB asset on a slow link must not be cut off) except for API calls given a
``deadline`` (resolving "latest", within ``BFA_RESOLVE_TIMEOUT``). Redirects are followed
by hand so that the token is attached only to requests for the configured API origin (or
the origins a caller names, such as the producer's uploads origin) and never to a redirect
target or mirror elsewhere. A request with a body (a JSON write, a streamed upload) is sent
once and never redirected.

Retries live here too, so every caller (resolution, downloads, remote reads, the producer's
GitHub writes and S3 listing) shares one policy: 408/425/429/5xx, connection resets, cut-off
bodies, read timeouts and expired signed redirects are retried (each retry asks the
*original* URL again, so a fresh signature is issued); other 4xx, refused connections and
unknown hosts are not. The wait honours ``Retry-After`` (seconds or an HTTP date, parsed by
:func:`parse_retry_after` alone) and GitHub's ``X-RateLimit-Reset``; otherwise it is
full-jitter exponential backoff. Attempts and the total waiting time are bounded
(``BFA_RETRIES``, ``BFA_RETRY_TIME``), and by the deadline when there is one.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import io
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

from intake_bfa import __version__
from intake_bfa.config import Settings, url_origin
from intake_bfa.errors import AuthenticationError, DownloadError, RateLimitError
from intake_bfa.untrusted import loads_json

log = logging.getLogger(__name__)

USER_AGENT = f"intake-bfa/{__version__} (+https://github.com/intake-bfa/intake-bfa)"
_REDIRECTS = {301, 302, 303, 307, 308}
#: Statuses worth asking again (plus every 5xx).
RETRY_STATUSES = {408, 425, 429}
_MAX_REDIRECTS = 8
_CHUNK = 1 << 20  # a streamed request body is sent in pieces of this size


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would copy Authorization onto the redirect target; we follow by hand.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass(frozen=True)
class _Timeouts:
    """The limits of one request: connect and per-read seconds, and an optional deadline."""

    connect: float
    read: float
    deadline: float | None = None  # absolute time.monotonic()

    def cap(self, seconds: float) -> float:
        """``seconds``, cut to the time left before the deadline; TimeoutError once it passed."""
        if self.deadline is None:
            return seconds
        left = self.deadline - time.monotonic()
        if left <= 0:
            # The same error a socket raises: callers map it to a retryable DownloadError,
            # and with_retries then reports the deadline.
            raise TimeoutError("timed out")
        return min(seconds, left)


class _Request(urllib.request.Request):
    """A request carrying its :class:`_Timeouts` to the handlers below."""

    def __init__(self, url: str, *, method: str, timeouts: _Timeouts) -> None:
        super().__init__(url, method=method)
        self.timeouts = timeouts


class _DeadlineReader(io.RawIOBase):
    """A socket's byte stream whose every read waits no longer than the deadline allows.

    Without it, a server trickling a byte just before each per-read timeout could hold an
    API call past its deadline.
    """

    def __init__(self, sock: socket.socket, timeouts: _Timeouts) -> None:
        super().__init__()
        # Through makefile, so the descriptor outlives the connection object urllib closes.
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._timeouts = timeouts

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._timeouts.cap(self._timeouts.read))
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` asks of its socket: ``makefile``, deadline-bound."""

    def __init__(self, sock: socket.socket, timeouts: _Timeouts) -> None:
        self._sock = sock
        self._timeouts = timeouts

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._timeouts))


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTP response (status line and headers included) read under a deadline."""

    def __init__(self, sock: socket.socket, *args: Any, timeouts: _Timeouts, **kwargs: Any):
        super().__init__(_DeadlineSocket(sock, timeouts), *args, **kwargs)  # type: ignore[arg-type]


class _TimedHTTPConnection(http.client.HTTPConnection):
    """A connection made within the connect timeout whose reads then get the read timeout.

    http.client has one ``timeout`` for both: a silent server would get the (long) read
    timeout to accept, or a slow download the (short) connect timeout per read.
    """

    def __init__(self, host: str, *, timeouts: _Timeouts, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._timeouts = timeouts
        if timeouts.deadline is not None:  # downloads keep the plain, faster response
            self.response_class = functools.partial(_DeadlineResponse, timeouts=timeouts)

    def connect(self) -> None:
        # For HTTPS the proxy tunnel and the TLS handshake count as connecting too.
        self.timeout = self._timeouts.cap(self._timeouts.connect)
        super().connect()
        self.sock.settimeout(self._timeouts.cap(self._timeouts.read))


class _TimedHTTPSConnection(_TimedHTTPConnection, http.client.HTTPSConnection):
    """:class:`_TimedHTTPConnection` over TLS."""


class _TimedHandlerMixin:
    """Opens a :class:`_Request` with the timed connection class (others as usual)."""

    connection: type[http.client.HTTPConnection]

    def do_open(
        self,
        http_class: type[http.client.HTTPConnection],
        req: urllib.request.Request,
        **kwargs: Any,
    ) -> http.client.HTTPResponse:
        timeouts = getattr(req, "timeouts", None)
        if timeouts is None:
            return super().do_open(http_class, req, **kwargs)  # type: ignore[misc]
        # Only the class is swapped: https_open's other arguments differ between Pythons.
        return super().do_open(self.connection, req, timeouts=timeouts, **kwargs)  # type: ignore[misc]


class _TimedHTTPHandler(_TimedHandlerMixin, urllib.request.HTTPHandler):
    connection = _TimedHTTPConnection


class _TimedHTTPSHandler(_TimedHandlerMixin, urllib.request.HTTPSHandler):
    connection = _TimedHTTPSConnection


# build_opener uses these in place of the default HTTP(S) handlers they subclass.
_OPENER = urllib.request.build_opener(_NoRedirect, _TimedHTTPHandler, _TimedHTTPSHandler)


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


@dataclass(frozen=True)
class Advice:
    """What an error message tells the user to do, per kind of failure.

    The defaults speak to a data consumer; the producer's GitHub writes pass their own.

    Attributes
    ----------
    unreachable
        For connection failures and timeouts.
    rate_limit
        For GitHub's (primary) rate limit, answered by an origin the token goes to.
    throttled
        For a 429 from any other host (a download origin, a mirror): the token is never
        sent there, so it cannot help.
    credentials
        For a 401.
    refused
        Appended to a 403 or 404 that is not a rate limit (empty: nothing).
    """

    unreachable: str = (
        "check the network, BFA_API_URL, or set BFA_OFFLINE=1 to use cached data only"
    )
    rate_limit: str = (
        "set GITHUB_TOKEN for 5000 requests/hour, or use cached data with BFA_OFFLINE=1"
    )
    credentials: str = "check or unset GITHUB_TOKEN"
    refused: str = ""
    throttled: str = "wait a few minutes and retry, or add a mirror with BFA_MIRRORS"


_CONSUMER = Advice()


class _Chunks:
    """A file whose ``read`` returns 1 MiB whatever it is asked (http.client asks 8 KiB)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read(self, _size: int = -1) -> bytes:
        return self._fh.read(_CHUNK)


def safe_url(url: str) -> str:
    """A URL fit for logs and error messages: no query string (signatures) or userinfo."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except (TypeError, ValueError):  # not a string, a bad port, a broken IPv6 literal
        return "<malformed URL>"
    return f"{parts.scheme}://{host}{parts.path}"


#: The only schemes followed: urllib would also open ``file://``, ``ftp://`` and ``data:``.
_SCHEMES = ("http", "https")


def _check_scheme(current: str, url: str, method: str, status: int | None) -> None:
    """Refuse a URL, or the target of a redirect answered ``status``, that is not http(s).

    A refused redirect carries that status, so it is not taken for a network failure.
    """
    try:
        scheme = urlsplit(current).scheme.lower() if isinstance(current, str) else ""
    except ValueError:
        scheme = ""
    if scheme in _SCHEMES:
        return
    shown = current if isinstance(current, str) else repr(current)
    what = f"{safe_url(url)} redirected to" if status else "the download URL is"
    raise DownloadError(
        f"{what} {shown[:200]!r}, not an http(s) URL: refused (only http and https are "
        f"followed){'' if method == 'GET' else f' for {method}'}",
        url=safe_url(url) if status else shown[:200],
        status=status,
        retryable=False,
    )


def open_url(
    url: str,
    settings: Settings,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    ok: tuple[int, ...] = (200, 206, 304),
    data: bytes | BinaryIO | None = None,
    token_origins: Collection[str] | None = None,
    advice: Advice = _CONSUMER,
    deadline: float | None = None,
) -> Response:
    """Open ``url``, following redirects, and return the streaming response.

    Parameters
    ----------
    url
        Absolute URL.
    settings
        Supplies the token, its allowed origin, the connect timeout (``connect_timeout``)
        and the per-read timeout (``timeout``).
    headers
        Extra request headers (``Range``, ``If-None-Match``, ``Content-Type``...).
    method
        HTTP method.
    ok
        Status codes returned to the caller; any other raises.
    data
        Request body: bytes, or a binary file streamed from its current position (in
        1 MiB pieces, with a ``Content-Length``; the caller closes it). Without a
        ``Content-Type`` header it is sent as ``application/octet-stream``. A request with
        a body is not redirected: a 3xx answer is returned or raised like any status.
    token_origins
        The origins the token may be sent to, checked on every hop (default: the API
        origin alone). A redirect target on any other origin never gets it.
    advice
        What error messages tell the user to do (default: consumer advice).
    deadline
        Absolute :func:`time.monotonic` time by which the response, body included, must
        have arrived: each connect and read waits at most the time left, and a read past
        it raises a timeout (a retryable :class:`DownloadError`). None: no total limit.

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
    trusted = {settings.api_origin} if token_origins is None else set(token_origins)
    timeouts = _Timeouts(settings.connect_timeout, settings.timeout, deadline)
    current = url
    redirected: int | None = None  # the status of the redirect that led to ``current``
    for _ in range(_MAX_REDIRECTS + 1):
        _check_scheme(current, url, method, redirected)
        req = _Request(current, method=method, timeouts=timeouts)
        req.add_header("User-Agent", USER_AGENT)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        if data is not None:
            _attach_body(req, data)
        if settings.token and url_origin(current) in trusted:
            # Unredirected: urllib itself would never forward it, and we re-check per hop.
            req.add_unredirected_header("Authorization", f"Bearer {settings.token}")
        try:
            # The connection applies req.timeouts; this is urllib's own (unused) value.
            resp = _OPENER.open(req, timeout=settings.connect_timeout)
        except urllib.error.HTTPError as err:
            resp = err
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            # ValueError: a URL http.client cannot send (non-ASCII host or path, bad port).
            reason = getattr(err, "reason", err)
            raise DownloadError(
                f"could not reach {_where(method, current)}: {reason}; {advice.unreachable}",
                url=safe_url(url),
                status=None,
                # Refused and unresolvable hosts fail the same way a moment later: fail fast
                # (and fall back to the cache). Resets and timeouts are worth retrying.
                retryable=not isinstance(
                    reason, ConnectionRefusedError | socket.gaierror | ValueError
                ),
            ) from None
        status = resp.status if hasattr(resp, "status") else resp.code
        if status in _REDIRECTS and data is None:
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise DownloadError(
                    f"{_where(method, current)} answered {status} without a Location header",
                    url=safe_url(url),
                    status=status,
                )
            try:
                current = urljoin(current, location)
            except ValueError:  # a Location no URL can be made of (a broken IPv6 host)
                current = location
            redirected = status
            continue
        if status in ok:
            return Response(status=status, headers=resp.headers, url=current, stream=resp)
        _raise_for_status(
            resp, status, url, current, method, advice, api=url_origin(current) in trusted
        )
    raise DownloadError(f"too many redirects from {safe_url(url)}", url=safe_url(url), status=None)


def _attach_body(req: urllib.request.Request, data: bytes | BinaryIO) -> None:
    if isinstance(data, bytes):
        size = len(data)
    else:
        size = os.fstat(data.fileno()).st_size - data.tell()
        data = _Chunks(data)  # type: ignore[assignment]
    req.data = data  # type: ignore[assignment]
    # Set explicitly: urllib would send a file chunked and a body as a form otherwise.
    req.add_header("Content-Length", str(size))
    if not req.has_header("Content-type"):  # urllib stores header names capitalize()d
        req.add_header("Content-Type", "application/octet-stream")


def _where(method: str, url: str) -> str:
    """The request in a message: its safe URL, after the method unless it is a GET."""
    return safe_url(url) if method == "GET" else f"{method} {safe_url(url)}"


def lost_connection(url: str, err: BaseException) -> DownloadError:
    """The (retryable) error for a connection that died while a body was being read."""
    return DownloadError(
        f"connection lost while reading {safe_url(url)}: {err}",
        url=safe_url(url),
        status=None,
        retryable=True,
    )


#: The largest body :func:`read_body` accepts: API answers and small objects, never a dataset
#: (those stream to disk through :mod:`intake_bfa.fetch`, capped at their published size).
MAX_BODY_BYTES = 64 << 20


def read_body(resp: Response, url: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read a whole body (at most ``limit`` bytes) and close the response.

    A dropped connection is :func:`lost_connection`; a longer body (a runaway or hostile
    server) is a :class:`DownloadError` once ``limit`` is passed, never read to the end.
    """
    with resp:
        try:
            body = resp.stream.read(limit + 1)
        except (OSError, http.client.HTTPException) as err:
            raise lost_connection(url, err) from None
    if len(body) > limit:
        raise DownloadError(
            f"{safe_url(url)} answered more than {limit} bytes, far more than such an answer "
            "holds; the server is misbehaving (check BFA_API_URL, or retry later)",
            url=safe_url(url),
            status=resp.status,
            retryable=False,
        )
    return body


def _raise_for_status(
    resp, status: int, url: str, current: str, method: str, advice: Advice, *, api: bool
) -> None:
    # ``api``: ``current`` is an origin the token goes to (GitHub's API), where GitHub's
    # rate limits and the token's advice apply; any other host only speaks for itself.
    try:
        body = resp.read(2048)
    except (OSError, http.client.HTTPException):
        body = b""
    finally:
        resp.close()
    message = ""
    try:
        message = str(loads_json(body).get("message") or "")[:200]
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()[:200]
    headers = resp.headers
    where = _where(method, current)
    remaining = headers.get("X-RateLimit-Remaining")
    retry_after = headers.get("Retry-After")
    if status == 403 and remaining != "0" and (retry_after or "rate limit" in message.lower()):
        # GitHub's secondary rate limit (too many requests at once): wait as told, retry.
        raise RateLimitError(
            f"GitHub's secondary rate limit at {where}; "
            + (f"retry after {retry_after} s" if retry_after else "wait a minute and retry"),
            url=safe_url(url),
            status=status,
            reset=None,
            retry_after=headers.get("Retry-After"),
            retryable=True,
        )
    if status == 429 or (status == 403 and remaining == "0"):
        reset = _reset_time(headers)
        when = time.strftime("%H:%M:%S UTC", time.gmtime(reset)) if reset else ""
        if api:
            hint = f" (resets at {when})" if reset else ""
            text = f"GitHub API rate limit exhausted at {where}{hint}; {advice.rate_limit}"
        else:
            hint = f", asking to wait until {when}" if reset else ""
            text = f"{where} is limiting requests (HTTP {status}{hint}); {advice.throttled}"
        raise RateLimitError(
            text,
            url=safe_url(url),
            status=status,
            reset=reset,
            retry_after=headers.get("Retry-After"),
            retryable=True,
        )
    if status == 401:
        raise AuthenticationError(
            f"{where} rejected the credentials (401 {message}); {advice.credentials}",
            url=safe_url(url),
            status=status,
        )
    # A 403 from a redirect target is an expired signed URL: asking the original URL
    # again yields a fresh signature.
    expired = status == 403 and url_origin(current) != url_origin(url)
    if status in (403, 404) and advice.refused and not expired:
        message = f"{message}; {advice.refused}" if message else advice.refused
    raise DownloadError(
        f"{where} answered HTTP {status}" + (f": {message}" if message else ""),
        url=safe_url(url),
        status=status,
        retry_after=headers.get("Retry-After"),
        retryable=status in RETRY_STATUSES or status >= 500 or expired,
    )


def _reset_time(headers) -> float | None:
    raw = headers.get("X-RateLimit-Reset")
    if raw and raw.isascii() and raw.isdigit():
        return float(raw)
    now = time.time()
    wait = parse_retry_after(headers.get("Retry-After"), now)
    return None if wait is None else now + wait


_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def api_get(
    settings: Settings,
    url: str,
    *,
    etag: str | None = None,
    ok: tuple[int, ...] = (200, 304, 404),
    deadline: float | None = None,
) -> tuple[int, Any, Any]:
    """GET a GitHub REST URL (retried); return ``(status, JSON or None, headers)``.

    ``url`` is absolute (a ``Link: rel="next"`` page, say); the token goes only to the
    API origin, as for every request (:func:`open_url`). ``etag`` is sent as
    ``If-None-Match``. Statuses in ``ok`` other than 200 are returned with None.
    ``deadline`` (absolute :func:`time.monotonic` time) bounds the call, retries
    included: see :func:`with_retries`.
    """
    headers = dict(_API_HEADERS)
    if etag:
        headers["If-None-Match"] = etag
    started = time.perf_counter()

    def attempt() -> tuple[Response, bytes]:
        resp = open_url(url, settings, headers=headers, ok=ok, deadline=deadline)
        with resp:
            return resp, read_body(resp, url) if resp.status == 200 else b""

    resp, body = with_retries(attempt, settings, what=f"GET {safe_url(url)}", deadline=deadline)
    log.debug(
        "GET %s -> %s in %.0f ms", safe_url(url), resp.status, 1e3 * (time.perf_counter() - started)
    )
    if resp.status != 200:
        return resp.status, None, resp.headers
    try:
        return resp.status, loads_json(body), resp.headers
    except ValueError as err:
        raise DownloadError(
            f"{safe_url(url)} did not answer usable JSON ({str(err)[:200]}); is BFA_API_URL "
            "a GitHub REST API base?",
            url=safe_url(url),
            status=resp.status,
        ) from None


def api_get_json(
    settings: Settings, path: str, *, etag: str | None = None, deadline: float | None = None
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
    deadline
        Absolute :func:`time.monotonic` time the call, retries included, must end by
        (see :func:`with_retries`); None: bounded by the retry settings alone.

    Returns
    -------
    (status, data, etag)
        ``data`` is None for a 304. ``status`` is 200, 304 or 404 (404 is returned,
        not raised, because its meaning depends on the caller).

    Raises
    ------
    DownloadError
        As :func:`api_get`; past ``deadline``, one naming ``BFA_RESOLVE_TIMEOUT``.
    """
    status, data, headers = api_get(settings, settings.api_url + path, etag=etag, deadline=deadline)
    return status, data, headers.get("ETag") or (etag if status == 304 else None)


def is_network_failure(err: BaseException) -> bool:
    """True when ``err`` means "could not talk to the server" (not "server said no")."""
    return isinstance(err, DownloadError) and (
        err.context.get("status") is None or err.context.get("status", 0) >= 500
    )


__all__ = [
    "Advice",
    "Response",
    "api_get",
    "api_get_json",
    "is_network_failure",
    "lost_connection",
    "open_url",
    "read_body",
    "safe_url",
]


# --- retries: which failures, how long to wait, when to give up ------------------------------

T = TypeVar("T")
_BACKOFF_CAP = 30.0  # no single backoff sleep longer than this


def is_retryable(err: BaseException) -> bool:
    """True for failures another attempt may cure (5xx, 408/425/429, resets, timeouts)."""
    return isinstance(err, DownloadError) and bool(err.context.get("retryable"))


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``Content-Range: bytes START-END/TOTAL`` as ``(start, end, total)``, end inclusive.

    ``total`` is None for ``*`` (unknown length). None for anything else: a missing or
    malformed header, an unsatisfied range (``bytes */N``) or ``end`` before ``start``.
    """
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    start, end = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if end < start or (total is not None and end >= total):
        return None
    return start, end, total


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, float("²") fails
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when else None


def delay_for(err: DownloadError, attempt: int, settings: Settings, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``err``.

    Parameters
    ----------
    err
        The retryable failure.
    attempt
        How many attempts have failed so far (1 after the first failure).
    settings
        Supplies the backoff base.
    rng
        Source of jitter.
    """
    now = time.time()
    hinted = parse_retry_after(err.context.get("retry_after"), now)
    if hinted is not None:
        return hinted
    if isinstance(err, RateLimitError) and err.context.get("reset"):
        return max(0.0, float(err.context["reset"]) - now)
    # Full jitter (AWS architecture blog): spreads a crowd of clients evenly.
    return rng.uniform(0, min(_BACKOFF_CAP, settings.retry_backoff * 2 ** (attempt - 1)))


def with_retries(
    action: Callable[[], T],
    settings: Settings,
    *,
    what: str,
    on_retry: Callable[[DownloadError], None] | None = None,
    rng: random.Random | None = None,
    deadline: float | None = None,
) -> T:
    """Run ``action`` until it succeeds, retrying retryable :class:`DownloadError` s.

    Parameters
    ----------
    action
        Does one complete attempt (it must re-request the original URL).
    settings
        ``retries`` (attempts) and ``retry_time`` (total seconds of waiting).
    what
        Short description for log messages (no secrets).
    on_retry
        Called with the error before each wait (e.g. to keep a partial download).
    rng
        Jitter source (tests may pass a seeded one).
    deadline
        Absolute :func:`time.monotonic` time of resolution's budget
        (``settings.resolve_timeout``, which messages name): no retry starts, and no
        wait lasts, past it. ``action`` must bound each attempt by it too (as
        :func:`open_url` does with its ``deadline``). None: no total limit.

    Raises
    ------
    DownloadError
        The last error, when it is not retryable or the budget is spent; once the
        deadline passes (or the next attempt could only start after it), a
        non-retryable one with no status saying resolution timed out, which
        :func:`is_network_failure` counts as a network failure (a
        :class:`RateLimitError` is raised as itself).
    """
    rng = rng or random.Random()
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except DownloadError as err:
            if not is_retryable(err):
                raise
            # A rate limit is reported as itself, deadline or not: its reset time and token
            # advice say more than the budget does.
            timed = deadline is not None and not isinstance(err, RateLimitError)
            if deadline is not None and time.monotonic() >= deadline:
                if not timed:
                    raise
                raise _deadline_error(err, settings, what) from err
            if attempt >= settings.retries:
                raise
            delay = delay_for(err, attempt, settings, rng)
            if deadline is not None and time.monotonic() + delay >= deadline:
                # Waiting would only lead to an attempt with no time left: give up now.
                if not timed:
                    raise
                raise _deadline_error(err, settings, what, early=True) from err
            if waited + delay > settings.retry_time:
                log.warning(
                    "giving up on %s: waiting %.1f s more would exceed BFA_RETRY_TIME=%.0f s",
                    what,
                    delay,
                    settings.retry_time,
                )
                raise
            log.warning(
                "%s failed (%s); retry %d/%d in %.2f s",
                what,
                err,
                attempt,
                settings.retries - 1,
                delay,
            )
            if on_retry is not None:
                on_retry(err)
            time.sleep(delay)
            waited += delay


def _deadline_error(
    err: DownloadError, settings: Settings, what: str, *, early: bool = False
) -> DownloadError:
    """The error for a request out of resolution's time budget (``BFA_RESOLVE_TIMEOUT``)."""
    budget = f"{settings.resolve_timeout:g} s"
    log.debug("%s: out of the %s resolution budget after %s", what, budget, err)
    when = (
        f"would time out before retrying (budget {budget})"
        if early
        else f"timed out after {budget}"
    )
    return DownloadError(
        f"resolution {when}; raise BFA_RESOLVE_TIMEOUT to wait longer. Last error: {err}",
        url=err.context.get("url"),
        # No status: a network failure, so resolution falls back to the cached version.
        status=None,
        # Every later attempt under the same deadline would fail at once.
        retryable=False,
        timed_out=True,
    )
