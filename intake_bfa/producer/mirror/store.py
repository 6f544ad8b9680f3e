"""The S3 side of ``bfa mirror``: where objects go, and verified, idempotent writes.

Each object is written with user metadata ``x-amz-meta-sha256`` (the sha256 of its bytes) and
``x-amz-meta-expected-etag``: the ETag S3 computes for exactly these bytes, predicted before the
upload (the MD5 for a single PUT; the MD5 of the part MD5s plus ``-N`` for a multipart upload,
whose part size we choose). S3 computes the ETag itself from the bytes it stored, so one HEAD
proves an object intact when its size, its sha256 metadata and its ETag all match: a foreign
overwrite either lacks our metadata or, copying it, has another ETag. Stores whose ETag is not
an MD5 (SSE-KMS, some S3-compatible services) fail that comparison, and the object is then read
back and hashed; correctness never rests on the prediction, only the cost does. ``verify=
"download"`` always reads back.

A PUT and a completed multipart upload replace an object atomically, so readers see the old or
the new bytes, never a mix; s3fs aborts a failed multipart upload, which never becomes visible.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from intake_bfa.config import Settings
from intake_bfa.errors import ConfigError, IntegrityError, MirrorError
from intake_bfa.extras import require
from intake_bfa.http import safe_url

log = logging.getLogger(__name__)

#: Multipart part size: s3fs sends one PUT below two parts, so objects < 64 MiB take one request.
PART_SIZE = 32 << 20
_MAX_PARTS = 10_000
_SINGLE_PUT_LIMIT = 5 << 30
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN")
_CONTENT_TYPES = {".json": "application/json", ".yaml": "application/yaml"}


def _env(name: str) -> str | None:
    return os.environ.get(name) or None  # an empty CI variable means "not set"


@dataclass(frozen=True)
class MirrorTarget:
    """Where a mirror lives: ``s3://bucket/prefix`` on an endpoint, and its public address.

    Attributes
    ----------
    bucket, prefix
        Objects go to ``<prefix>/<tag>/<name>`` in ``bucket`` (``prefix`` may be empty).
    endpoint_url
        S3 API endpoint; None: botocore's default (``AWS_ENDPOINT_URL``..., else AWS).
    public_url
        HTTP(S) base where consumers read ``<prefix>``'s objects, if known.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    public_url: str | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``, for messages."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        """The S3 endpoint in effect, fit for messages (no userinfo or query)."""
        url = self.endpoint_url or _env("AWS_ENDPOINT_URL_S3") or _env("AWS_ENDPOINT_URL")
        return safe_url(url) if url else "AWS S3"

    def key(self, tag: str, name: str) -> str:
        """Object key of release file ``name`` of ``tag``."""
        return "/".join(p for p in (self.prefix, tag, name) if p)

    def public(self, tag: str, name: str) -> str:
        """Public HTTP URL of release file ``name`` of ``tag`` (needs ``public_url``)."""
        return f"{self.public_url}/{tag}/{name}"

    @property
    def template(self) -> str | None:
        """The ``BFA_MIRRORS`` / catalog ``mirrors`` template serving this mirror."""
        return f"{self.public_url}/{{tag}}/{{asset}}" if self.public_url else None


def _http_url(value: str, source: str, example: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or any(c in value for c in "{} ")
    ):
        raise ConfigError(
            f"{source}={value!r} is not a plain http(s) URL (no query, fragment, braces or "
            f"spaces); use for example {example}",
            variable=source,
            value=value,
        )
    return value.rstrip("/")


def mirror_target(
    bucket: str | None = None, *, endpoint_url: str | None = None, public_url: str | None = None
) -> MirrorTarget:
    """Validate a mirror destination; each value falls back to its ``BFA_MIRROR_*`` variable.

    Parameters
    ----------
    bucket
        ``s3://bucket`` or ``s3://bucket/prefix`` (``BFA_MIRROR_BUCKET``).
    endpoint_url
        S3 endpoint (``BFA_MIRROR_ENDPOINT``; else botocore's ``AWS_ENDPOINT_URL``, else AWS).
    public_url
        HTTP(S) base where the prefix's objects are publicly readable
        (``BFA_MIRROR_PUBLIC_URL``), e.g. ``https://cdn.example.com/bfa``.

    Raises
    ------
    ConfigError
        A value is missing or malformed.
    """
    src = "bucket" if bucket else "BFA_MIRROR_BUCKET"
    bucket = bucket or _env("BFA_MIRROR_BUCKET")
    if not bucket:
        raise ConfigError(
            "no mirror bucket: pass --bucket s3://bucket/prefix or set BFA_MIRROR_BUCKET",
            variable="BFA_MIRROR_BUCKET",
        )
    parts = urlsplit(bucket)
    prefix = parts.path.strip("/")
    segments = prefix.split("/") if prefix else []
    if (
        parts.scheme != "s3"
        or not _BUCKET_RE.match(parts.netloc)
        or parts.query
        or parts.fragment
        or any(s in ("", ".", "..") for s in segments)
    ):
        raise ConfigError(
            f"{src}={bucket!r} is not an S3 location; use s3://bucket or s3://bucket/prefix "
            "(bucket: 3-63 lowercase letters, digits, dots, hyphens)",
            variable=src,
            value=bucket,
        )
    endpoint_src = "endpoint_url" if endpoint_url else "BFA_MIRROR_ENDPOINT"
    endpoint_url = endpoint_url or _env("BFA_MIRROR_ENDPOINT")
    if endpoint_url:
        endpoint_url = _http_url(endpoint_url, endpoint_src, "https://s3.example.com")
    public_src = "public_url" if public_url else "BFA_MIRROR_PUBLIC_URL"
    public_url = public_url or _env("BFA_MIRROR_PUBLIC_URL")
    if public_url:
        public_url = _http_url(public_url, public_src, "https://cdn.example.com/bfa")
    return MirrorTarget(parts.netloc, prefix, endpoint_url, public_url)


