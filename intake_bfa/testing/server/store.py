"""The in-memory model behind :class:`~.ReleaseServer`: repositories, releases and assets.

:class:`Store` hands out ids, hashes asset content and renders the JSON the REST API serves;
the origins read it under :attr:`Store.lock`.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

# mimetypes reports compression as an "encoding"; GitHub labels such files by it.
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
_AUTHOR = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


def _utc(dt: datetime | None) -> datetime:
    # GitHub timestamps have one-second resolution; truncating keeps our sort order identical
    # to the one a client can reconstruct from the JSON.
    dt = (dt or datetime.now(UTC)).replace(microsecond=0)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Asset:
    name: str
    source: bytes | Path  # bytes live in memory; a Path is streamed from disk when served
    size: int
    sha256: str
    with_digest: bool
    id: int = 0
    updated_at: datetime = field(default_factory=lambda: _utc(None))
    download_count: int = 0
    content_type: str | None = None  # as uploaded; None: guessed from the name
    label: str = ""


@dataclass
class Release:
    id: int
    tag: str
    name: str
    body: str
    draft: bool
    prerelease: bool
    created_at: datetime
    assets: dict[str, Asset] = field(default_factory=dict)
    published_at: datetime | None = None  # None while a draft


@dataclass
class Repo:
    id: int
    full_name: str
    releases: dict[str, Release] = field(default_factory=dict)
    # Git tags outlive their releases: GitHub keeps the tag when a release is deleted.
    tags: set[str] = field(default_factory=set)


def _load(name: str, data: bytes | str | os.PathLike[str], with_digest: bool) -> Asset:
    if isinstance(data, bytes | bytearray | memoryview):
        blob = bytes(data)
        return Asset(name, blob, len(blob), hashlib.sha256(blob).hexdigest(), with_digest)
    path, digest, size = Path(data), hashlib.sha256(), 0
    with path.open("rb") as fh:  # streamed: assets may be hundreds of MB
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return Asset(name, path, size, digest.hexdigest(), with_digest)


class Store:
    """Repositories, releases and assets of one server, and their JSON.

    Parameters
    ----------
    url : callable
        Maps an origin name (``"api"``, ``"web"``) to its base URL; raises RuntimeError
        while the server is not started. The JSON embeds these URLs.

    Attributes
    ----------
    lock : threading.Lock
        Guards the repositories and download counts. The mutating methods take it
        themselves; callers of the lookups and JSON renderers must hold it.
    """

    def __init__(self, url: Callable[[str], str]) -> None:
        self._url = url
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._repos: dict[str, Repo] = {}

    # -- mutation (see the ReleaseServer methods of the same names) --------------------------

    def add_repo(self, repo: str) -> None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ValueError(f"repo must look like 'owner/name', got {repo!r}")
        with self.lock:
            if repo.lower() not in self._repos:  # GitHub matches owner/repo case-insensitively
                self._repos[repo.lower()] = Repo(next(self._ids), repo)

    def _release(self, repo: str, tag: str) -> tuple[Repo, Release]:
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
        name: str | None,
        body: str,
        draft: bool,
        prerelease: bool,
        created_at: datetime | None,
        with_digest: bool,
    ) -> dict[str, Any]:
        self._url("api")  # the JSON embeds URLs, so fail before mutating anything
        loaded = [_load(n, d, with_digest) for n, d in assets.items()]  # hash outside the lock
        name = tag if name is None else name
        self.add_repo(repo)
        with self.lock:
            rec = self._repos[repo.lower()]
            if tag in rec.releases:
                raise ValueError(f"release {tag!r} already exists in {repo!r}")
            rel = Release(next(self._ids), tag, name, body, draft, prerelease, _utc(created_at))
            if not draft:  # as on GitHub, a draft's tag only comes into being when published
                rel.published_at = rel.created_at
                rec.tags.add(tag)
            for asset in loaded:
                asset.id = next(self._ids)
                if created_at is not None:  # a back-dated release had its assets back then
                    asset.updated_at = rel.created_at
                rel.assets[asset.name] = asset
            rec.releases[tag] = rel
            return self.release_json(rec, rel)

    def replace_asset(
        self,
        repo: str,
        tag: str,
        name: str,
        data: bytes | str | os.PathLike[str],
        *,
        with_digest: bool,
    ) -> dict[str, Any]:
        self._url("api")
        new = _load(name, data, with_digest)
        with self.lock:
            rec, rel = self._release(repo, tag)
            old = rel.assets[name]
            new.id = next(self._ids)
            new.updated_at = max(new.updated_at, old.updated_at + timedelta(seconds=1))
            rel.assets[name] = new
            return self.asset_json(rec, rel, new)

    def delete_release(self, repo: str, tag: str) -> None:
        with self.lock:
            rec, _ = self._release(repo, tag)
            del rec.releases[tag]

    def next_id(self) -> int:
        """A fresh id for a repository, release or asset (ids are unique per server)."""
        return next(self._ids)

    # -- lookups (caller holds the lock) -----------------------------------------------------

    def repo(self, owner: str, name: str) -> Repo | None:
        """The repository ``owner/name``, matched case-insensitively."""
        return self._repos.get(f"{owner}/{name}".lower())

    def visible(self, owner: str, name: str, authed: bool) -> tuple[Repo | None, list[Release]]:
        """The repository and the releases a caller may see (drafts if authed), newest first."""
        repo = self.repo(owner, name)
        rels = [r for r in (repo.releases.values() if repo else ()) if authed or not r.draft]
        return repo, sorted(rels, key=lambda r: (r.created_at, r.id), reverse=True)

    def asset(self, owner: str, name: str, asset_id: str) -> Asset | None:
        """The asset with id ``asset_id`` in any release of ``owner/name``, drafts included."""
        repo = self.repo(owner, name)
        assets = [a for r in (repo.releases.values() if repo else ()) for a in r.assets.values()]
        return next((a for a in assets if str(a.id) == asset_id), None)

    # -- JSON, as the REST API renders it (caller holds the lock) ----------------------------

    def repo_json(self, repo: Repo) -> dict[str, Any]:
        owner, name = repo.full_name.split("/")
        return {
            "id": repo.id, "node_id": f"R_{repo.id:010d}", "name": name,
            "full_name": repo.full_name, "private": False, "owner": {"login": owner},
            "url": f"{self._url('api')}/repos/{repo.full_name}", "default_branch": "main",
        }  # fmt: skip

    def asset_json(self, repo: Repo, rel: Release, a: Asset) -> dict[str, Any]:
        ctype, enc = mimetypes.guess_type(a.name, strict=False)
        # fmt: off
        return {
            "url": f"{self._url('api')}/repos/{repo.full_name}/releases/assets/{a.id}",
            "id": a.id, "node_id": f"RA_{a.id:010d}", "name": a.name, "label": a.label,
            "uploader": _AUTHOR, "state": "uploaded", "size": a.size,
            "content_type": a.content_type or _ENCODED.get(enc or "") or ctype
                            or "application/octet-stream",
            "digest": f"sha256:{a.sha256}" if a.with_digest else None,
            "download_count": a.download_count,
            # A re-upload is a brand-new asset, so both times move together.
            "created_at": _ts(a.updated_at), "updated_at": _ts(a.updated_at),
            "browser_download_url": f"{self._url('web')}/{repo.full_name}/releases/download/"
                                    f"{quote(rel.tag)}/{quote(a.name, safe='')}",
        }
        # fmt: on

    def release_json(self, repo: Repo, rel: Release) -> dict[str, Any]:
        url = f"{self._url('api')}/repos/{repo.full_name}/releases/{rel.id}"
        upload = f"{self._url('uploads')}/repos/{repo.full_name}/releases/{rel.id}/assets"
        # fmt: off
        return {
            "url": url, "assets_url": f"{url}/assets", "upload_url": f"{upload}{{?name,label}}",
            "html_url": f"{self._url('web')}/{repo.full_name}/releases/tag/{quote(rel.tag)}",
            "id": rel.id, "node_id": f"RE_{rel.id:010d}", "tag_name": rel.tag,
            "target_commitish": "main", "name": rel.name, "body": rel.body,
            "draft": rel.draft, "prerelease": rel.prerelease, "created_at": _ts(rel.created_at),
            "published_at": _ts(rel.published_at) if rel.published_at else None,
            "author": _AUTHOR,
            "assets": [self.asset_json(repo, rel, a) for a in rel.assets.values()],
        }
        # fmt: on
