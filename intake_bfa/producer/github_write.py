"""Authenticated writes to GitHub Releases: the REST calls a publisher needs, and uploads.

Built on the standard library like :mod:`intake_bfa.http`, with the same token rule made one
origin wider: the token goes to the configured API origin and to the uploads origin, and
nowhere else. The uploads origin is ``https://uploads.github.com`` for github.com; for any
other API (GitHub Enterprise, the local test server) it is the origin the authenticated API
itself advertises in a release's ``upload_url``, as GitHub's own clients do. Writes never follow
redirects, and verification downloads go through :func:`intake_bfa.http.open_url`, which sends
the token to the API origin only, never to the object store it redirects to.

Each method makes a single attempt unless it says otherwise; :func:`intake_bfa.retry.with_retries`
classifies the :class:`~intake_bfa.errors.DownloadError` s raised here. :meth:`GitHubWriter.put_asset`
is the careful upload: retried, tolerant of its own lost answers, verified afterwards.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from ..config import Settings, _origin
from ..errors import (
    AuthenticationError,
    DownloadError,
    IntegrityError,
    RateLimitError,
    RepoNotFoundError,
)
from ..http import RETRY_STATUSES, USER_AGENT, lost_connection, open_url, safe_url
from ..retry import with_retries

log = logging.getLogger(__name__)

GITHUB_API = "https://api.github.com"
GITHUB_UPLOADS = "https://uploads.github.com"
_CHUNK = 1 << 20
_NEXT_RE = re.compile(r'<([^>]+)>;\s*rel="next"')
_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
_TYPES = {".json": "application/json", ".gz": "application/gzip", ".yaml": "application/yaml"}
_TYPES[".parquet"] = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class LocalFile:
    """A local file to publish: where it is and what its bytes must be."""

    path: Path
    size: int
    sha256: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected write is an error here, and urllib would copy Authorization along.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class _Body:
    """A file whose ``read`` returns 1 MiB whatever it is asked (http.client asks 8 KiB)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def read(self, _size: int = -1) -> bytes:
        return self._fh.read(_CHUNK)


