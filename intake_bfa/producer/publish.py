"""Publish a built release folder as an immutable, dated GitHub Release.

The one promise: a failed publish never changes what users resolve as latest. Consumers
ignore drafts and dated releases without ``manifest.json``, so a release is assembled as a
draft, each asset is verified after upload, ``manifest.json`` goes up last, and the draft is
published by a single PATCH only once everything is in place. A failure at any step leaves at
most a draft, which the next run resumes, skipping assets already uploaded intact.

Published releases are immutable: publishing a version again is a no-op when its assets are
identical and is refused when they differ. After a publish, old dated releases are pruned
(release and tag), and the rolling ``latest`` release of the old layout can be refreshed.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.config import Settings, check_repo, get_settings
from intake_bfa.errors import ConfigError, DownloadError, IntegrityError, PublishError
from intake_bfa.http import with_retries
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.producer.build import sha256_file
from intake_bfa.producer.github_write import GitHubWriter, LocalFile
from intake_bfa.producer.release_folder import LocalRelease, read_release_dir
from intake_bfa.releases import (
    DATED_TAG_RE,
    ROLLING_DB_ASSETS,
    ROLLING_RANKINGS_ASSET,
    ROLLING_TAG,
    release_body_metadata,
)

log = logging.getLogger(__name__)

VERIFY_MODES = ("digest", "download")
#: Rolling-layout asset -> our dataset it carries, in upload order. Rankings first: the
#: database's upload time is the rolling version, so the database goes up last. The
#: publishing project's workflow resumes from the uncompressed ``availability.duckdb`` and its
#: docs point users at the ``.gz``, so both are refreshed.
ROLLING_ASSETS = {
    ROLLING_RANKINGS_ASSET: "volume_rankings",
    ROLLING_DB_ASSETS[1]: "availability_db",
    ROLLING_DB_ASSETS[0]: "availability_db",
}


@dataclass
class PublishReport:
    """What :func:`publish` did.

    Attributes
    ----------
    tag, version, release_id, html_url
        The dated release.
    created
        A new draft was created (False: an existing draft was resumed, or nothing to do).
    noop
        The version was already published with identical assets; nothing was written.
    uploaded, skipped, verified
        Asset names uploaded, left alone because already present intact, and checked after
        upload (``verify`` mode).
    deleted_assets
        Assets of a resumed draft deleted because stale or different.
    deleted_releases
        Tags of the old releases deleted by retention (release and tag).
    rolling_refreshed
        The rolling ``latest`` release now carries this version's data.
    rolling_uploaded
        Rolling assets re-uploaded (empty when they were already up to date).
    errors
        Follow-up steps that failed after the release was published (retention, rolling);
        the release itself is out. Re-running ``publish`` retries them.
    """

    tag: str
    version: str
    release_id: int = 0
    html_url: str = ""
    created: bool = False
    noop: bool = False
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    deleted_assets: list[str] = field(default_factory=list)
    deleted_releases: list[str] = field(default_factory=list)
    rolling_refreshed: bool = False
    rolling_uploaded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _dated(releases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Published dated releases (what users can resolve) by version."""
    return {
        m.group(1): r
        for r in releases
        if not (r.get("draft") or r.get("prerelease"))
        and (m := DATED_TAG_RE.match(r.get("tag_name") or ""))
    }


def retention_plan(
    versions: list[str], *, keep_daily: int, keep_month_ends: bool, protect: tuple[str, ...] = ()
) -> list[str]:
    """The dated versions retention deletes, oldest first.

    Kept: the newest ``keep_daily`` versions, the last version of every calendar month (if
    ``keep_month_ends``) and the versions in ``protect``.
    """
    ordered = sorted(set(versions), reverse=True)
    keep = set(ordered[:keep_daily]) | set(protect)
    if keep_month_ends:
        last_of_month: dict[str, str] = {}
        for version in ordered:  # newest first: the first seen of a month is its last
            last_of_month.setdefault(version[:7], version)
        keep |= set(last_of_month.values())
    return sorted(v for v in ordered if v not in keep)


class _Publisher:
    """One publish run: the write client, the report and the verification mode."""

    def __init__(self, client: GitHubWriter, report: PublishReport, verify: str) -> None:
        self.client, self.report, self.download = client, report, verify == "download"

    def differences(self, release: dict[str, Any], local: LocalRelease) -> list[str]:
        """Names of the assets missing, extra or different in ``release`` compared to ``local``."""
        remote = {a["name"]: a for a in release.get("assets", [])}
        return sorted(
            n for n in set(remote) | set(local.assets)
            if n not in remote or n not in local.assets
            or not self.client.matches(remote[n], local.assets[n])
        )  # fmt: skip

    def sync(self, release: dict[str, Any], local: LocalRelease) -> None:
        """Make a draft's assets exactly ``local``'s, uploading only what is missing or wrong."""
        client, remote = self.client, {a["name"]: a for a in release.get("assets", [])}
        for name in sorted(set(remote) - set(local.assets)):
            log.info("deleting stale asset %s from the draft", name)
            client.delete_asset(remote.pop(name)["id"])
            self.report.deleted_assets.append(name)
        pending = [
            n
            for n, f in local.assets.items()
            if n not in remote or not client.matches(remote[n], f)
        ]
        if pending and MANIFEST_NAME in remote and MANIFEST_NAME not in pending:
            pending.append(MANIFEST_NAME)  # keep "manifest present => complete" even in drafts
        self.report.skipped = [n for n in local.assets if n not in pending]
        for name in pending:
            if name in remote:
                log.info("replacing different asset %s in the draft", name)
                client.delete_asset(remote[name]["id"])
                self.report.deleted_assets.append(name)
            client.put_asset(release, name, local.assets[name], download=self.download)
            self.report.uploaded.append(name)
            self.report.verified.append(name)


