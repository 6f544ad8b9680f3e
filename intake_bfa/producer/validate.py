"""Validation gates run on a built release folder before anything is published.

* **continuity**: every date from the first to the last is present, each with the
  same number of symbols (the grid is dense);
* **completeness**: a date whose available-symbol count drops sharply against the
  previous day is flagged; on the newest date that is the normal T+1 upload delay
  (``bfa build`` trims such a day), inside the range a real outage (a warning, an
  error with ``strict``);
* **consistency**: every table has the same columns, types, row count and content
  (an order-independent sum of row hashes) in the DuckDB database and in its Parquet file
  (for ``daily_availability``, the database's table with ``first_seen`` computed from its
  ``availability_events``, as a consumer deriving it would);
* **diff** against the previous release (:func:`intake_bfa.changes.diff_files`): new
  dates, late back-fills, files that disappeared or were replaced, volumes that arrived or
  were revised, new and delisted symbols; written into ``RELEASE_NOTES.md`` and, machine
  readable, ``changes.json`` (an asset of the release);
* **quality** (:func:`intake_bfa.quality.check_files`): the anomalies ``bfa check`` reports,
  listed in ``RELEASE_NOTES.md`` (warnings: the data is published as observed).

Errors fail the gate (``bfa build`` exits non-zero and nothing is published).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import atomic_write_bytes
from intake_bfa.changes import diff_files
from intake_bfa.derive import derived_sql
from intake_bfa.quality import check_files

log = logging.getLogger(__name__)

#: The machine-readable changes asset of every release (:class:`intake_bfa.changes.ReleaseDiff`).
CHANGES_NAME = "changes.json"
DROP_THRESHOLD = 0.3  # a day with 30 % fewer available symbols than the day before
_TABLES = {"daily_availability": "daily_availability.parquet",
           "volume_rankings": "volume_rankings.parquet", "symbols": "symbols.parquet",
           "availability_events": "availability_events.parquet"}  # fmt: skip


@dataclass
class Finding:
    """One result of a gate."""

    level: str  # "error" | "warning" | "info"
    check: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationReport:
    """All findings for one release folder."""

    version: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: str, check: str, message: str, **details: Any) -> None:
        """Record a finding (and log it)."""
        self.findings.append(Finding(level, check, message, details))
        getattr(log, "error" if level == "error" else level)("%s: %s", check, message)


def daily_counts(con: Any, source: str) -> list[tuple[dt.date, int, int]]:
    """``(date, symbols, available)`` per date of a daily_availability relation ``source``."""
    return con.sql(
        f"SELECT date, count(*), count(*) FILTER (WHERE available) FROM {source} "
        "GROUP BY date ORDER BY date"
    ).fetchall()


def check_continuity(report: ValidationReport, counts: list[tuple[dt.date, int, int]]) -> None:
    """Every date present, every date with the same number of symbols."""
    if not counts:
        report.add("error", "continuity", "daily_availability is empty")
        return
    first, last = counts[0][0], counts[-1][0]
    expected = (last - first).days + 1
    if len(counts) != expected:
        have = {c[0] for c in counts}
        missing = [
            (first + dt.timedelta(days=i)).isoformat()
            for i in range(expected)
            if first + dt.timedelta(days=i) not in have
        ]
        report.add("error", "continuity", f"{len(missing)} dates missing", missing=missing[:20])
    widths = {c[1] for c in counts}
    if len(widths) > 1:
        report.add("error", "continuity", "the grid is not dense (symbols per date differ)")
    else:
        report.add("info", "continuity", f"{expected} dates {first}..{last}, dense grid")


def t1_incomplete(
    counts: list[tuple[dt.date, int, int]], threshold: float = DROP_THRESHOLD
) -> bool:
    """True when the newest date looks still-uploading (T+1): a sharp drop on the last day."""
    if len(counts) < 2 or counts[-2][2] == 0:
        return False
    return counts[-1][2] < (1 - threshold) * counts[-2][2]


def check_completeness(
    report: ValidationReport,
    counts: list[tuple[dt.date, int, int]],
    *,
    threshold: float = DROP_THRESHOLD,
    strict: bool = False,
) -> None:
    """Flag sharp drops in the available-symbol count."""
    drops = [
        (cur[0], prev[2], cur[2])
        for prev, cur in itertools.pairwise(counts)
        if prev[2] and cur[2] < (1 - threshold) * prev[2]
    ]
    for day, before, now in drops:
        if day == counts[-1][0]:
            report.add(
                "warning",
                "completeness",
                f"{day}: {now} of {before} symbols (T+1: the newest day is still being "
                "uploaded; rebuild after ~09:00 UTC or let `bfa build` trim it)",
                date=day.isoformat(),
            )
        else:
            report.add(
                "error" if strict else "warning",
                "completeness",
                f"{day}: available symbols fell from {before} to {now} (an outage on "
                "Binance Vision, or files not yet back-filled)",
                date=day.isoformat(),
            )
    if not drops:
        report.add("info", "completeness", f"no day lost more than {threshold:.0%} of symbols")


def check_consistency(report: ValidationReport, con: Any, release_dir: Path) -> None:
    """Same columns, types, rows and content in the database and in each Parquet file."""
    con.execute("USE db")
    for table, asset in _TABLES.items():
        path = release_dir / asset
        # daily_availability: the database's table with first_seen from its events.
        source = f"({derived_sql(con, table)})" if table == "daily_availability" else table
        db = con.sql(f"SELECT * FROM {source}")
        pq = con.sql("SELECT * FROM read_parquet(?)", params=[str(path)])
        if list(zip(db.columns, map(str, db.types), strict=True)) != list(
            zip(pq.columns, map(str, pq.types), strict=True)
        ):
            report.add(
                "error", "consistency", f"{table}: schemas differ between DuckDB and Parquet"
            )
            continue
        fingerprint = "SELECT count(*), sum(hash(t)::HUGEINT) FROM {} t"
        a = con.sql(fingerprint.format(source)).fetchall()[0]
        b = con.sql(
            "SELECT count(*), sum(hash(t)::HUGEINT) FROM read_parquet(?) t", params=[str(path)]
        ).fetchall()[0]
        if a != b:
            report.add(
                "error",
                "consistency",
                f"{table}: {a[0]} rows in DuckDB vs {b[0]} in Parquet, or different content",
            )
        else:
            report.add("info", "consistency", f"{table}: {a[0]} rows identical in both")


def diff_previous(
    report: ValidationReport, current: Path, previous: Path, previous_label: str | None = None
) -> dict[str, Any]:
    """Every change since the previous release; returns the ``changes.json`` document."""
    changes = diff_files(
        previous, current, old_label=previous_label or str(previous), new_label=report.version
    )
    doc = changes.to_dict()
    report.add(
        "info",
        "diff",
        changes.summary(),
        new_dates=changes.new_dates,
        **changes.changes,
        new_symbols=changes.new_symbols,
        delisted_symbols=changes.delisted_symbols,
    )
    return doc


def check_quality(report: ValidationReport, release_dir: Path) -> None:
    """The anomalies of the data as observed (warnings: published, and said so)."""
    quality = check_files(
        release_dir / _TABLES["daily_availability"],
        release_dir / _TABLES["volume_rankings"],
        version=report.version,
    )
    for a in quality.anomalies:
        report.add("warning", "quality", f"{a.name}: {a.count} ({a.meaning})", count=a.count)
    if quality.clean:
        report.add("info", "quality", f"no anomaly ({len(quality.checked)} checks)")


def validate_release(
    release_dir: Path,
    *,
    previous: Path | None = None,
    previous_label: str | None = None,
    threshold: float = DROP_THRESHOLD,
    strict: bool = False,
    notes: list[Finding] | None = None,
) -> ValidationReport:
    """Run every gate on ``release_dir``; write ``validation.json``, ``changes.json`` and
    ``RELEASE_NOTES.md``.

    Parameters
    ----------
    release_dir
        A folder written by :func:`intake_bfa.producer.build.build_release`.
    previous
        The previous release's ``daily_availability.parquet`` (for the diff), if any.
    previous_label
        The previous release's version, named in the diff (default its path).
    threshold
        Fraction of available symbols a day may lose before it is flagged.
    strict
        Treat interior drops as errors.
    notes
        Findings from earlier steps (e.g. the build trimming a T+1 day) to report too.
    """
    import gzip

    from intake_bfa import interrupt

    manifest = json.loads((release_dir / "manifest.json").read_text())
    report = ValidationReport(version=manifest["version"], findings=list(notes or []))
    work = Path(tempfile.mkdtemp(prefix=".validate-", dir=release_dir))
    try:
        db_path = work / "availability.duckdb"
        with (
            gzip.open(release_dir / "availability.duckdb.gz", "rb") as src,
            open(db_path, "wb") as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)
        con = interrupt.connect()
        con.execute("ATTACH ? AS db (READ_ONLY)", [str(db_path)])
        counts = daily_counts(con, "db.daily_availability")
        check_continuity(report, counts)
        check_completeness(report, counts, threshold=threshold, strict=strict)
        check_consistency(report, con, release_dir)
        con.close()
        check_quality(report, release_dir)
        changes: dict[str, Any] = {"old": None, "new": report.version,
                                   "note": "no previous release was given to compare with"}  # fmt: skip
        if previous is not None:
            current = release_dir / _TABLES["daily_availability"]
            changes = diff_previous(report, current, previous, previous_label)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "version": report.version,
        "ok": report.ok,
        "findings": [asdict(f) for f in report.findings],
    }
    atomic_write_bytes(release_dir / "validation.json", json.dumps(doc, indent=1).encode())
    atomic_write_bytes(
        release_dir / CHANGES_NAME, json.dumps(changes, indent=1, default=str).encode()
    )
    notes_text = release_notes(manifest, report, changes)
    atomic_write_bytes(release_dir / "RELEASE_NOTES.md", notes_text.encode())
    return report


def release_notes(
    manifest: dict[str, Any], report: ValidationReport, changes: dict[str, Any] | None = None
) -> str:
    """Human release notes: coverage, sizes, validation results and every change."""
    cov = manifest.get("coverage") or {}
    lines = [
        f"# Binance USDT-M futures availability {manifest['version']}",
        "",
        f"Coverage: {cov.get('start')} .. {cov.get('end')}.",
    ]
    if manifest.get("synthetic"):
        lines += ["", f"**SYNTHETIC sample data.** {manifest.get('note', '')}".rstrip()]
    lines += ["", "| dataset | file | rows | bytes | sha256 |", "|---|---|---:|---:|---|"]
    for name, entry in manifest["datasets"].items():
        lines.append(
            f"| {name} | {entry['asset']} | {entry.get('rows') or ''} | {entry['size']} "
            f"| `{entry['sha256'][:16]}…` |"
        )
    lines += ["", "## Validation", ""]
    lines += [f"- **{f.level}** {f.check}: {f.message}" for f in report.findings]
    if changes and changes.get("old"):
        lines += _changes_section(changes)
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|")


def _changes_section(changes: dict[str, Any]) -> list[str]:
    lines = ["", f"## Changes since {changes['old']}", "",
             f"{changes['new_dates']} new dates, {changes['added_rows']} rows added, "
             f"{changes['removed_rows']} rows removed. Machine-readable: `{CHANGES_NAME}`.", "",
             "| change | rows | meaning |", "|---|---:|---|"]  # fmt: skip
    for kind, n in changes["changes"].items():
        lines.append(f"| {kind} | {n} | {changes['meanings'][kind]} |")
    for label, key in (("New symbols", "new_symbols"), ("Delisted symbols", "delisted_symbols")):
        names = changes[key]
        lines += ["", f"{label} ({len(names)}): " + (", ".join(names) if names else "none") + "."]
    for kind, examples in changes["examples"].items():
        lines += ["", f"### {kind} (newest {len(examples)} of {changes['changes'][kind]})", "",
                  "| symbol | date | available | size | last modified | quote volume |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for e in examples:
            cells = [
                " → ".join(_cell(v) for v in dict.fromkeys(e[key]))
                for key in ("available", "file_size_bytes", "last_modified", "quote_volume_usdt")
            ]
            lines.append(f"| {e['symbol']} | {e['date']} | " + " | ".join(cells) + " |")
    return lines
