"""Download statistics of the published releases: per asset, per release, per month.

:func:`collect_stats` reads every asset's ``download_count`` from the GitHub REST API (every
page, never a cached answer: counts change all the time), optionally appends the observation
to an append-only history file (:mod:`.history`), turns the history into monthly
figures and checks them against thresholds (:mod:`.monthly`):
past ``BFA_STATS_MIRROR_THRESHOLD`` downloads a month, add a CDN/S3 mirror (``bfa mirror
sync``); past ``BFA_STATS_API_THRESHOLD`` active users a month, add a query API (``bfa serve``).

The monthly rules (how cumulative counters become months, the active-users estimate) and the
thresholds are explained in :mod:`.monthly`.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from intake_bfa.config import Settings, get_settings, url_origin
from intake_bfa.errors import DownloadError, RepoNotFoundError, StatsError
from intake_bfa.http import api_get, safe_url
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.producer.stats.history import (
    AssetCount,
    History,
    Snapshot,
    append_snapshot,
    format_time,
    parse_time,
    read_history,
    repos_in,
)
from intake_bfa.producer.stats.monthly import (
    MonthTotal,
    Thresholds,
    Verdict,
    evaluate,
    get_thresholds,
    is_user_asset,
    monthly_totals,
    recorded_total,
)
from intake_bfa.releases import DATED_TAG_RE, ROLLING_DB_ASSETS, ROLLING_TAG

log = logging.getLogger(__name__)

_NEXT_RE = re.compile(r'<([^>]+)>;\s*rel="next"')
_MAX_PAGES = 1000  # 100 000 releases: far beyond any real repository, stops a Link loop


@dataclass(frozen=True)
class ReleaseTotal:
    """Downloads of one release, summed over its assets (from the newest snapshot).

    Attributes
    ----------
    tag, layout, published_at
        The release; ``layout`` is ``dated``, ``rolling`` or ``other``.
    assets
        Number of assets.
    downloads
        Sum of the assets' counters.
    user_downloads
        Downloads of the asset used for the active-users estimate (``manifest.json``, or the
        rolling database), None if the release has none.
    """

    tag: str
    layout: str
    published_at: str | None
    assets: int
    downloads: int
    user_downloads: int | None


@dataclass
class StatsReport:
    """What :func:`collect_stats` found; ``to_dict()`` is the ``bfa stats --json`` output."""

    repo: str
    observed_at: str
    source: str  # "api" (a live observation) or "history" (the recorded history only)
    method: str  # "history" or "approximation" (see monthly_approximate)
    snapshots: int
    releases: list[ReleaseTotal]
    assets: list[AssetCount]
    total_downloads: int
    recorded_downloads: int
    monthly: list[MonthTotal]
    thresholds: Thresholds
    verdicts: list[Verdict]
    history_path: str | None = None
    appended_rows: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    api_requests: int = 0
    rate_limit_remaining: int | None = None

    @property
    def monthly_approximate(self) -> bool:
        """True when the monthly figures come from one snapshot (publication months)."""
        return self.method == "approximation"

    @property
    def tripped(self) -> list[Verdict]:
        """The verdicts whose threshold is exceeded."""
        return [v for v in self.verdicts if v.tripped]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``bfa stats --json`` document)."""
        data = asdict(self)
        data["tripped"] = [v.name for v in self.tripped]
        return data


def release_layout(tag: str, names: Sequence[str]) -> str:
    """``dated``, ``rolling`` or ``other``, as :mod:`intake_bfa.releases` would see it."""
    if DATED_TAG_RE.match(tag) and MANIFEST_NAME in names:
        return "dated"
    if tag == ROLLING_TAG and any(n in ROLLING_DB_ASSETS for n in names):
        return "rolling"
    return "other"


# -- the API -----------------------------------------------------------------------------------


def _needs_api(settings: Settings) -> StatsError:
    return StatsError(
        "bfa stats needs the GitHub API (download counts are never cached); drop --offline "
        "/ BFA_OFFLINE, or summarise a recorded history offline with --history FILE",
        repo=settings.repo,
    )