@dataclass(frozen=True)
class RemoteObject:
    """What a HEAD says about an object."""

    key: str
    size: int
    etag: str
    sha256: str | None
    expected_etag: str | None


def part_size(size: int, base: int = PART_SIZE) -> int:
    """Multipart part size for ``size`` bytes (within S3's 10,000 parts)."""
    return max(base, math.ceil(size / _MAX_PARTS))


def hash_file(path: Path, size: int, base: int = PART_SIZE) -> tuple[str, str]:
    """``(sha256, expected S3 ETag)`` of a file of ``size`` bytes, in one read."""
    chunk = part_size(size, base)
    single = size < min(_SINGLE_PUT_LIMIT, 2 * chunk)  # s3fs's rule: one PUT below two parts
    sha, parts = hashlib.sha256(), []
    with open(path, "rb") as fh:
        while True:
            md5, left = hashlib.md5(usedforsecurity=False), size if single else chunk
            while left and (block := fh.read(min(left, 1 << 20))):
                sha.update(block)
                md5.update(block)
                left -= len(block)
            parts.append(md5)
            if single or left or fh.peek(1) == b"":
                break
    if single:
        return sha.hexdigest(), parts[0].hexdigest()
    joined = b"".join(p.digest() for p in parts)
    return sha.hexdigest(), f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"


