"""The write side of the fake: release and tag endpoints on the API, asset uploads on their own
origin (uploads.github.com).

Every write needs the server's token (401 otherwise) and answers like GitHub: 201/200/204 on
success, 404 for a repository, release or asset it cannot find, 422 ``Validation Failed`` with an
``errors`` list for duplicates. Uploaded bodies are streamed to a per-server folder while being
hashed, so assets of hundreds of MB never sit in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from intake_bfa.testing.server.errors import JSON_TYPE, api_error
from intake_bfa.testing.server.faults import current_fault, cut
from intake_bfa.testing.server.store import Asset, Release, Repo, Store

log = logging.getLogger(__package__)

_REL = "/repos/{o}/{r}/releases"
_TAG_REF = "/repos/{o}/{r}/git/refs/tags/{tag:.+}"
_FLUSH = 1 << 20  # bytes of an upload buffered before each write to disk
_RELEASE_FIELDS = {"tag_name": str, "name": str, "body": str, "draft": bool, "prerelease": bool}
#: Status recorded for an upload the server cut off: no status line was ever sent.
CUT_STATUS = 499


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload), headers={"Content-Type": JSON_TYPE}
    )


def _invalid(resource: str, field: str, code: str) -> web.Response:
    """GitHub's 422: ``Validation Failed`` naming the offending field."""
    error = {"resource": resource, "code": code, "field": field}
    payload = {"message": "Validation Failed", "errors": [error], "status": "422"}
    return _json(422, {**payload, "documentation_url": "https://docs.github.com/rest"})


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _publish(repo: Repo, rel: Release, draft: bool) -> None:
    """Apply a draft flag change; publishing creates the tag and stamps ``published_at``."""
    if rel.draft and not draft:
        rel.published_at = _now()
        repo.tags.add(rel.tag)
    elif draft:
        rel.published_at = None
    rel.draft = draft