def fetch_release_list(settings: Settings) -> tuple[list[dict[str, Any]], int, int | None]:
    """Every release of the repository as the API lists it, following ``Link: rel="next"``.

    Returns
    -------
    (releases, requests, rate_limit_remaining)
        The raw release objects (drafts included if the token sees them), the number of
        API requests made, and the ``X-RateLimit-Remaining`` of the last answer.
    """
    if settings.offline:
        raise _needs_api(settings)
    url: str | None = f"{settings.api_url}/repos/{settings.repo}/releases?per_page=100"
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    remaining = None
    while url and len(seen) < _MAX_PAGES:
        seen.add(url)
        status, data, headers = api_get(settings, url, ok=(200, 404))  # retried
        if status == 404:
            raise RepoNotFoundError(
                f"repository {settings.repo!r} not found at {safe_url(settings.api_url)} "
                "(404); check BFA_REPO (owner/name), BFA_API_URL, and GITHUB_TOKEN for "
                "private repos",
                repo=settings.repo,
                url=safe_url(url),
            )
        if not isinstance(data, list):
            raise DownloadError(
                f"{safe_url(url)} did not answer a release list", url=safe_url(url), status=status
            )
        out.extend(r for r in data if isinstance(r, dict))
        raw = headers.get("X-RateLimit-Remaining")
        remaining = int(raw) if raw and raw.isdigit() else remaining
        match = _NEXT_RE.search(headers.get("Link") or "")
        url = match.group(1) if match and match.group(1) not in seen else None
        if url and url_origin(url) != settings.api_origin:
            raise StatsError(
                f"the API's next-page link leaves {safe_url(settings.api_url)} "
                f"({safe_url(url)}); refusing to follow it",
                url=safe_url(url),
            )
    log.info(
        "%s: %d release(s) in %d request(s); rate limit remaining: %s",
        settings.repo,
        len(out),
        len(seen),
        "-" if remaining is None else remaining,
    )
    return out, len(seen), remaining


def snapshot_from_releases(
    repo: str, releases: Sequence[dict[str, Any]], observed_at: datetime
) -> Snapshot:
    """Every asset counter of the non-draft releases (prereleases and ``latest`` included)."""
    counts = []
    for rel in releases:
        if rel.get("draft") or not rel.get("tag_name"):
            continue  # drafts cannot be downloaded by the public
        for asset in rel.get("assets") or []:
            if not isinstance(asset, dict) or not asset.get("name"):
                continue
            counts.append(
                AssetCount(
                    tag=rel["tag_name"],
                    asset=asset["name"],
                    asset_id=int(asset.get("id") or 0),
                    published_at=rel.get("published_at") or None,
                    uploaded_at=asset.get("updated_at") or asset.get("created_at") or None,
                    size=int(asset.get("size") or 0),
                    download_count=int(asset.get("download_count") or 0),
                )
            )
    return Snapshot(format_time(observed_at), repo, tuple(counts))


def observe(
    settings: Settings | None = None, *, now: datetime | None = None
) -> tuple[Snapshot, int, int | None]:
    """Observe every asset counter now.

    Returns
    -------
    (snapshot, requests, rate_limit_remaining)
        See :func:`fetch_release_list` for the last two.
    """
    settings = settings or get_settings()
    releases, requests, remaining = fetch_release_list(settings)
    now = now or datetime.now(UTC)
    return snapshot_from_releases(settings.repo, releases, now), requests, remaining


# -- the figures -------------------------------------------------------------------------------


def release_totals(snapshot: Snapshot) -> list[ReleaseTotal]:
    """Per-release sums of one snapshot, newest publication first."""
    by_tag: dict[str, list[AssetCount]] = defaultdict(list)
    for a in snapshot.assets:
        by_tag[a.tag].append(a)
    rows = []
    for tag, assets in by_tag.items():
        users = [a.download_count for a in assets if is_user_asset(tag, a.asset)]
        rows.append(
            ReleaseTotal(
                tag=tag,
                layout=release_layout(tag, [a.asset for a in assets]),
                published_at=assets[0].published_at,
                assets=len(assets),
                downloads=sum(a.download_count for a in assets),
                user_downloads=max(users) if users else None,
            )
        )
    return sorted(rows, key=lambda r: (r.published_at or "", r.tag), reverse=True)