class GitHubWriter:
    """The release-writing subset of the GitHub REST API for one repository.

    Parameters
    ----------
    settings : Settings
        Repository, API URL, token (required), timeout and retry budget.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.token:
            raise ValueError("GitHubWriter needs settings.token")
        self.settings = settings
        self._base = f"{settings.api_url}/repos/{settings.repo}"
        api = settings.api_origin
        self._uploads = GITHUB_UPLOADS if api == GITHUB_API else None  # else learnt from the API

    # -- transport ----------------------------------------------------------------------------

    def _token_for(self, url: str) -> bool:
        return _origin(url) in (self.settings.api_origin, self._uploads)

    def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, Any] | None = None,
        path: Path | None = None,
        content_type: str | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Any, Any]:
        """Make one request; return ``(status, decoded JSON or None, headers)``.

        Parameters
        ----------
        method, url
            HTTP method and absolute URL.
        data
            JSON body.
        path
            File streamed as the body (an upload), with ``content_type``.
        ok
            Statuses returned to the caller; any other raises.

        Raises
        ------
        DownloadError
            Connection failures and other statuses, marked retryable for 408/425/429/5xx,
            resets and timeouts; :class:`RateLimitError` and :class:`AuthenticationError`
            for GitHub's rate limits and a rejected token.
        """
        req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
        for key, value in _HEADERS.items():
            req.add_header(key, value)
        if self._token_for(url):
            req.add_unredirected_header("Authorization", f"Bearer {self.settings.token}")
        fh = None
        if data is not None:
            req.data = json.dumps(data).encode()
            req.add_header("Content-Type", "application/json")
        elif path is not None:
            fh = open(path, "rb")  # noqa: SIM115 - closed in the finally below
            req.data = _Body(fh)  # type: ignore[assignment]
            req.add_header("Content-Type", content_type or "application/octet-stream")
            req.add_header("Content-Length", str(path.stat().st_size))
        try:
            try:
                resp = _OPENER.open(req, timeout=self.settings.timeout)
            except urllib.error.HTTPError as err:
                resp = err
            status = resp.status if hasattr(resp, "status") else resp.code
            try:
                body = resp.read()
            finally:
                resp.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(
                f"{method} {safe_url(url)} failed: {reason}",
                url=safe_url(url),
                status=None,
                retryable=not isinstance(reason, ConnectionRefusedError | socket.gaierror),
            ) from None
        finally:
            if fh is not None:
                fh.close()
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if status in ok:
            return status, payload, resp.headers
        raise self._error(method, url, status, payload, resp.headers)

    def _error(self, method: str, url: str, status: int, payload: Any, headers: Any) -> Exception:
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        where = f"{method} {safe_url(url)}"
        context = {
            "url": safe_url(url),
            "status": status,
            "retry_after": headers.get("Retry-After"),
        }
        limited = headers.get("X-RateLimit-Remaining") == "0" or "rate limit" in message.lower()
        if status == 429 or (status == 403 and (limited or headers.get("Retry-After"))):
            reset = headers.get("X-RateLimit-Reset")
            return RateLimitError(
                f"{where}: GitHub rate limit ({status} {message}); wait and publish again",
                reset=float(reset) if reset and reset.isdigit() else None,
                retryable=True,
                **context,
            )
        if status == 401:
            return AuthenticationError(
                f"{where} rejected GITHUB_TOKEN (401 {message}); set a valid token",
                **context,
            )
        if status in (403, 404) and method != "GET":
            message += (
                f"; check that GITHUB_TOKEN may write to {self.settings.repo} "
                "(contents: write permission)"
            )
        retryable = status in RETRY_STATUSES or status >= 500
        return DownloadError(
            f"{where} answered HTTP {status}: {message}", retryable=retryable, **context
        )

    def _retrying(self, method: str, url: str, *, what: str, **kwargs: Any) -> tuple[int, Any]:
        """:meth:`request` with retries; for idempotent calls only (GET, PATCH, DELETE)."""

        def attempt() -> tuple[int, Any]:
            status, payload, _ = self.request(method, url, **kwargs)
            return status, payload

        return with_retries(attempt, self.settings, what=what)

    # -- releases -----------------------------------------------------------------------------

    def list_releases(self) -> list[dict[str, Any]]:
        """Every release, drafts included, following pagination (each page retried)."""
        url: str | None = f"{self._base}/releases?per_page=100"
        out: list[dict[str, Any]] = []
        while url:
            page = url

            def attempt(page: str = page) -> tuple[Any, Any]:
                status, payload, headers = self.request("GET", page, ok=(200, 404))
                return (status, payload), headers

            (status, payload), headers = with_retries(attempt, self.settings, what="list releases")
            if status == 404:
                raise RepoNotFoundError(
                    f"repository {self.settings.repo!r} not found at "
                    f"{safe_url(self.settings.api_url)}; check BFA_REPO and that GITHUB_TOKEN "
                    "can see it",
                    repo=self.settings.repo,
                    url=safe_url(page),
                )
            out.extend(payload or [])
            match = _NEXT_RE.search(headers.get("Link") or "")
            url = match.group(1) if match else None
        return out

    def get_release(self, release_id: int) -> dict[str, Any] | None:
        """A release by id (drafts included), or None if it is gone."""
        url = f"{self._base}/releases/{release_id}"
        status, payload = self._retrying("GET", url, what="get release", ok=(200, 404))
        return payload if status == 200 else None

    def create_release(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        """POST a release (one attempt); None if a release with that tag already exists."""
        url = f"{self._base}/releases"
        status, payload, _ = self.request("POST", url, data=fields, ok=(201, 422))
        if status == 201:
            return payload
        if _error_codes(payload) & {"already_exists"}:
            return None
        raise DownloadError(f"POST {safe_url(url)}: 422 {payload}", url=safe_url(url), status=422)

    def update_release(self, release_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH a release (retried: the same PATCH twice has the same effect)."""
        url = f"{self._base}/releases/{release_id}"
        return self._retrying("PATCH", url, data=fields, what="update release")[1]

    def delete_release(self, release_id: int) -> bool:
        """DELETE a release (retried); False if it was already gone."""
        url = f"{self._base}/releases/{release_id}"
        return self._retrying("DELETE", url, what="delete release", ok=(204, 404))[0] == 204

    def delete_asset(self, asset_id: int) -> bool:
        """DELETE a release asset (retried); False if it was already gone."""
        url = f"{self._base}/releases/assets/{asset_id}"
        return self._retrying("DELETE", url, what="delete asset", ok=(204, 404))[0] == 204

    def delete_tag(self, tag: str) -> bool:
        """DELETE the git tag ``tag`` (retried); False if there was no such tag."""
        url = f"{self._base}/git/refs/tags/{quote(tag, safe='')}"
        return self._retrying("DELETE", url, what="delete tag", ok=(204, 404, 422))[0] == 204

    # -- assets -------------------------------------------------------------------------------

    def upload_url(self, release: dict[str, Any], name: str) -> str:
        """Expand a release's ``upload_url`` template for asset ``name``, checking its origin."""
        base = (release.get("upload_url") or "").split("{", 1)[0]  # drop "{?name,label}"
        cleartext = base.startswith("http:") and self.settings.api_url.startswith("https:")
        if self._uploads is None and base and not cleartext:
            # Not github.com: the API we already trust with the token says where uploads go
            # (GitHub Enterprise: /api/uploads on its own host), as GitHub's clients assume.
            self._uploads = _origin(base)
        if not base or _origin(base) != self._uploads:
            raise DownloadError(
                f"release upload_url {safe_url(base)!r} is not on the uploads origin "
                f"{self._uploads}; refusing to send GITHUB_TOKEN there",
                url=safe_url(base),
                status=None,
            )
        return f"{base}?{urlencode({'name': name}, quote_via=quote)}"

    def upload_asset(
        self, release: dict[str, Any], name: str, path: Path, content_type: str
    ) -> dict[str, Any] | None:
        """Upload ``path`` as asset ``name`` (one attempt); None if that name already exists."""
        url = self.upload_url(release, name)
        status, payload, _ = self.request(
            "POST", url, path=path, content_type=content_type, ok=(201, 422)
        )
        if status == 201:
            return payload
        if _error_codes(payload) & {"already_exists"}:
            return None
        raise DownloadError(f"upload of {name}: 422 {payload}", url=safe_url(url), status=422)

    def download_sha256(self, asset: dict[str, Any]) -> tuple[int, str]:
        """Download an asset through its API URL (works for drafts) and hash it, with retries.

        The API answers with a redirect to the object store; :func:`~intake_bfa.http.open_url`
        sends the token to the API only, never to that redirect target.
        """
        url = asset["url"]

        def attempt() -> tuple[int, str]:
            digest, size = hashlib.sha256(), 0
            headers = {"Accept": "application/octet-stream"}
            with open_url(url, self.settings, headers=headers, ok=(200,)) as resp:
                try:
                    while chunk := resp.stream.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                except (OSError, http.client.HTTPException) as err:
                    raise lost_connection(url, err) from None
            return size, digest.hexdigest()

        return with_retries(attempt, self.settings, what=f"download {asset.get('name')}")

    def matches(self, remote: dict[str, Any], local: LocalFile) -> bool:
        """Whether a release asset holds exactly ``local``'s bytes (by size and digest)."""
        if remote.get("state", "uploaded") != "uploaded" or remote.get("size") != local.size:
            return False
        sha = asset_sha256(remote)
        if sha is None:  # no digest (older servers): only the bytes themselves can tell
            sha = self.download_sha256(remote)[1]
        return sha == local.sha256

    def put_asset(
        self, release: dict[str, Any], name: str, local: LocalFile, *, download: bool = False
    ) -> dict[str, Any]:
        """Upload ``local`` as asset ``name`` with retries, then verify it.

        Verification compares the size and the API's ``digest`` with ``local``; it downloads
        the asset back and hashes it when ``download`` is true or the API gives no digest. An
        asset that fails verification is deleted, so nothing wrong stays behind.

        Raises
        ------
        DownloadError
            The upload failed beyond the retry budget.
        IntegrityError
            The uploaded asset does not match ``local``.
        """
        ctype = _TYPES.get(Path(name).suffix, "application/octet-stream")

        def attempt() -> dict[str, Any]:
            asset = self.upload_asset(release, name, local.path, ctype)
            if asset is not None:
                return asset
            # 422 already_exists: an earlier attempt stored it but its answer was lost, or a
            # half-finished upload blocks the name. Keep it if intact, else clear the way.
            current = self.get_release(release["id"]) or {}
            found = next((a for a in current.get("assets", []) if a["name"] == name), None)
            if found is not None and self.matches(found, local):
                return found
            if found is not None:
                self.delete_asset(found["id"])
            raise DownloadError(
                f"asset {name} was in the way; removed it, uploading again",
                url=safe_url(release.get("url", "")),
                status=422,
                retryable=True,
            )

        log.info("uploading %s (%d bytes)", name, local.size)
        asset = with_retries(attempt, self.settings, what=f"upload {name}")
        size, sha = asset.get("size"), asset_sha256(asset)
        if download or (sha is None and size == local.size):
            size, sha = self.download_sha256(asset)
        if (size, sha) != (local.size, local.sha256):
            self.delete_asset(asset["id"])
            raise IntegrityError(
                f"uploaded {name} does not match the local file (size {size} vs {local.size}, "
                f"sha256 {sha} vs {local.sha256}); deleted it, publish again",
                asset=name,
            )
        return asset


def _error_codes(payload: Any) -> set[str]:
    errors = payload.get("errors") if isinstance(payload, dict) else None
    return {e.get("code", "") for e in errors or () if isinstance(e, dict)}


def asset_sha256(asset: dict[str, Any]) -> str | None:
    """The hex sha256 of a release asset's ``digest`` field, if the API gave one."""
    digest = asset.get("digest") or ""
    return digest[7:].lower() if digest.startswith("sha256:") else None


__all__ = ["GitHubWriter", "LocalFile", "asset_sha256"]
