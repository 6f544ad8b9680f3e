"""``bfa mirror``: copy a release to an S3-compatible bucket, verified and idempotent.

Objects go to ``<prefix>/<tag>/<asset>`` and ``<prefix>/<tag>/manifest.json``. One sync:

1. checks the bucket, then HEADs every object: one that already holds the right bytes (size,
   ``sha256`` metadata and ETag, see :mod:`.store`) is left alone (``unchanged``);
2. refuses to overwrite another build of the same version (``force`` to override): like a
   release, a mirrored version never changes once consumers may rely on it;
3. deletes the mirror's ``manifest.json`` if any other file must change, so a mirror holding a
   manifest is complete at every moment, then uploads and verifies each missing or wrong file
   (``uploaded`` / ``replaced``), the catalog and the manifest last;
4. with a public URL, downloads one asset anonymously from it (sha256 checked), so a bucket
   consumers cannot read is caught before anything points at it;
5. for a release folder (not yet published), rewrites its ``manifest.json`` (asset ``urls``)
   and ``catalog.yaml`` (``mirrors`` template) to list the mirror, so the release that
   ``bfa publish`` then makes lists it. A published release is immutable: the report gives
   the template for ``BFA_MIRRORS`` or a catalog's ``mirrors`` instead.

A failure leaves every object either absent, or old, or new (S3 writes are atomic), the folder
unchanged until step 5, and running the sync again resumes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.config import Settings
from intake_bfa.errors import ConfigError, DownloadError, IntegrityError, MirrorError
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.producer.mirror.source import (
    MirrorSource,
    from_published,
    from_release_dir,
    plan_listing,
)
from intake_bfa.producer.mirror.store import MirrorStore, MirrorTarget, mirror_target
from intake_bfa.producer.release_folder import CATALOG_NAME

log = logging.getLogger(__name__)

VERIFY_MODES = ("etag", "download")
_LAST = (CATALOG_NAME, MANIFEST_NAME)  # uploaded after every asset, the manifest last


@dataclass
class ObjectResult:
    """One file of the release on the mirror.

    Attributes
    ----------
    name, key
        Release file name and its object key.
    action
        sync: ``uploaded``, ``replaced`` or ``unchanged`` (planned ones when ``dry_run``);
        verify: ``ok``, ``missing`` or ``wrong``.
    size, sha256
        The bytes the object must hold.
    verified
        How the object was found intact: ``etag`` (one HEAD) or ``download`` (read back).
    """

    name: str
    key: str
    action: str
    size: int
    sha256: str
    verified: str = ""


@dataclass
class MirrorReport:
    """What a mirror sync (or verify) found and did.

    Attributes
    ----------
    source
        The release folder, or ``owner/repo@tag`` of a published release.
    published
        The source is a published (immutable) release: its manifest cannot list the mirror.
    listed
        Release-folder files rewritten to list the mirror (``catalog.yaml``, ``manifest.json``).
    template
        Mirror URL template (``BFA_MIRRORS``, catalog ``mirrors``), when the public URL is known.
    public_check
        The URL downloaded anonymously to prove consumers can read the mirror.
    """

    source: str
    version: str
    tag: str
    target: str
    endpoint: str
    published: bool
    dry_run: bool = False
    objects: list[ObjectResult] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    template: str | None = None
    public_check: str | None = None

    def names(self, action: str) -> list[str]:
        """Names of the objects with ``action``."""
        return [o.name for o in self.objects if o.action == action]

    @property
    def ok(self) -> bool:
        """Every object is in place (verify)."""
        return all(o.action in ("ok", "unchanged") for o in self.objects)


def _asset_hashes(doc: Any) -> dict[str, tuple[Any, Any]] | None:
    sets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(sets, dict):
        return None
    return {
        e["asset"]: (e.get("size"), e.get("sha256"))
        for e in sets.values()
        if isinstance(e, dict) and e.get("asset")
    }


def _guard(store: MirrorStore, source: MirrorSource, force: bool) -> None:
    """Refuse to overwrite another build of the same version on the mirror."""
    key = store.target.key(source.tag, MANIFEST_NAME)
    try:
        theirs = _asset_hashes(json.loads(store.read_small(key)))
    except ValueError:
        theirs = None
    if theirs is None:
        log.warning("%s on the mirror is not a manifest; it will be replaced", key)
        return
    ours = _asset_hashes(source.manifest) or {}
    differ = sorted(n for n in set(theirs) | set(ours) if theirs.get(n) != ours.get(n))
    if differ and not force:
        raise MirrorError(
            f"{store.target.url}/{source.tag} holds another build of {source.version} "
            f"({', '.join(differ)} differ); a mirrored version must not change under its "
            "consumers: publish a new version, or pass --force if that build was never published",
            bucket=store.target.url,
            differ=differ,
        )
    if differ:
        log.warning("--force: replacing another build of %s on the mirror", source.version)


def _upload(store: MirrorStore, source: MirrorSource, name: str, download: bool) -> str:
    file, key = source.files[name], store.target.key(source.tag, name)
    path = file.local()
    size, sha256 = file.expect()
    store.put(path, key, sha256=sha256, size=size)
    how = store.intact(store.head(key), size, sha256, download)
    if not how:
        raise IntegrityError(
            f"{store.target.url}/{source.tag}/{name} does not hold the uploaded bytes (size or "
            "sha256 differ after the upload); run the sync again",
            bucket=store.target.url,
            key=key,
            expected=sha256,
        )
    return how


def _check_public(store: MirrorStore, source: MirrorSource, settings: Settings) -> str:
    """Download the smallest asset from the public URL, as a consumer would; its URL."""
    from intake_bfa.fetch import download

    target = store.target
    assets = [f for n, f in source.files.items() if n not in _LAST]
    smallest = min(assets, key=lambda f: f.expect()[0])
    size, sha256 = smallest.expect()
    url = target.public(source.tag, smallest.name)
    with tempfile.TemporaryDirectory(prefix="bfa-mirror-check-") as tmp:
        try:
            download([url], Path(tmp) / smallest.name, settings.with_(token=None),
                     size=size, sha256=sha256)  # fmt: skip
        except (DownloadError, IntegrityError) as err:
            kept = " The release folder was left unchanged." if source.folder else ""
            raise MirrorError(
                f"the files are on {target.url}, but consumers cannot read them from {url} "
                f"({err}); make the objects publicly readable (a bucket policy allowing "
                f"s3:GetObject), or fix --public-url.{kept}",
                bucket=target.url,
                url=url,
            ) from None
    return url


def _report(source: MirrorSource, target: MirrorTarget, **kw: Any) -> MirrorReport:
    return MirrorReport(
        source.label, source.version, source.tag, target.url, target.endpoint,
        published=source.folder is None, template=target.template, **kw,
    )  # fmt: skip


def sync(
    source: MirrorSource,
    store: MirrorStore,
    settings: Settings,
    *,
    verify: str = "etag",
    dry_run: bool = False,
    force: bool = False,
    list_mirror: bool = True,
    check_public: bool = True,
) -> MirrorReport:
    """Copy ``source`` to ``store``'s bucket, verified, skipping what is already there.

    Parameters
    ----------
    source
        :func:`~.source.from_release_dir` or :func:`~.source.from_published`.
    store
        The destination bucket.
    settings
        Download settings for the public URL check (the token is never sent there).
    verify
        ``"etag"``: a HEAD per object (size, sha256 metadata, ETag); ``"download"``: read
        every object back and hash it.
    dry_run
        Only report what would be uploaded; write nothing, anywhere.
    force
        Overwrite another build of the same version on the mirror.
    list_mirror
        For a release folder with a public URL: make its manifest and catalog list the mirror.
    check_public
        With a public URL: download one asset anonymously before listing the mirror.

    Raises
    ------
    MirrorError
        The bucket cannot be reached or written, holds another build, or is not public.
    IntegrityError
        An object does not hold the uploaded bytes.
    """
    if verify not in VERIFY_MODES:
        raise ConfigError(f"verify={verify!r}; use one of {VERIFY_MODES}", variable="verify")
    target, download = store.target, verify == "download"
    store.check_bucket()
    report = _report(source, target, dry_run=dry_run)
    if source.folder is not None and target.public_url and list_mirror:
        public = lambda asset: target.public(source.tag, asset)  # noqa: E731
        report.listed = plan_listing(source, public, target.template)
    remote = {n: store.head(target.key(source.tag, n)) for n in source.files}
    if remote.get(MANIFEST_NAME) is not None:
        _guard(store, source, force)
    plan: dict[str, tuple[str, str]] = {}
    for name, file in source.files.items():
        how = store.intact(remote[name], *file.expect(), download)
        plan[name] = ("unchanged", how) if how else ("replaced" if remote[name] else "uploaded", "")
    changing = [n for n, (a, _) in plan.items() if a != "unchanged" and n != MANIFEST_NAME]
    if changing and remote.get(MANIFEST_NAME) is not None:
        plan[MANIFEST_NAME] = ("replaced", "")  # re-put last: "a manifest means complete"
    if not dry_run:
        if changing and remote.get(MANIFEST_NAME) is not None:
            log.info("removing %s from the mirror while its files change", MANIFEST_NAME)
            store.delete(target.key(source.tag, MANIFEST_NAME))
        order = [n for n in source.files if n not in _LAST]
        for name in order:
            if plan[name][0] != "unchanged":
                plan[name] = (plan[name][0], _upload(store, source, name, download))
        if target.public_url and check_public:
            report.public_check = _check_public(store, source, settings)
        for name in report.listed:  # the folder lists the mirror once every asset is there
            source.files[name].local()
        for name in (n for n in _LAST if n in source.files):
            if plan[name][0] != "unchanged":
                plan[name] = (plan[name][0], _upload(store, source, name, download))
    for name, (action, how) in plan.items():
        size, sha256 = source.files[name].expect()
        key = target.key(source.tag, name)
        report.objects.append(ObjectResult(name, key, action, size, sha256, how))
    log.info("mirror %s: %s", target.url, {a: len(report.names(a)) for a, _ in plan.values()})
    return report


def verify_mirror(
    source: MirrorSource,
    store: MirrorStore,
    settings: Settings,
    *,
    download: bool = False,
    check_public: bool = True,
) -> MirrorReport:
    """Check that the mirror holds every file of ``source`` (``ok`` / ``missing`` / ``wrong``).

    ``download`` reads every object back and hashes it; otherwise one HEAD per object. With
    a public URL, one asset is also downloaded anonymously, as a consumer would.
    """
    target = store.target
    store.check_bucket()
    report = _report(source, target)
    for name, file in source.files.items():
        key = target.key(source.tag, name)
        remote = store.head(key)
        size, sha256 = file.expect()
        how = store.intact(remote, size, sha256, download)
        action = "ok" if how else ("wrong" if remote else "missing")
        report.objects.append(ObjectResult(name, key, action, size, sha256, how))
    if report.ok and target.public_url and check_public:
        report.public_check = _check_public(store, source, settings)
    return report


def status(store: MirrorStore) -> list[dict[str, Any]]:
    """Versions on the mirror, newest first: tag, objects, bytes, complete (has a manifest)."""
    store.check_bucket()
    tags: dict[str, dict[str, Any]] = {}
    for key, info in store.list_objects().items():
        tag, _, name = key.partition("/")
        if not name:
            continue
        row = tags.setdefault(tag, {"tag": tag, "objects": 0, "bytes": 0, "complete": False})
        row["objects"] += 1
        row["bytes"] += info["size"]
        row["complete"] = row["complete"] or name == MANIFEST_NAME
    return sorted(tags.values(), key=lambda r: r["tag"], reverse=True)


__all__ = [
    "MirrorReport",
    "MirrorStore",
    "MirrorTarget",
    "ObjectResult",
    "from_published",
    "from_release_dir",
    "mirror_target",
    "status",
    "sync",
    "verify_mirror",
]
