"""Audits of published versions: ``intake_bfa.diff(v1, v2)`` and ``intake_bfa.check(v)``.

Both pin their versions and fetch the files into the cache like any read (verified, so a
cached version is audited offline), then hand them to the file-level comparisons of
:mod:`intake_bfa.changes` and :mod:`intake_bfa.quality`.
"""

from __future__ import annotations

import logging

from intake_bfa.changes import ReleaseDiff, diff_files
from intake_bfa.config import Settings, get_settings
from intake_bfa.datasets import ensure_local
from intake_bfa.quality import QualityReport, check_files
from intake_bfa.resolve import pin

log = logging.getLogger(__name__)


def diff(
    old: str,
    new: str = "latest",
    *,
    limit: int = 20,
    settings: Settings | None = None,
) -> ReleaseDiff:
    """What changed in ``daily_availability`` from version ``old`` to version ``new``.

    Parameters
    ----------
    old, new
        Versions: ``"latest"``, a date version such as ``"2026-11-20"``, or a rolling one.
    limit
        Example rows kept per change kind.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.

    Returns
    -------
    ReleaseDiff
        Counts of back-fills, disappearances, replaced files, volume arrivals and
        revisions, new dates, new and delisted symbols, with examples.

    Examples
    --------
    >>> d = intake_bfa.diff("2026-11-20", "2026-11-21")  # doctest: +SKIP
    >>> d.changes["backfilled"], d.new_symbols  # doctest: +SKIP
    """
    settings = settings or get_settings()
    old_m, new_m = pin(old, settings), pin(new, settings)
    old_path = ensure_local(settings, old_m, "daily_availability")
    new_path = ensure_local(settings, new_m, "daily_availability")
    log.info("comparing daily_availability %s with %s", old_m.version, new_m.version)
    return diff_files(
        old_path, new_path, limit=limit, old_label=old_m.version, new_label=new_m.version
    )


def check(
    version: str = "latest", *, limit: int = 5, settings: Settings | None = None
) -> QualityReport:
    """The data-quality anomalies of a version, each with its count and examples.

    Checks ``daily_availability`` (status codes against ``available``, partially null
    volume rows, dates before Binance Vision's first file, duplicate keys, nulls in
    required columns) and, when the version has one, whether ``volume_rankings`` ends
    before the volumes do.

    Parameters
    ----------
    version
        ``"latest"`` or a pinned version.
    limit
        Example rows kept per anomaly.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.

    Returns
    -------
    QualityReport
        ``report.clean`` is True when nothing was found.
    """
    settings = settings or get_settings()
    manifest = pin(version, settings)
    daily = ensure_local(settings, manifest, "daily_availability")
    rankings = None
    if "volume_rankings" in manifest.datasets:
        rankings = ensure_local(settings, manifest, "volume_rankings")
    return check_files(daily, rankings, version=manifest.version, limit=limit)
