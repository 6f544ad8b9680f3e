"""The GitHub Releases REST calls a publisher makes: releases, assets, tags and uploads.

Every request goes through :func:`intake_bfa.http.open_url` (redirects, status mapping to typed
errors, timeouts), with its token rule made one origin wider: the token goes to the configured
API origin and to the uploads origin, and nowhere else, redirect targets included. The uploads
origin is ``https://uploads.github.com`` for github.com; for any other API (GitHub Enterprise,
the local test server) it is the origin the authenticated API itself advertises in a release's
``upload_url``, as GitHub's own clients do. Requests with a body are never redirected, and
verification downloads send the token to the API origin only, never to the object store it
redirects to.

Each method makes a single attempt unless it says otherwise; :func:`intake_bfa.http.with_retries`
classifies the :class:`~intake_bfa.errors.DownloadError` s raised here. :meth:`GitHubWriter.put_asset`
is the careful upload: retried, tolerant of its own lost answers, verified afterwards.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from intake_bfa.config import Settings, url_origin
from intake_bfa.errors import DownloadError, IntegrityError, RepoNotFoundError
from intake_bfa.http import Advice, lost_connection, open_url, read_body, safe_url, with_retries

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

    def _advice(self, method: str) -> Advice:
        repo = self.settings.repo
        refused = f"check that GITHUB_TOKEN may write to {repo} (contents: write permission)"
        return Advice(
            unreachable="check the network and BFA_API_URL",
            rate_limit="wait and publish again",
            credentials="set a valid GITHUB_TOKEN",
            refused="" if method == "GET" else refused,
        )

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
        headers = dict(_HEADERS)
        body: bytes | None = None
        if data is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(data).encode()
        elif path is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
        with open(path, "rb") if path is not None and data is None else nullcontext(body) as sent:
            resp = open_url(
                url,
                self.settings,
                method=method,
                headers=headers,
                ok=ok,
                data=sent,
                token_origins=[o for o in (self.settings.api_origin, self._uploads) if o],
                advice=self._advice(method),
            )
        answer = read_body(resp, url)
        try:
            payload = json.loads(answer) if answer else None
        except ValueError:
            payload = None
        return resp.status, payload, resp.headers

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
            self._uploads = url_origin(base)
        if not base or url_origin(base) != self._uploads:
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
