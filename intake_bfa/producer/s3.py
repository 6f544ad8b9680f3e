"""Anonymous access to Binance Vision's public bucket: ListObjects pages and file downloads.

Listings go through botocore, S3's reference client, with an unsigned configuration: it
owns the wire format (query encoding, ``encoding-type=url`` and its decoding, the XML with
or without namespace, error bodies, timestamps), so none of that is maintained here.
botocore is imported only when a client is made, so importing this module stays cheap; it
comes with the ``producer`` extra. Requests go to the configured endpoint only (path-style,
checked before each send).

Kept in this module, on purpose:

* retries: botocore's own are off, and every listing call goes through
  :func:`intake_bfa.http.with_retries`, the project's one policy (``BFA_RETRIES``,
  ``BFA_RETRY_TIME``, ``Retry-After``); botocore's failures become
  :class:`~intake_bfa.errors.DownloadError` / :class:`~intake_bfa.errors.RateLimitError`.
  Every HTTP request is counted by kind, so a run can report what it cost;
* the listing strategy: ListObjectsV2 (``StartAfter`` lets a daily run list only the
  trailing window of a folder), and ListObjects v1 (``Marker``) from then on when an
  endpoint rejects v2 (400/405/501) or ignores it (answers without ``KeyCount``): botocore
  speaks both but cannot tell which one an S3-compatible endpoint really implements;
* downloads: plain GETs of ``{data_url}/{key}`` from the public download host (not the S3
  API), through :func:`intake_bfa.http.open_url`.

Configuration is read at call time: argument > environment > default, for
``BFA_S3_ENDPOINT``, ``BFA_S3_BUCKET`` and ``BFA_DATA_URL``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from intake_bfa import __version__
from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import ConfigError, DownloadError, RateLimitError
from intake_bfa.extras import require
from intake_bfa.http import RETRY_STATUSES, open_url, read_body, safe_url, with_retries

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://s3-ap-northeast-1.amazonaws.com"
DEFAULT_BUCKET = "data.binance.vision"
DEFAULT_DATA_URL = "https://data.binance.vision"
#: S3's own cap on results per ListObjects page (keys and common prefixes together).
MAX_KEYS = 1000
#: Statuses meaning "this endpoint does not speak ListObjectsV2".
_V2_REJECTED = {400, 405, 501}
#: S3 error codes that mean "slow down" (S3 answers them with 503).
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
# RFC 3986 unreserved characters: the rest of a download key is percent-encoded.
_UNRESERVED = "-_.~"
_POOL = 32  # connections kept per client: more than collect's workers


def _setting(value: str | None, variable: str, default: str, url: bool) -> str:
    # argument > environment > default, validated with a message naming the source.
    source = variable.lower().removeprefix("bfa_s3_").removeprefix("bfa_")
    if value is None:
        value, source = os.environ.get(variable) or default, variable
    parts = urlsplit(value) if url and isinstance(value, str) else None
    if url and (parts is None or parts.scheme not in ("http", "https") or not parts.netloc):
        problem = f"is not an http(s) URL; use for example {default}"
    elif url and (parts.query or parts.fragment):
        problem = "must not have a query string or fragment"
    elif not url and (not value or "/" in value or value != value.strip()):
        problem = f"is not a bucket name; use for example {default}"
    else:
        return value.rstrip("/") if url else value
    raise ConfigError(f"{source}={value!r} {problem}", variable=source, value=value)


def resolve_endpoint(endpoint: str | None = None) -> str:
    """S3 endpoint for listings: ``endpoint`` > ``BFA_S3_ENDPOINT`` > :data:`DEFAULT_ENDPOINT`."""
    return _setting(endpoint, "BFA_S3_ENDPOINT", DEFAULT_ENDPOINT, url=True)


def resolve_bucket(bucket: str | None = None) -> str:
    """Bucket name: ``bucket`` > ``BFA_S3_BUCKET`` > :data:`DEFAULT_BUCKET`."""
    return _setting(bucket, "BFA_S3_BUCKET", DEFAULT_BUCKET, url=False)


def resolve_data_url(data_url: str | None = None) -> str:
    """Base URL of file downloads: ``data_url`` > ``BFA_DATA_URL`` > :data:`DEFAULT_DATA_URL`."""
    return _setting(data_url, "BFA_DATA_URL", DEFAULT_DATA_URL, url=True)


@dataclass(frozen=True)
class S3Object:
    """One ``Contents`` entry: decoded ``key``, ``size`` in bytes, ``last_modified``
    (S3 Last-Modified, UTC, naive) and ``etag`` (without its quotes)."""

    key: str
    size: int
    last_modified: dt.datetime
    etag: str


@dataclass
class Page:
    """One ListObjects answer.

    ``objects`` and ``prefixes`` are decoded; ``listed_at`` is when the answer arrived
    (UTC, naive: it dates what the page says); ``token`` / ``next_marker`` are the v2
    continuation token and the v1 ``NextMarker``; ``is_v2`` says the answer carried
    ``KeyCount``, i.e. the endpoint really spoke ListObjectsV2.
    """

    objects: list[S3Object]
    prefixes: list[str]
    listed_at: dt.datetime
    truncated: bool = False
    token: str | None = None
    next_marker: str | None = None
    is_v2: bool = True


@dataclass
class Listing:
    """Every page of one listing, in order."""

    pages: list[Page] = field(default_factory=list)

    @property
    def objects(self) -> list[S3Object]:
        """All objects, in key order."""
        return [obj for page in self.pages for obj in page.objects]

    @property
    def prefixes(self) -> list[str]:
        """All common prefixes, in order."""
        return [p for page in self.pages for p in page.prefixes]


def _botocore() -> Any:
    """The ``botocore`` package, or :class:`MissingDependencyError` naming the extra."""
    (botocore, *_) = require(
        "botocore", "botocore.config", "botocore.exceptions", "botocore.handlers",
        "botocore.parsers", "botocore.session",
        extra="producer", feature="listing Binance Vision (bfa collect)",
    )  # fmt: skip
    return botocore


def _utc_naive(stamp: dt.datetime) -> dt.datetime:
    return stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def _to_page(parsed: dict[str, Any], listed_at: dt.datetime) -> Page:
    # ``parsed``: botocore's ListObjects(V2) output, keys already URL-decoded.
    if "IsTruncated" not in parsed:  # S3 always sends it: this is no ListBucketResult
        raise ValueError("the answer is not a ListBucketResult")
    objects = [
        S3Object(
            key=item["Key"],
            size=int(item.get("Size") or 0),
            last_modified=_utc_naive(item["LastModified"]),
            etag=str(item.get("ETag", "")).strip().strip('"'),
        )
        for item in parsed.get("Contents", [])
    ]
    return Page(
        objects=objects,
        prefixes=[p["Prefix"] for p in parsed.get("CommonPrefixes", [])],
        listed_at=listed_at,
        truncated=bool(parsed["IsTruncated"]),
        token=parsed.get("NextContinuationToken") or None,
        next_marker=parsed.get("NextMarker") or None,
        is_v2="KeyCount" in parsed,
    )


@functools.cache
def _output_shapes() -> tuple[Any, Any]:
    model = _botocore().session.Session().get_service_model("s3")
    return (
        model.operation_model("ListObjectsV2").output_shape,
        model.operation_model("ListObjects").output_shape,
    )


def parse_listing(body: bytes, listed_at: dt.datetime) -> Page:
    """Parse a ``ListBucketResult`` document (v1 or v2) with botocore's S3 parser.

    Raises
    ------
    ValueError
        When the document is not a well-formed ``ListBucketResult``.
    MissingDependencyError
        When botocore is not installed.
    """
    botocore = _botocore()
    v2_shape, v1_shape = _output_shapes()
    parser = botocore.parsers.create_parser("rest-xml")
    response = {"body": body, "headers": {}, "status_code": 200}
    try:
        parsed = parser.parse(response, v2_shape)
        decode = botocore.handlers.decode_list_object_v2
        if "KeyCount" not in parsed:  # a v1 answer: read its NextMarker too
            parsed = parser.parse(response, v1_shape)
            decode = botocore.handlers.decode_list_object
    except botocore.parsers.ResponseParserError as err:
        raise ValueError(str(err)) from None
    # What botocore does when it asked for encoding-type=url itself (it decodes with
    # unquote_plus: S3 may write + for a space).
    decode(parsed=parsed, context={"encoding_type_auto_set": True})
    return _to_page(parsed, listed_at)


def _refused(error: BaseException | None) -> bool:
    # A refused connection or an unknown host, anywhere in the exception's chain.
    for _ in range(10):
        if error is None:
            return False
        if isinstance(error, ConnectionRefusedError | socket.gaierror):
            return True
        error = error.__cause__ or error.__context__
    return False


def _listing_error(err: BaseException, url: str, what: str) -> DownloadError | None:
    """The project's error for what botocore raised on a listing call; None if not botocore's.

    429 and S3's ``SlowDown`` family: :class:`RateLimitError`. Other HTTP answers:
    :class:`DownloadError` with ``status`` (retryable for 408/425/429/5xx). An unreadable
    answer: status 200, retryable. Connection failures: status None, retryable except
    refused connections and unknown hosts (they fail the same way a moment later).
    ``url`` (endpoint and bucket) and ``what`` (what was listed) go into the message.
    """
    botocore = _botocore()
    exc, parsers = botocore.exceptions, botocore.parsers
    if isinstance(err, exc.ClientError):
        meta = err.response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        retry_after = (meta.get("HTTPHeaders") or {}).get("retry-after")
        error = err.response.get("Error") or {}
        code, message = error.get("Code") or "", error.get("Message") or ""
        answer = f"{url} answered HTTP {status}" + (f" {code}" if code else "")
        answer += (f": {message}" if message else "") + f" listing {what}"
        if status == 429 or code in _THROTTLED:
            hint = f"{answer}; the endpoint asks to slow down (try fewer --workers)"
            return RateLimitError(
                hint, url=url, status=status, reset=None, retry_after=retry_after, retryable=True
            )
        retryable = status is not None and (status in RETRY_STATUSES or status >= 500)
        return DownloadError(
            answer, url=url, status=status, retry_after=retry_after, retryable=retryable
        )
    if isinstance(err, parsers.ResponseParserError):
        return DownloadError(
            f"{url} answered an unreadable listing for {what}: {str(err)[:200]}",
            url=url,
            status=200,
            retryable=True,
        )
    if isinstance(err, exc.HTTPClientError | exc.ConnectionError | exc.IncompleteReadError):
        cause = err.kwargs.get("error")
        return DownloadError(
            f"could not reach {url} listing {what}: {cause or err}; check the network "
            "and BFA_S3_ENDPOINT",
            url=url,
            status=None,
            retryable=not _refused(cause),
        )
    return None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class S3Client:
    """Anonymous ListObjects and GET against one bucket, with retries and request counts.

    Parameters
    ----------
    endpoint
        S3 endpoint (path-style ``{endpoint}/{bucket}?...``); else ``BFA_S3_ENDPOINT``;
        else :data:`DEFAULT_ENDPOINT`.
    bucket
        Bucket; else ``BFA_S3_BUCKET``; else :data:`DEFAULT_BUCKET`.
    data_url
        Base URL of file downloads (``{data_url}/{key}``); else ``BFA_DATA_URL``; else
        :data:`DEFAULT_DATA_URL`.
    settings
        Timeouts and retry budget; default :func:`intake_bfa.config.get_settings`.
    max_keys
        Results per page (S3 caps it at 1000).

    Attributes
    ----------
    protocol
        ``"v2"`` until the endpoint shows it only speaks ``"v1"``.

    Raises
    ------
    ConfigError
        For an invalid endpoint, bucket or download URL.
    MissingDependencyError
        When botocore (the ``producer`` extra) is not installed.

    Notes
    -----
    Safe to share between threads: botocore clients are, counters are locked, and
    :attr:`protocol` only ever moves from v2 to v1.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        bucket: str | None = None,
        data_url: str | None = None,
        *,
        settings: Settings | None = None,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.endpoint = resolve_endpoint(endpoint)
        self.bucket = resolve_bucket(bucket)
        self.data_url = resolve_data_url(data_url)
        self.settings = settings or get_settings()
        self.max_keys = max(1, min(int(max_keys), MAX_KEYS))
        self.protocol = "v2"
        self._lock = threading.Lock()
        self._local = threading.local()  # the kind of the call this thread is making
        self._requests: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._client = self._make_client()

    def _make_client(self) -> Any:
        botocore = _botocore()
        config = botocore.config.Config(
            signature_version=botocore.UNSIGNED,  # public bucket: no credentials looked up
            retries={"total_max_attempts": 1, "mode": "standard"},  # with_retries retries
            connect_timeout=self.settings.timeout,
            read_timeout=self.settings.timeout,
            max_pool_connections=_POOL,
            s3={"addressing_style": "path"},  # {endpoint}/{bucket}: no other host
            user_agent_extra=f"intake-bfa/{__version__}",
        )
        # Unsigned requests carry no region; the endpoint URL alone says where they go.
        client = botocore.session.Session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", config=config
        )
        client.meta.events.register("before-send.s3", self._before_send)
        return client

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        # Every HTTP request botocore sends passes here: count it, and keep it on the endpoint.
        if _origin(request.url) != _origin(self.endpoint):
            raise DownloadError(
                f"refusing to send a request to {safe_url(request.url)}: only "
                f"{self.endpoint} (BFA_S3_ENDPOINT) is configured",
                url=safe_url(request.url),
                status=None,
            )
        self._count(getattr(self._local, "kind", "list"))

    # -- bookkeeping -------------------------------------------------------------------

    def _count(self, kind: str, retry: bool = False) -> None:
        with self._lock:
            (self._retries if retry else self._requests)[kind] += 1

    @property
    def requests(self) -> dict[str, int]:
        """HTTP requests sent so far, by kind (every attempt counts)."""
        with self._lock:
            return dict(self._requests)

    @property
    def retries(self) -> dict[str, int]:
        """Attempts that failed and were retried, by kind."""
        with self._lock:
            return dict(self._retries)

    # -- listing ------------------------------------------------------------------------

    def _page(self, operation: str, params: dict[str, Any], kind: str, what: str) -> Page:
        url = safe_url(f"{self.endpoint}/{quote(self.bucket, safe='')}")
        call = getattr(self._client, operation)

        def attempt() -> Page:
            self._local.kind = kind
            try:
                parsed = call(Bucket=self.bucket, **params)
            except Exception as err:
                mapped = _listing_error(err, url, what)
                if mapped is None:
                    raise
                raise mapped from None
            listed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            try:
                return _to_page(parsed, listed_at)
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                # A cut-off or garbled answer: asking again usually cures it.
                raise DownloadError(
                    f"{url} answered an unreadable listing for {what}: {err!r}",
                    url=url,
                    status=200,
                    retryable=True,
                ) from None

        return with_retries(
            attempt,
            self.settings,
            what=f"list {what}",
            on_retry=lambda err: self._count(kind, retry=True),
        )

    def iter_pages(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
        kind: str = "list",
    ) -> Iterator[Page]:
        """Yield the pages of one listing, following continuation tokens or markers.

        Parameters
        ----------
        prefix
            Key prefix (any Unicode; percent-encoded on the wire).
        delimiter
            Group keys into ``CommonPrefixes`` at this string (``"/"`` for folders).
        start_after
            List only keys sorting after this one (v1: ``marker``).
        kind
            Label under which the requests are counted.

        Raises
        ------
        DownloadError
            When a page cannot be had within the retry budget.
        """
        last: str | None = start_after  # the greatest key/prefix seen: the v1 marker
        token: str | None = None
        while True:
            page = self._one(prefix, delimiter, start_after, last, token, kind)
            seen = [o.key for o in page.objects] + page.prefixes
            if seen:
                last = max([*seen, last]) if last else max(seen)
            yield page
            if not page.truncated:
                return
            if self.protocol == "v2" and page.token:
                token = page.token
                continue
            # v1 (or a v2 answer without a token): continue after the last result.
            marker = page.next_marker or last
            if not marker or not seen:
                raise DownloadError(
                    f"listing {prefix!r} is truncated but gives no way to continue",
                    url=safe_url(self.endpoint),
                    status=None,
                )
            last, token = marker, None

    def _one(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        marker: str | None,
        token: str | None,
        kind: str,
    ) -> Page:
        # botocore adds encoding-type=url itself and decodes the answer.
        common: dict[str, Any] = {"Prefix": prefix, "MaxKeys": self.max_keys}
        if delimiter:
            common["Delimiter"] = delimiter
        if self.protocol == "v2":
            params = dict(common)
            if token:
                params["ContinuationToken"] = token
            elif marker and marker != start_after:
                # Resuming after an answer without token: start after our last result.
                params["StartAfter"] = marker
            elif start_after:
                params["StartAfter"] = start_after
            try:
                page = self._page("list_objects_v2", params, kind, repr(prefix))
            except DownloadError as err:
                if err.context.get("status") not in _V2_REJECTED:
                    raise
                log.warning(
                    "%s rejected ListObjectsV2 (%s); using ListObjects v1", self.endpoint, err
                )
                self.protocol = "v1"
            else:
                if page.is_v2:
                    return page
                # list-type=2 was ignored, so start-after may have been too: v1 from now on.
                log.warning("%s answered ListObjectsV2 in v1; using v1", self.endpoint)
                self.protocol = "v1"
        params = dict(common)
        if marker:
            params["Marker"] = marker
        return self._page("list_objects", params, kind, repr(prefix))

    def list(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
        kind: str = "list",
    ) -> Listing:
        """Every page of a listing (see :meth:`iter_pages`)."""
        return Listing(
            list(self.iter_pages(prefix, delimiter=delimiter, start_after=start_after, kind=kind))
        )

    # -- files --------------------------------------------------------------------------

    def get(self, key: str, *, kind: str = "get") -> bytes:
        """Download one object from ``{data_url}/{key}``.

        Raises
        ------
        DownloadError
            With ``.status`` 404 when the object is gone; other failures after retries.
        """
        url = f"{self.data_url}/{quote(key, safe='/' + _UNRESERVED)}"

        def attempt() -> bytes:
            self._count(kind)
            return read_body(open_url(url, self.settings, ok=(200,)), url)

        return with_retries(
            attempt,
            self.settings,
            what=f"GET {key}",
            on_retry=lambda err: self._count(kind, retry=True),
        )


__all__ = [
    "DEFAULT_BUCKET",
    "DEFAULT_DATA_URL",
    "DEFAULT_ENDPOINT",
    "MAX_KEYS",
    "Listing",
    "Page",
    "S3Client",
    "S3Object",
    "parse_listing",
    "resolve_bucket",
    "resolve_data_url",
    "resolve_endpoint",
]
