"""A small anonymous S3 client for Binance Vision: ListObjects pages and file downloads.

Built on :func:`intake_bfa.http.open_url` (no boto3 at run time): the bucket is public,
so a listing is one signed-nothing GET that answers XML. ListObjectsV2 is used
(``start-after`` lets a daily run list only the trailing window of a folder); an endpoint
that rejects it (400/405/501) or ignores it (answers without ``KeyCount``) is spoken to
in v1 (``marker``) from then on. Keys and prefixes are requested with
``encoding-type=url`` so that any byte survives the XML, and decoded here.

Every request goes through :func:`intake_bfa.retry.with_retries` and is counted by kind,
so a run can report what it cost.

Configuration is read at call time: argument > environment > default, for
``BFA_S3_ENDPOINT``, ``BFA_S3_BUCKET`` and ``BFA_DATA_URL``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

from ..config import Settings, get_settings
from ..errors import ConfigError, DownloadError
from ..http import open_url, read_body, safe_url
from ..retry import with_retries

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://s3-ap-northeast-1.amazonaws.com"
DEFAULT_BUCKET = "data.binance.vision"
DEFAULT_DATA_URL = "https://data.binance.vision"
#: S3's own cap on results per ListObjects page (keys and common prefixes together).
MAX_KEYS = 1000
#: Statuses meaning "this endpoint does not speak ListObjectsV2".
_V2_REJECTED = {400, 405, 501}
# RFC 3986 unreserved characters; everything else (``/`` and UTF-8 bytes included) is
# percent-encoded, which is what S3's signature-free query parsing expects.
_UNRESERVED = "-_.~"


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


def _local(tag: str) -> str:
    # Tolerate servers that omit (or change) the 2006-03-01 namespace.
    return tag.rsplit("}", 1)[-1]


def _utc_naive(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text.strip())
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp


def parse_listing(body: bytes, listed_at: dt.datetime) -> Page:
    """Parse a ``ListBucketResult`` document (v1 or v2).

    Raises
    ------
    ValueError
        When the document is not a well-formed ``ListBucketResult``.
    """
    root = ET.fromstring(body)  # ParseError is a SyntaxError: caught by the caller
    if _local(root.tag) != "ListBucketResult":
        raise ValueError(f"expected ListBucketResult, got {_local(root.tag)}")
    fields: dict[str, str] = {}
    contents, prefixes = [], []
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            contents.append({_local(c.tag): (c.text or "") for c in child})
        elif name == "CommonPrefixes":
            prefixes.extend((c.text or "") for c in child if _local(c.tag) == "Prefix")
        else:
            fields[name] = child.text or ""
    # encoding-type=url: botocore decodes with unquote_plus too (S3 may write + for space).
    decode = unquote_plus if fields.get("EncodingType", "").lower() == "url" else str
    objects = [
        S3Object(
            key=decode(item["Key"]),
            size=int(item.get("Size") or 0),
            last_modified=_utc_naive(item["LastModified"]),
            etag=item.get("ETag", "").strip().strip('"'),
        )
        for item in contents
    ]
    marker = fields.get("NextMarker")
    return Page(
        objects=objects,
        prefixes=[decode(p) for p in prefixes],
        listed_at=listed_at,
        truncated=fields.get("IsTruncated", "false").strip().lower() == "true",
        token=fields.get("NextContinuationToken") or None,
        next_marker=decode(marker) if marker else None,
        is_v2="KeyCount" in fields,
    )


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

    Notes
    -----
    Safe to share between threads: counters are locked, everything else is read-only
    except :attr:`protocol`, which only ever moves from v2 to v1.
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
        self._requests: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()

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

    def _page(self, params: dict[str, str], kind: str, what: str) -> Page:
        query = urlencode(params, quote_via=quote, safe=_UNRESERVED)
        url = f"{self.endpoint}/{quote(self.bucket, safe='')}?{query}"

        def attempt() -> Page:
            self._count(kind)
            body = read_body(open_url(url, self.settings, ok=(200,)), url)
            listed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            try:
                return parse_listing(body, listed_at)
            except (ValueError, SyntaxError, KeyError) as err:
                # A cut-off or garbled answer: asking again usually cures it.
                raise DownloadError(
                    f"{safe_url(url)} answered an unreadable listing for {what}: {err}",
                    url=safe_url(url),
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
        common = {"prefix": prefix, "encoding-type": "url", "max-keys": str(self.max_keys)}
        if delimiter:
            common["delimiter"] = delimiter
        if self.protocol == "v2":
            params = {"list-type": "2", **common}
            if token:
                params["continuation-token"] = token
            elif marker and marker != start_after:
                # Resuming after an answer without token: start-after our last result.
                params["start-after"] = marker
            elif start_after:
                params["start-after"] = start_after
            try:
                page = self._page(params, kind, repr(prefix))
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
            params["marker"] = marker
        return self._page(params, kind, repr(prefix))

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
