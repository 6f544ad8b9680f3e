"""``bfa build``: collected state -> a validated release folder ready for ``bfa publish``.

The dense ``daily_availability`` grid is made from the state up to its newest
date, minus that date when it is still being uploaded (T+1: a sharp drop in
available symbols on the newest day only), then built (DuckDB database, Parquet
files, manifest), given a ``catalog.yaml`` pinned to the version, and put through
the validation gates, whose findings become ``RELEASE_NOTES.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import atomic_write_bytes
from intake_bfa.catalog import catalog_yaml
from intake_bfa.errors import BfaError
from intake_bfa.producer.build import build_release
from intake_bfa.producer.state import load_state, to_daily_availability
from intake_bfa.producer.validate import (
    DROP_THRESHOLD,
    Finding,
    ValidationReport,
    daily_counts,
    t1_incomplete,
    validate_release,
)

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What ``bfa build`` produced."""

    version: str
    out_dir: Path
    coverage: tuple[str, str]
    rows: int
    trimmed_t1: bool
    report: ValidationReport


def build_from_state(
    state_dir: Path,
    out_dir: Path,
    *,
    version: str | None = None,
    previous: Path | None = None,
    previous_label: str | None = None,
    repo: str | None = None,
    api_url: str | None = None,
    threshold: float = DROP_THRESHOLD,
    strict: bool = False,
    today: dt.date | None = None,
) -> BuildResult:
    """Build and validate a release folder from a collected state folder.

    Parameters
    ----------
    state_dir
        Written by ``bfa collect``.
    out_dir
        Release folder to write (assets, manifest.json, catalog.yaml, RELEASE_NOTES.md).
    version
        Release version; default today's UTC date (tag ``data-<version>``).
    previous
        The previous release's ``daily_availability.parquet``, for the diff.
    previous_label
        Its version, named in the release notes and ``changes.json``.
    repo, api_url
        Pinned into the release's ``catalog.yaml`` (None: left to the environment).
    threshold, strict
        Completeness gate settings (see :mod:`intake_bfa.producer.validate`).
    today
        Override "today" (tests).

    Raises
    ------
    BfaError
        The state is empty.
    """
    from intake_bfa import interrupt

    state = load_state(state_dir)
    end = state.last_date
    if end is None:
        raise BfaError(
            f"the state in {state_dir} has no data; run `bfa collect` first", path=str(state_dir)
        )
    table = to_daily_availability(state, end)
    con = interrupt.connect()
    con.register("grid", table)
    notes: list[Finding] = []
    trimmed = t1_incomplete(daily_counts(con, "grid"), threshold)
    if trimmed:
        notes.append(
            Finding(
                "info",
                "completeness",
                f"{end} left out: still being uploaded (T+1); it comes with the next release",
            )
        )
        end -= dt.timedelta(days=1)
        table = con.sql("SELECT * FROM grid WHERE date <= ?", params=[end]).to_arrow_table()
    con.close()
    version = version or (today or dt.datetime.now(dt.UTC).date()).isoformat()
    manifest = build_release(table, Path(out_dir), version, events=state.events)
    atomic_write_bytes(
        Path(out_dir) / "catalog.yaml",
        catalog_yaml(repo=repo, api_url=api_url, version=version).encode(),
    )
    report = validate_release(
        Path(out_dir),
        previous=previous,
        previous_label=previous_label,
        threshold=threshold,
        strict=strict,
        notes=notes,
    )
    cov = manifest["coverage"]
    return BuildResult(
        version=version,
        out_dir=Path(out_dir),
        coverage=(cov["start"], cov["end"]),
        rows=manifest["datasets"]["daily_availability"]["rows"],
        trimmed_t1=trimmed,
        report=report,
    )


def describe(result: BuildResult) -> dict[str, Any]:
    """A JSON-friendly summary (for the CLI)."""
    return {
        "version": result.version,
        "out_dir": str(result.out_dir),
        "coverage": list(result.coverage),
        "rows": result.rows,
        "trimmed_t1": result.trimmed_t1,
        "ok": result.report.ok,
        "findings": [f"{f.level}: {f.check}: {f.message}" for f in result.report.findings],
    }