def _redact(text: str, extra: tuple[str, ...] = ()) -> str:
    for secret in (*(os.environ.get(v) for v in _SECRET_VARS), *extra):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class MirrorStore:
    """Verified writes to one :class:`MirrorTarget` through s3fs.

    Parameters
    ----------
    target
        The destination.
    settings
        ``retries`` (attempts per S3 request) and ``timeout`` (connect and read, seconds).
    profile, region
        AWS profile and region; None: the standard AWS chain (``AWS_PROFILE``, ``AWS_REGION``).
    acl
        Canned ACL for every object (e.g. ``public-read``); None: the bucket's default.
    storage_options
        More ``s3fs.S3FileSystem`` arguments (``key``, ``secret``, ``client_kwargs``...).
    base_part_size
        Multipart part size (tests lower it to exercise multipart uploads).
    """

    def __init__(
        self,
        target: MirrorTarget,
        settings: Settings,
        *,
        profile: str | None = None,
        region: str | None = None,
        acl: str | None = None,
        storage_options: dict[str, Any] | None = None,
        base_part_size: int = PART_SIZE,
    ) -> None:
        (s3fs,) = require("s3fs", extra="mirror", feature="bfa mirror")
        self.target, self.acl, self.base_part_size = target, acl, base_part_size
        options: dict[str, Any] = {
            "endpoint_url": target.endpoint_url,
            # botocore owns retries (connection errors, 5xx, throttling); s3fs adds none.
            "config_kwargs": {
                "retries": {"max_attempts": max(1, settings.retries), "mode": "standard"},
                "connect_timeout": settings.timeout,
                "read_timeout": settings.timeout,
            },
            "use_listings_cache": False,
            "skip_instance_cache": True,
        }
        if profile:
            options["profile"] = profile
        if region:
            options["client_kwargs"] = {"region_name": region}
        options.update(storage_options or {})
        self._secrets = tuple(str(options[k]) for k in ("key", "secret", "token") if options.get(k))
        self.fs = s3fs.S3FileSystem(**options)
        self.fs.retries = 1

    def _path(self, key: str) -> str:
        return f"{self.target.bucket}/{key}"

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn S3 failures into one :class:`MirrorError` with the bucket and a fix."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        url, endpoint = self.target.url, self.target.endpoint
        try:
            yield
        except (MirrorError, IntegrityError):
            raise
        except NoCredentialsError:
            raise MirrorError(
                f"cannot {what} ({url}): no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or pass --profile)",
                bucket=url,
            ) from None
        except FileNotFoundError:
            raise MirrorError(
                f"cannot {what} ({url}): bucket {self.target.bucket!r} does not exist at "
                f"{endpoint}; create it, or fix --bucket / --endpoint-url",
                bucket=url,
            ) from None
        except PermissionError as err:
            raise MirrorError(
                f"cannot {what} ({url}): access denied at {endpoint} "
                f"({_redact(str(err), self._secrets)}); check the credentials and that they "
                "allow s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket there",
                bucket=url,
            ) from None
        except (OSError, BotoCoreError, ClientError) as err:
            reason = _redact(f"{type(err).__name__}: {err}", self._secrets)
            raise MirrorError(
                f"cannot {what} ({url}): {endpoint} failed ({reason}); check --endpoint-url "
                "(BFA_MIRROR_ENDPOINT) and the network, then run again (it resumes)",
                bucket=url,
            ) from None

    def check_bucket(self) -> None:
        """Fail early, with a clear message, if the bucket cannot be reached."""
        with self.errors("reach the mirror bucket"):
            self.fs.call_s3("head_bucket", Bucket=self.target.bucket)

    def head(self, key: str) -> RemoteObject | None:
        """The object's size, ETag and our metadata; None if it does not exist."""
        with self.errors(f"look up {key}"):
            try:
                raw = self.fs.call_s3("head_object", Bucket=self.target.bucket, Key=key)
            except FileNotFoundError:
                return None
        meta = {k.lower(): v for k, v in (raw.get("Metadata") or {}).items()}
        return RemoteObject(
            key,
            int(raw["ContentLength"]),
            str(raw.get("ETag", "")).strip('"'),
            meta.get("sha256"),
            meta.get("expected-etag"),
        )

    def read_sha256(self, key: str) -> tuple[str, int]:
        """Read an object back: ``(sha256, size)`` of the bytes consumers would get."""
        sha, size = hashlib.sha256(), 0
        with (
            self.errors(f"read back {key}"),
            self.fs.open(self._path(key), "rb", block_size=8 << 20) as fh,
        ):
            while block := fh.read(1 << 20):
                sha.update(block)
                size += len(block)
        return sha.hexdigest(), size

    def read_small(self, key: str, limit: int = 16 << 20) -> bytes:
        """The bytes of a small object (a manifest)."""
        with self.errors(f"read {key}"):
            data = self.fs.cat_file(self._path(key), start=0, end=limit + 1)
        if len(data) > limit:
            raise MirrorError(f"{key} is larger than {limit} bytes", bucket=self.target.url)
        return data

    def intact(self, remote: RemoteObject | None, size: int, sha256: str, download: bool) -> str:
        """How ``remote`` was found to hold ``size`` bytes hashing to ``sha256``, or ``""``.

        ``"etag"``: size, sha256 metadata and ETag agree (one HEAD). ``"download"``: read back
        and hashed (asked for, or the ETag cannot tell).
        """
        if remote is None or remote.size != size or remote.sha256 != sha256:
            return ""
        if not download and remote.expected_etag and remote.etag == remote.expected_etag:
            return "etag"
        if not download:
            log.info(
                "%s: ETag %s is not the predicted one; reading it back", remote.key, remote.etag
            )
        actual, got = self.read_sha256(remote.key)
        return "download" if (actual, got) == (sha256, size) else ""

    def put(self, path: Path, key: str, *, sha256: str, size: int) -> None:
        """Upload ``path`` to ``key`` with its sha256 and predicted ETag as metadata.

        Raises
        ------
        MirrorError
            The local file no longer has the expected sha256, or the upload failed.
        """
        actual, etag = hash_file(path, size, self.base_part_size)
        if actual != sha256 or path.stat().st_size != size:
            raise MirrorError(
                f"{path} changed (sha256 {actual}, expected {sha256}); rebuild the release "
                "folder or clear the cache, then run again",
                path=str(path),
            )
        extra: dict[str, Any] = {
            "Metadata": {"sha256": sha256, "expected-etag": etag},
            "ContentType": _CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        }
        if self.acl:
            extra["ACL"] = self.acl
        log.info("uploading %s (%d bytes) to %s", path.name, size, self._path(key))
        with self.errors(f"upload {key}"):
            self.fs.put_file(
                str(path), self._path(key), chunksize=part_size(size, self.base_part_size),
                max_concurrency=2, **extra,
            )  # fmt: skip

    def delete(self, key: str) -> None:
        """Delete ``key`` (no error if it is already gone)."""
        with self.errors(f"delete {key}"):
            self.fs.call_s3("delete_object", Bucket=self.target.bucket, Key=key)

    def list_objects(self) -> dict[str, dict[str, Any]]:
        """Every object under the prefix: key relative to it -> ``{"size", "etag"}``."""
        root = self._path(self.target.prefix).rstrip("/")
        with self.errors("list the mirror"):
            try:
                found = self.fs.find(root, detail=True)
            except FileNotFoundError:
                found = {}
        start = len(root) + 1
        return {
            path[start:]: {"size": int(info.get("size") or 0), "etag": info.get("ETag")}
            for path, info in found.items()
            if info.get("type") != "directory"
        }
