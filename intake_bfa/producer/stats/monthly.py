"""Monthly figures from download-counter snapshots, and the thresholds they are judged by.

Monthly downloads. GitHub counters are cumulative, per asset. Between two snapshots an asset's
increase is attributed to the month of the later snapshot (so month M gets the increase from
the last snapshot before M to the last one in M; daily snapshots place it within a day). An
asset seen for the first time brings its whole counter, attributed to the month it became
downloadable (the later of its release's publication and its upload, but not before the
previous snapshot). Without a history that first-seen rule is all there is: each counter is
attributed to its publication month, an approximation (downloads of an old release in later
months land in its first month), and the report says so. Counters are tracked per asset id and
never go down: a deleted release keeps what it had, a re-uploaded asset starts a new counter.

Active users (an estimate, a proxy). A consumer downloads each version's ``manifest.json``
once, then reads it from its cache; so the number of downloads of one version's manifest
during a month counts the distinct caches that used that version that month. The estimate for
the month is the highest such number over the versions (for the public project's rolling
layout, which has no manifest, the rolling database asset plays the manifest's part). It is a
lower bound for people who read occasionally (they skip versions) and an upper bound for CI
jobs that start with an empty cache every run.

Thresholds, each read at call time: option > environment variable > default.

* ``mirror``: downloads a month (``BFA_STATS_MIRROR_THRESHOLD``, default 500). Past it, add a
  CDN/S3 mirror (``bfa mirror sync``, docs/mirror.md) so GitHub is not the only origin.
* ``api``: active users a month, estimated (``BFA_STATS_API_THRESHOLD``, default 100). Past it,
  add a query API (``bfa serve``, docs/serving.md) so users stop downloading whole files.

A threshold is *exceeded* when the latest complete month, or the current month so far, is
strictly above it (month-to-date figures only grow). For downloads, a month to date that is
on pace to exceed it (a linear projection, from the third day of the month on) is a *watch*.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from intake_bfa.errors import ConfigError
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.producer.stats.history import Snapshot, parse_time
from intake_bfa.releases import ROLLING_DB_ASSETS, ROLLING_TAG


@dataclass(frozen=True)
class MonthTotal:
    """One calendar month (UTC).

    Attributes
    ----------
    month
        ``YYYY-MM``.
    downloads
        Downloads attributed to the month (see the module docstring).
    bytes
        Those downloads times their assets' sizes: roughly the bytes served.
    active_users
        Active-users estimate (see the module docstring).
    complete
        False for the current month (month to date).
    """

    month: str
    downloads: int
    bytes: int
    active_users: int
    complete: bool


def is_user_asset(tag: str, name: str) -> bool:
    """Whether downloads of this asset count consumers (the active-users proxy)."""
    return name == MANIFEST_NAME or (tag == ROLLING_TAG and name in ROLLING_DB_ASSETS)


def _month(value: datetime) -> str:
    return value.strftime("%Y-%m")


def _months(first: str, last: str) -> list[str]:
    year, month = map(int, first.split("-"))
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _attribute(snapshots: Sequence[Snapshot]) -> tuple[dict, dict, dict]:
    """Downloads per (month, asset key), plus each key's size and whether it counts users."""
    per: dict[tuple[str, Any], int] = defaultdict(int)
    sizes: dict[Any, int] = {}
    users: dict[Any, bool] = {}
    high: dict[Any, int] = {}  # highest counter seen per asset: counters never go down
    previous: datetime | None = None
    for snap in sorted(snapshots, key=lambda s: parse_time(s.observed_at)):
        at = parse_time(snap.observed_at)
        assert at is not None  # snapshots always carry their time
        for a in snap.assets:
            key = a.asset_id or (a.tag, a.asset, a.uploaded_at)
            sizes[key], users[key] = a.size, is_user_asset(a.tag, a.asset)
            if key in high:
                delta, when = max(0, a.download_count - high[key]), at
                high[key] = max(high[key], a.download_count)
            else:
                delta, high[key] = a.download_count, a.download_count
                when = parse_time(a.available_since) or at
                if previous is not None:
                    when = max(when, previous)  # it was not there at the previous snapshot
                when = min(when, at)
                per[(_month(when), key)] += 0  # its month belongs in the table, even at 0
            if delta:
                per[(_month(when), key)] += delta
        previous = at
    return per, sizes, users