class WriteOrigins:
    """Handlers of the write endpoints (API origin) and of the uploads origin.

    Parameters
    ----------
    store : Store
        The releases written to.
    authed : callable
        Tells whether a request carries the server's token.

    Attributes
    ----------
    upload_dir : Path or None
        Folder uploaded bodies are stored in; set by the server while it runs.
    """

    def __init__(self, store: Store, authed: Callable[[web.Request], bool]) -> None:
        self._store, self._authed = store, authed
        self.upload_dir: Path | None = None

    def routes(self, origin: str) -> list[tuple[str, str, Any]]:
        """``(method, path, handler)`` of the write routes served on ``origin``."""
        if origin == "uploads":
            return [("POST", rf"{_REL}/{{rid:\d+}}/assets", self.upload)]
        if origin != "api":
            return []
        return [
            ("POST", _REL, self.create_release),
            ("PATCH", rf"{_REL}/{{rid:\d+}}", self.update_release),
            ("DELETE", rf"{_REL}/{{rid:\d+}}", self.delete_release),
            ("DELETE", rf"{_REL}/assets/{{aid:\d+}}", self.delete_asset),
            ("GET", _TAG_REF, self.get_tag),
            ("DELETE", _TAG_REF, self.delete_tag),
        ]

    # -- helpers (callers hold the store lock where noted) ------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        if self._authed(request):
            return None
        has_credentials = bool(request.headers.get("Authorization"))
        return api_error(401, "Bad credentials" if has_credentials else "Requires authentication")

    def _release(self, request: web.Request) -> tuple[Repo | None, Release | None]:
        """The repository and the release ``{rid}`` of a request (caller holds the lock)."""
        info = request.match_info
        repo = self._store.repo(info["o"], info["r"])
        rels = repo.releases.values() if repo else ()
        return repo, next((r for r in rels if str(r.id) == info.get("rid")), None)

    @staticmethod
    async def _fields(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            data = await request.json()
        except ValueError:
            return api_error(400, "Problems parsing JSON")
        if not isinstance(data, dict):
            return api_error(400, "Problems parsing JSON")
        fields = {k: v for k, v in data.items() if k in _RELEASE_FIELDS and v is not None}
        for key, value in fields.items():
            if not isinstance(value, _RELEASE_FIELDS[key]):
                return _invalid("Release", key, "invalid")
        return fields

    # -- releases and tags --------------------------------------------------------------------

    async def create_release(self, request: web.Request) -> web.Response:
        """``POST /repos/{o}/{r}/releases``: 201 and the new release."""
        if (denied := self._denied(request)) is not None:
            return denied
        fields = await self._fields(request)
        if isinstance(fields, web.Response):
            return fields
        tag = fields.get("tag_name", "")
        with self._store.lock:
            repo, _ = self._release(request)
            if repo is None:
                return api_error(404, "Not Found")
            if not tag:
                return _invalid("Release", "tag_name", "missing_field")
            if tag in repo.releases:
                return _invalid("Release", "tag_name", "already_exists")
            rel = Release(
                self._store.next_id(), tag, fields.get("name") or tag, fields.get("body", ""),
                draft=True, prerelease=fields.get("prerelease", False), created_at=_now(),
            )  # fmt: skip
            _publish(repo, rel, fields.get("draft", False))
            repo.releases[tag] = rel
            return _json(201, self._store.release_json(repo, rel))

    async def update_release(self, request: web.Request) -> web.Response:
        """``PATCH /repos/{o}/{r}/releases/{id}``: 200 and the updated release."""
        if (denied := self._denied(request)) is not None:
            return denied
        fields = await self._fields(request)
        if isinstance(fields, web.Response):
            return fields
        with self._store.lock:
            repo, rel = self._release(request)
            if repo is None or rel is None:
                return api_error(404, "Not Found")
            tag = fields.get("tag_name") or rel.tag
            if tag != rel.tag:
                if tag in repo.releases:
                    return _invalid("Release", "tag_name", "already_exists")
                del repo.releases[rel.tag]
                rel.tag = tag
                repo.releases[tag] = rel
                if not rel.draft:
                    repo.tags.add(tag)
            rel.name = fields.get("name", rel.name)
            rel.body = fields.get("body", rel.body)
            rel.prerelease = fields.get("prerelease", rel.prerelease)
            _publish(repo, rel, fields.get("draft", rel.draft))
            return _json(200, self._store.release_json(repo, rel))

    async def delete_release(self, request: web.Request) -> web.Response:
        """``DELETE /repos/{o}/{r}/releases/{id}``: 204; the tag stays, as on GitHub."""
        if (denied := self._denied(request)) is not None:
            return denied
        with self._store.lock:
            repo, rel = self._release(request)
            if repo is None or rel is None:
                return api_error(404, "Not Found")
            del repo.releases[rel.tag]
        return web.Response(status=204)

    async def delete_asset(self, request: web.Request) -> web.Response:
        """``DELETE /repos/{o}/{r}/releases/assets/{id}``: 204."""
        if (denied := self._denied(request)) is not None:
            return denied
        aid = request.match_info["aid"]
        with self._store.lock:
            repo, _ = self._release(request)
            for rel in repo.releases.values() if repo else ():
                found = [n for n, a in rel.assets.items() if str(a.id) == aid]
                if found:
                    del rel.assets[found[0]]
                    return web.Response(status=204)
        return api_error(404, "Not Found")

    async def get_tag(self, request: web.Request) -> web.Response:
        """``GET /repos/{o}/{r}/git/refs/tags/{tag}``: the tag's reference, or 404."""
        info = request.match_info
        with self._store.lock:
            repo = self._store.repo(info["o"], info["r"])
            if repo is None or info["tag"] not in repo.tags:
                return api_error(404, "Not Found")
        sha = hashlib.sha1(f"{repo.id}/{info['tag']}".encode(), usedforsecurity=False).hexdigest()
        ref = f"refs/tags/{info['tag']}"
        return _json(200, {"ref": ref, "object": {"type": "commit", "sha": sha}})

    async def delete_tag(self, request: web.Request) -> web.Response:
        """``DELETE /repos/{o}/{r}/git/refs/tags/{tag}``: 204, or 422 if there is no such tag."""
        if (denied := self._denied(request)) is not None:
            return denied
        info = request.match_info
        with self._store.lock:
            repo = self._store.repo(info["o"], info["r"])
            if repo is None:
                return api_error(404, "Not Found")
            if info["tag"] not in repo.tags:
                return api_error(422, "Reference does not exist")
            repo.tags.discard(info["tag"])
            # On GitHub a published release whose tag is deleted turns back into a draft.
            rel = repo.releases.get(info["tag"])
            if rel is not None and not rel.draft:
                _publish(repo, rel, True)
        return web.Response(status=204)

    # -- uploads ------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        """``POST {uploads}/repos/{o}/{r}/releases/{id}/assets?name=&label=``: 201 and the asset."""
        if (denied := self._denied(request)) is not None:
            return denied
        name, label = request.query.get("name", ""), request.query.get("label", "")
        with self._store.lock:
            repo, rel = self._release(request)
            exists = rel is not None and name in rel.assets
        if repo is None or rel is None:
            return api_error(404, "Not Found")
        if not name or re.search(r"[/\\\x00]", name):
            return _invalid("ReleaseAsset", "name", "missing_field" if not name else "invalid")
        if exists:
            return _invalid("ReleaseAsset", "name", "already_exists")
        if request.content_length is None:
            return api_error(411, "Length Required")
        received = await self._receive(request, request.content_length)
        if received is None:
            return web.Response(status=CUT_STATUS)  # recorded only: the client is gone
        path, size, sha256 = received
        ctype = request.headers.get("Content-Type") or "application/octet-stream"
        asset = Asset(name, path, size, sha256, with_digest=True, content_type=ctype, label=label)
        with self._store.lock:
            repo, rel = self._release(request)  # it may have gone while the body streamed
            if repo is None or rel is None:
                return api_error(404, "Not Found")
            if name in rel.assets:
                return _invalid("ReleaseAsset", "name", "already_exists")
            asset.id = self._store.next_id()
            rel.assets[name] = asset
            return _json(201, self._store.asset_json(repo, rel, asset))

    async def _receive(self, request: web.Request, length: int) -> tuple[Path, int, str] | None:
        """Stream the body to a new file while hashing it; None if it did not arrive whole."""
        if self.upload_dir is None:
            raise RuntimeError("ReleaseServer is not started")
        fault = current_fault()
        cut_at = fault.after_bytes if fault and fault.kind in ("reset", "truncate") else None
        fd, name = tempfile.mkstemp(suffix=".upload", dir=self.upload_dir)
        path, digest, size, buffer = Path(name), hashlib.sha256(), 0, bytearray()
        complete = False
        try:
            with os.fdopen(fd, "wb") as fh:
                while size < length:
                    if cut_at is not None and size >= cut_at:
                        await cut(request, fault.kind)  # type: ignore[union-attr]
                        return None
                    limits = [cut_at - size] if cut_at is not None else []
                    # A client gone mid-body raises ConnectionResetError here, or reads EOF.
                    chunk = await request.content.read(min(length - size, _FLUSH, *limits))
                    if not chunk:
                        log.debug("upload %s ended after %d of %d bytes", name, size, length)
                        return None
                    digest.update(chunk)
                    size += len(chunk)
                    buffer += chunk
                    if len(buffer) >= _FLUSH:  # disk I/O off the loop, in big pieces
                        await asyncio.to_thread(fh.write, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(fh.write, bytes(buffer))
            complete = True
            return path, size, digest.hexdigest()
        except ConnectionError:
            log.debug("client went away during upload %s", request.raw_path)
            return None
        finally:
            if not complete:
                path.unlink(missing_ok=True)