def _settings(repo: str | None, settings: Settings | None) -> Settings:
    settings = settings or get_settings(repo=repo)
    if repo is not None and settings.repo != repo:
        settings = settings.with_(repo=check_repo(repo))
    if not settings.token:
        raise ConfigError(
            f"publishing to {settings.repo} needs a GitHub token with contents: write "
            "permission; set GITHUB_TOKEN",
            variable="GITHUB_TOKEN",
        )
    if settings.offline:
        raise ConfigError("publishing needs the network; unset BFA_OFFLINE", variable="BFA_OFFLINE")
    return settings


def publish(
    release_dir: str | Path,
    *,
    repo: str | None = None,
    settings: Settings | None = None,
    version: str | None = None,
    keep_daily: int | None = 30,
    keep_month_ends: bool = True,
    rolling: bool = False,
    verify: str = "digest",
) -> PublishReport:
    """Publish a built release folder as the dated GitHub Release ``data-<version>``.

    Parameters
    ----------
    release_dir
        Folder written by :func:`~.build.build_release` (``manifest.json`` and its assets,
        optionally ``catalog.yaml`` and ``RELEASE_NOTES.md``).
    repo
        ``owner/name`` to publish to; default ``settings.repo`` (``BFA_REPO``).
    settings
        Configuration (API URL, ``GITHUB_TOKEN``, timeout, retry budget); default
        :func:`~intake_bfa.config.get_settings`.
    version
        Expected version; refused if the manifest says otherwise. Default: the manifest's.
    keep_daily
        Retention: keep the newest ``keep_daily`` dated releases; None disables retention.
    keep_month_ends
        Retention: also keep the last dated release of every calendar month.
    rolling
        Also refresh the rolling ``latest`` release of the old layout (when this version is
        the newest dated one), creating it if missing.
    verify
        ``"digest"``: check each upload's size and the API's sha256 ``digest`` (downloading
        it back when the API gives no digest); ``"download"``: always download each upload
        back and hash it.

    Returns
    -------
    PublishReport

    Raises
    ------
    ConfigError
        No ``GITHUB_TOKEN``, offline, or bad arguments.
    ManifestError
        The release folder is incomplete or does not match its manifest.
    PublishError
        The version is already published with different assets (releases are immutable).
    DownloadError, IntegrityError
        A request failed beyond the retry budget or an upload did not verify; at most a
        draft is left, and running ``publish`` again resumes it.
    """
    if verify not in VERIFY_MODES:
        raise ConfigError(f"verify={verify!r}; use one of {VERIFY_MODES}", variable="verify")
    if keep_daily is not None and keep_daily < 0:
        raise ConfigError(f"keep_daily={keep_daily} must be >= 0", variable="keep_daily")
    settings = _settings(repo, settings)
    local = read_release_dir(release_dir, version)
    client = GitHubWriter(settings)
    report = PublishReport(tag=local.tag, version=local.version)
    run = _Publisher(client, report, verify)
    same_tag = [r for r in client.list_releases() if r.get("tag_name") == local.tag]
    published = next((r for r in same_tag if not r.get("draft")), None)
    if published is not None:
        differ = run.differences(published, local)
        if differ:
            raise PublishError(
                f"{local.tag} is already published in {settings.repo} with different assets "
                f"({', '.join(differ)}); published releases are immutable: publish a new version",
                tag=local.tag,
                differ=differ,
            )
        report.noop, report.skipped = True, list(local.assets)
        final = published
        log.info("%s is already published with identical assets; nothing to upload", local.tag)
    else:
        final = _publish_draft(run, same_tag, local)
    report.release_id, report.html_url = final["id"], final.get("html_url", "")
    if keep_daily is None and not rolling:
        return report
    after = client.list_releases()  # fresh: what users see now
    if keep_daily is not None:
        _retention(run, after, local, keep_daily, keep_month_ends)
    if rolling:
        _rolling(run, after, local)
    return report