# -- the whole run -----------------------------------------------------------------------------


def _load_history(path: Path, append: bool) -> History:
    if path.exists():
        return read_history(path)  # refuses a foreign file before anything else happens
    if not append:
        raise StatsError(
            f"history file {path} does not exist; add --append to start recording one",
            path=str(path),
        )
    return History(path)


def collect_stats(
    settings: Settings | None = None,
    *,
    history: str | Path | None = None,
    append: bool = False,
    history_only: bool = False,
    mirror_threshold: int | str | None = None,
    api_threshold: int | str | None = None,
    now: datetime | None = None,
) -> StatsReport:
    """Observe the download counters, update the history, compute and judge the figures.

    Parameters
    ----------
    settings
        Repository, API URL, token, retries; default :func:`~intake_bfa.config.get_settings`.
    history
        History CSV file to read (and to append to with ``append``).
    append
        Append this observation to ``history`` (created if missing).
    history_only
        Do not call the API; summarise ``history`` (implied by ``settings.offline``).
    mirror_threshold, api_threshold
        Thresholds (downloads a month; active users a month); else the
        ``BFA_STATS_MIRROR_THRESHOLD`` / ``BFA_STATS_API_THRESHOLD`` variables; else 500 / 100.
    now
        The observation time (tests); default the current UTC time.

    Returns
    -------
    StatsReport

    Raises
    ------
    ConfigError
        A threshold is not a whole number >= 0.
    StatsError
        Inconsistent options, a history file that is not ours, no history to summarise.
    DownloadError, RateLimitError, AuthenticationError, RepoNotFoundError
        The API could not be read; the history file is untouched then.
    """
    settings = settings or get_settings()
    thresholds = get_thresholds(mirror_threshold, api_threshold)  # bad values: fail first
    history_only = history_only or settings.offline
    path = Path(history) if history is not None else None
    if path is None and append:
        raise StatsError("--append needs --history FILE (the file to append to)")
    if path is None and history_only:
        if settings.offline:
            raise _needs_api(settings)
        raise StatsError("--history-only needs --history FILE (the history to summarise)")
    if append and history_only:
        raise StatsError(
            "--append records a live observation, which needs the API; drop --offline / "
            "--history-only (or --append)"
        )
    recorded = _load_history(path, append) if path is not None else None
    snaps = recorded.for_repo(settings.repo) if recorded else []
    if recorded and recorded.snapshots and not snaps:
        log.warning(
            "%s holds no snapshot of %s (only %s); its figures start now",
            path,
            settings.repo,
            ", ".join(repos_in(recorded.snapshots)),
        )
    report_extra: dict[str, Any] = {}
    if history_only:
        if not snaps:
            raise StatsError(f"{path} holds no snapshot of {settings.repo} to summarise")
        latest = snaps[-1]
        now = now or datetime.now(UTC)
        age = now - parse_time(latest.observed_at)  # type: ignore[operator]
        if age.days >= 2:
            log.warning("the newest snapshot in %s is %d days old", path, age.days)
    else:
        latest, requests, remaining = observe(settings, now=now)
        now = parse_time(latest.observed_at)
        report_extra.update(api_requests=requests, rate_limit_remaining=remaining)
        if append:
            report_extra["appended_rows"] = append_snapshot(path, latest)  # type: ignore[arg-type]
        snaps = [*snaps, latest]
    assert now is not None
    monthly = monthly_totals(snaps, now=now)
    method = "history" if len(snaps) > 1 else "approximation"
    return StatsReport(
        repo=settings.repo,
        observed_at=latest.observed_at,
        source="history" if history_only else "api",
        method=method,
        snapshots=len(snaps),
        releases=release_totals(latest),
        assets=sorted(latest.assets, key=lambda a: (a.published_at or "", a.tag, a.asset)),
        total_downloads=latest.total,
        recorded_downloads=recorded_total(snaps),
        monthly=monthly,
        thresholds=thresholds,
        verdicts=evaluate(monthly, thresholds, now=now, approximate=method != "history"),
        history_path=str(path) if path else None,
        skipped_lines=list(recorded.bad_lines) if recorded else [],
        **report_extra,
    )