def monthly_totals(snapshots: Sequence[Snapshot], *, now: datetime) -> list[MonthTotal]:
    """Downloads, bytes and active users per month, from the first one with data to ``now``.

    Parameters
    ----------
    snapshots
        The snapshots of one repository (any order); one snapshot gives the approximation
        described in the module docstring.
    now
        Decides the current (incomplete) month, the last row.
    """
    per, sizes, users = _attribute(snapshots)
    current = _month(now)
    seen = [m for m, _ in per]
    first, last = min([*seen, current]), max([*seen, current])
    downloads: dict[str, int] = defaultdict(int)
    served: dict[str, int] = defaultdict(int)
    active: dict[str, int] = defaultdict(int)
    for (month, key), n in per.items():
        downloads[month] += n
        served[month] += n * sizes[key]
        if users[key]:
            active[month] = max(active[month], n)
    return [
        MonthTotal(m, downloads[m], served[m], active[m], complete=m < current)
        for m in _months(first, last)
    ]


def recorded_total(snapshots: Sequence[Snapshot]) -> int:
    """All downloads ever recorded: every asset's highest counter, deleted releases included."""
    per, _, _ = _attribute(snapshots)
    return sum(per.values())


# -- thresholds ----------------------------------------------------------------------------


DEFAULT_MIRROR_THRESHOLD = 500
DEFAULT_API_THRESHOLD = 100
MIRROR_ENV = "BFA_STATS_MIRROR_THRESHOLD"
API_ENV = "BFA_STATS_API_THRESHOLD"
_PACE_AFTER_DAYS = 3  # earlier, one busy day projects to a silly monthly figure


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force, and where each came from (``option``, ``env``, ``default``)."""

    mirror: int
    api: int
    mirror_source: str
    api_source: str


@dataclass(frozen=True)
class Verdict:
    """One threshold checked against the monthly figures.

    Attributes
    ----------
    name
        ``mirror`` or ``api``.
    metric
        What is measured, in words.
    threshold, threshold_source
        The limit and where it came from.
    complete_month, complete_value
        The latest complete month (``YYYY-MM``) and its figure.
    current_month, current_value
        The current month and its figure so far.
    projected_value
        Downloads the current month is on pace for (mirror only, from its third day on).
    status
        ``exceeded``, ``watch`` (on pace to exceed) or ``ok``.
    tripped
        ``status == "exceeded"``.
    command, docs
        What to run, and where it is explained, once the threshold is exceeded.
    recommendation
        One sentence: the figure against the threshold, and what to do.
    """

    name: str
    metric: str
    threshold: int
    threshold_source: str
    complete_month: str
    complete_value: int
    current_month: str
    current_value: int
    projected_value: int | None
    status: str
    tripped: bool
    command: str
    docs: str
    recommendation: str


def _parse(value: Any, name: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", text):
        raise ConfigError(
            f"{name}={value!r} is not a threshold; use a whole number >= 0, e.g. 500",
            variable=name,
            value=value,
        )
    return int(text)


def _one(value: Any, option: str, variable: str, default: int) -> tuple[int, str]:
    if value is not None:
        return _parse(value, option), "option"
    raw = os.environ.get(variable, "")
    if raw.strip():  # an empty variable (an unset Actions `vars.` value) means the default
        return _parse(raw, variable), "env"
    return default, "default"


def get_thresholds(mirror: int | str | None = None, api: int | str | None = None) -> Thresholds:
    """Resolve both thresholds: argument > environment variable > default.

    Raises
    ------
    ConfigError
        A value is not a whole number >= 0 (the message names the option or variable).
    """
    m, m_src = _one(mirror, "--mirror-threshold", MIRROR_ENV, DEFAULT_MIRROR_THRESHOLD)
    a, a_src = _one(api, "--api-threshold", API_ENV, DEFAULT_API_THRESHOLD)
    return Thresholds(mirror=m, api=a, mirror_source=m_src, api_source=a_src)


def _previous_month(month: str) -> str:
    year, mon = map(int, month.split("-"))
    return f"{year - 1:04d}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"


def _elapsed(now: datetime) -> tuple[float, float]:
    """(days elapsed in the month of ``now``, days in that month)."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return (now - start).total_seconds() / 86400, (nxt - start).total_seconds() / 86400