def _publish_draft(run: _Publisher, same_tag: list[dict[str, Any]], local: LocalRelease) -> dict:
    client, report = run.client, run.report
    fields = {"tag_name": local.tag, "name": local.name, "body": local.body}
    draft = same_tag[0] if same_tag else None
    if len(same_tag) > 1:
        log.warning("%d drafts of %s exist; resuming id %s", len(same_tag), local.tag, draft["id"])
    if draft is None:
        draft = with_retries(
            lambda: client.create_release({**fields, "draft": True, "prerelease": False}),
            client.settings,
            what=f"create draft {local.tag}",
        )
        report.created = True
        if draft is None:  # an earlier attempt created it but its answer was lost
            found = [r for r in client.list_releases() if r.get("tag_name") == local.tag]
            draft = next((r for r in found if r.get("draft")), None)
            if draft is None:
                raise PublishError(f"{local.tag} was published concurrently", tag=local.tag)
        log.info("created draft %s (id %s)", local.tag, draft["id"])
    else:
        log.info("resuming draft %s (id %s)", local.tag, draft["id"])
    run.sync(draft, local)
    # Re-read the draft: publish it only if it holds exactly the local files.
    current = client.get_release(draft["id"])
    wrong = run.differences(current, local) if current else ["(draft gone)"]
    if wrong:
        raise PublishError(
            f"draft {local.tag} changed while publishing ({', '.join(wrong)}); left it "
            "unpublished, publish again",
            tag=local.tag,
        )
    # The single step that makes the version visible to users.
    final = client.update_release(draft["id"], {**fields, "draft": False, "make_latest": "true"})
    if final.get("draft") or final.get("tag_name") != local.tag:
        raise PublishError(f"GitHub did not publish {local.tag}: {final}", tag=local.tag)
    log.info("published %s: %s", local.tag, final.get("html_url"))
    return final


def _retention(
    run: _Publisher, releases: list[dict[str, Any]], local: LocalRelease, keep: int, months: bool
) -> None:
    dated = _dated(releases)
    doomed = retention_plan(
        list(dated), keep_daily=keep, keep_month_ends=months, protect=(local.version,)
    )
    for version in doomed:
        release = dated[version]
        try:
            # Release first: deleting the tag of a published release would unpublish it.
            run.client.delete_release(release["id"])
            run.client.delete_tag(release["tag_name"])
        except DownloadError as err:
            log.warning("retention could not delete %s: %s", release["tag_name"], err)
            run.report.errors.append(f"retention: {release['tag_name']}: {err}")
            continue
        log.info("retention deleted %s", release["tag_name"])
        run.report.deleted_releases.append(release["tag_name"])


def _release_dir(local: LocalRelease) -> Path:
    """The release folder ``local`` was read from (scratch files go there: same file system)."""
    return local.assets[MANIFEST_NAME].path.parent


def _gunzipped(source: LocalFile, dest: Path) -> LocalFile:
    """``source`` (a gzip file) decompressed into ``dest``."""
    with gzip.open(source.path, "rb") as raw, open(dest, "wb") as out:
        shutil.copyfileobj(raw, out, 1 << 20)
    return LocalFile(dest, dest.stat().st_size, sha256_file(dest))


def _rolling(run: _Publisher, releases: list[dict[str, Any]], local: LocalRelease) -> None:
    # Never roll old-layout users back to older data.
    if max(_dated(releases), default=local.version) > local.version:
        log.info("not refreshing %r: %s is not the newest version", ROLLING_TAG, local.version)
        return
    datasets = local.manifest["datasets"]
    missing = [d for d in ROLLING_ASSETS.values() if not (datasets.get(d) or {}).get("asset")]
    if missing:
        run.report.errors.append(f"rolling: the release has no {', '.join(missing)} asset")
        return
    client = run.client
    scratch = Path(tempfile.mkdtemp(prefix=".rolling-", dir=_release_dir(local)))
    text = f"Rolling copy of {local.tag} for clients of the old release layout (tag {ROLLING_TAG})."
    body = f"{text}\n\n{release_body_metadata(local.meta)}"
    try:
        found = [r for r in releases if r.get("tag_name") == ROLLING_TAG]
        release = next((r for r in found if not r.get("draft")), found[0] if found else None)
        if release is None:  # assembled as a draft too, so it never shows up half-filled
            fields = {"tag_name": ROLLING_TAG, "name": "Latest availability data (rolling)"}
            release = client.create_release({**fields, "body": body, "draft": True})
            if release is None:
                raise PublishError(f"a {ROLLING_TAG!r} release appeared concurrently")
        remote = {a["name"]: a for a in release.get("assets", [])}
        for name, dataset in ROLLING_ASSETS.items():
            source = local.assets[datasets[dataset]["asset"]]
            if name == ROLLING_DB_ASSETS[1]:
                source = _gunzipped(source, scratch / name)
            if name in remote and client.matches(remote[name], source):
                continue
            if name in remote:  # GitHub cannot overwrite an asset: delete, then upload
                client.delete_asset(remote[name]["id"])
            client.put_asset(release, name, source, download=run.download)
            run.report.rolling_uploaded.append(name)
        client.update_release(release["id"], {"body": body, "draft": False, "make_latest": "false"})
    except (DownloadError, IntegrityError, PublishError, OSError) as err:
        log.warning("could not refresh the rolling %r release: %s", ROLLING_TAG, err)
        run.report.errors.append(f"rolling: {err}")
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.report.rolling_refreshed = True
    log.info("refreshed the rolling %r release with %s", ROLLING_TAG, local.tag)


__all__ = ["LocalRelease", "PublishReport", "publish", "read_release_dir", "retention_plan"]