_WHAT = {
    "mirror": (
        "downloads a month",
        "bfa mirror sync",
        "docs/mirror.md",
        "add a CDN/S3 mirror: copy the releases with `bfa mirror sync` and give users its "
        "URL template in BFA_MIRRORS",
        "no mirror needed yet",
    ),
    "api": (
        "active users a month (estimate)",
        "bfa serve",
        "docs/serving.md",
        "add a query API: run `bfa serve` so users query instead of downloading whole files",
        "no query API needed yet",
    ),
}


def _verdict(
    name: str,
    threshold: int,
    source: str,
    figures: dict[str, int],
    now: datetime,
    approximate: bool,
) -> Verdict:
    metric, command, docs, act, fine = _WHAT[name]
    current = now.strftime("%Y-%m")
    complete = _previous_month(current)
    done, cur = figures.get(complete, 0), figures.get(current, 0)
    elapsed, days = _elapsed(now)
    projected = None
    if name == "mirror" and elapsed >= _PACE_AFTER_DAYS:
        projected = round(cur * days / elapsed)
    unit = "downloads" if name == "mirror" else "active users (estimate)"
    if done > threshold or cur > threshold:
        status = "exceeded"
        month, value, when = (
            (complete, done, "complete month") if done > threshold else (current, cur, "so far")
        )
        text = f"{value:,} {unit} in {month} ({when}) > threshold {threshold:,}: {act}; see {docs}"
    elif projected is not None and projected > threshold:
        status = "watch"
        text = (
            f"{cur:,} {unit} so far in {current}, on pace for about {projected:,} > threshold "
            f"{threshold:,}: prepare to {act.split(': ', 1)[0]} ({command}, {docs})"
        )
    else:
        status = "ok"
        text = (
            f"{done:,} {unit} in {complete} and {cur:,} so far in {current}, within the "
            f"threshold of {threshold:,}: {fine}"
        )
    if approximate:
        text += " (approximate: no history yet, counts by publication month)"
    return Verdict(
        name=name,
        metric=metric,
        threshold=threshold,
        threshold_source=source,
        complete_month=complete,
        complete_value=done,
        current_month=current,
        current_value=cur,
        projected_value=projected,
        status=status,
        tripped=status == "exceeded",
        command=command,
        docs=docs,
        recommendation=text,
    )


def evaluate(
    monthly: Sequence[MonthTotal],
    thresholds: Thresholds,
    *,
    now: datetime,
    approximate: bool,
) -> list[Verdict]:
    """Check both thresholds against the latest complete month and the current month so far.

    Parameters
    ----------
    monthly
        The figures per month (:func:`intake_bfa.producer.stats.counts.monthly_totals`).
    thresholds
        From :func:`get_thresholds`.
    now
        Decides the current month.
    approximate
        The figures come from cumulative counts only (no history); said in the text.
    """
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    downloads = {m.month: m.downloads for m in monthly}
    users = {m.month: m.active_users for m in monthly}
    return [
        _verdict(
            "mirror", thresholds.mirror, thresholds.mirror_source, downloads, now, approximate
        ),
        _verdict("api", thresholds.api, thresholds.api_source, users, now, approximate),
    ]
