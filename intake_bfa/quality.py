"""Data-quality anomalies of a version's files: what the data says that it should not.

The publishing project's data carries defects of its own (rows marked unavailable although
the file answered 200, volume columns half-nulled by a DuckDB upsert bug, a rankings file
that stopped growing before the database). :func:`check_files` finds each kind in a
``daily_availability`` Parquet file (and the ``volume_rankings`` one, when there is one)
and counts it; nothing here downloads anything. ``intake_bfa.check`` and ``bfa check``
(in :mod:`intake_bfa.audit`) run it on a published version, and a rolling-layout version
logs its anomalies once, when its database is first read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.schema import FIRST_DATE, REQUIRED_COLUMNS, VOLUME_COLUMNS

log = logging.getLogger(__name__)

_FILLED = " + ".join(f"CAST({c} IS NOT NULL AS INTEGER)" for c in VOLUME_COLUMNS)

#: Row-level anomaly -> (what it means and what to do, condition on a daily_availability row).
ROW_ANOMALIES: dict[str, tuple[str, str]] = {
    "unavailable_with_status_200": (
        "marked unavailable although the file answered HTTP 200 (the publishing project's "
        "DuckDB 1.4 upsert bug, duckdb/duckdb#20952); trust status_code, or use another version",
        "NOT available AND status_code = 200",
    ),
    "available_without_status_200": (
        "marked available although the check did not answer HTTP 200",
        "available AND status_code IS DISTINCT FROM 200",
    ),
    "available_without_file_size": (
        "marked available but without the file's size",
        "available AND file_size_bytes IS NULL",
    ),
    "partial_volume": (
        f"some of the {len(VOLUME_COLUMNS)} volume/price columns are null and others not (a "
        "half-applied re-probe); the day's volume figures are incomplete",
        f"({_FILLED}) BETWEEN 1 AND {len(VOLUME_COLUMNS) - 1}",
    ),
    "before_first_vision_date": (
        f"dated before {FIRST_DATE}, the first day Binance Vision has USDT-M daily files",
        f"date < DATE '{FIRST_DATE}'",
    ),
    "not_null_violations": (
        f"a null in a column that may not be null ({', '.join(REQUIRED_COLUMNS)})",
        " OR ".join(f"{c} IS NULL" for c in REQUIRED_COLUMNS),
    ),
}


@dataclass(frozen=True)
class Anomaly:
    """One kind of anomaly found in a version.

    Attributes
    ----------
    name
        Identifier, e.g. ``"unavailable_with_status_200"``.
    count
        How many rows (or days, for ``rankings_end_early``) show it.
    meaning
        What it means and what to do about it.
    examples
        A few affected rows (``date``, ``symbol``), newest first.
    """

    name: str
    count: int
    meaning: str
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class QualityReport:
    """The anomalies of one version (empty when the data is clean).

    Attributes
    ----------
    version
        The version (or file) checked.
    rows
        Rows of ``daily_availability`` checked.
    anomalies
        The kinds found, each with its count.
    checked
        Every check that ran (a clean check is a check too).
    """

    version: str
    rows: int
    anomalies: list[Anomaly]
    checked: list[str]

    @property
    def clean(self) -> bool:
        """True when no anomaly was found."""
        return not self.anomalies

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``bfa check --format json``)."""
        return {
            "version": self.version,
            "rows": self.rows,
            "clean": self.clean,
            "checked": list(self.checked),
            "anomalies": [
                {"name": a.name, "count": a.count, "meaning": a.meaning, "examples": a.examples}
                for a in self.anomalies
            ],
        }


def _examples(con: Any, cond: str, limit: int) -> list[dict[str, Any]]:
    rows = con.execute(
        f"SELECT date, symbol FROM daily WHERE {cond} ORDER BY date DESC, symbol LIMIT ?",
        [limit],
    ).fetchall()
    return [{"date": d.isoformat() if d else None, "symbol": s} for d, s in rows]


def check_files(
    daily_availability: str | Path,
    volume_rankings: str | Path | None = None,
    *,
    version: str | None = None,
    limit: int = 5,
) -> QualityReport:
    """Find the anomalies of a ``daily_availability`` file (and its rankings, if given).

    Parameters
    ----------
    daily_availability
        The version's ``daily_availability`` Parquet file.
    volume_rankings
        Its ``volume_rankings`` Parquet file, if the version has one.
    version
        Label for the report (default the file path).
    limit
        Example rows kept per anomaly.

    Returns
    -------
    QualityReport
    """
    from intake_bfa import interrupt

    con = interrupt.connect()
    try:
        con.read_parquet(str(daily_availability)).create_view("daily")
        rows = con.execute("SELECT count(*) FROM daily").fetchone()[0]
        sums = ", ".join(f"count(*) FILTER (WHERE {cond})" for _, cond in ROW_ANOMALIES.values())
        counts = con.execute(f"SELECT {sums} FROM daily").fetchone()
        found = [
            Anomaly(name, int(n), meaning, _examples(con, cond, limit))
            for (name, (meaning, cond)), n in zip(ROW_ANOMALIES.items(), counts, strict=True)
            if n
        ]
        checked = [*ROW_ANOMALIES, "duplicate_keys"]
        dupes = con.execute(
            "SELECT date, symbol, count(*) - 1 FROM daily GROUP BY date, symbol "
            "HAVING count(*) > 1 ORDER BY date DESC, symbol"
        ).fetchall()
        if dupes:
            found.append(
                Anomaly(
                    "duplicate_keys",
                    sum(n for *_, n in dupes),
                    "more than one row for a (date, symbol): the table has no primary key; "
                    "counts over it are inflated",
                    [{"date": d.isoformat(), "symbol": s} for d, s, _ in dupes[:limit]],
                )
            )
        if volume_rankings is not None:
            checked.append("rankings_end_early")
            lag = _rankings_lag(con, volume_rankings)
            if lag:
                found.append(lag)
    finally:
        con.close()
    return QualityReport(version or str(daily_availability), int(rows), found, checked)


def _rankings_lag(con: Any, volume_rankings: str | Path) -> Anomaly | None:
    """Days with volumes after the rankings' last date (the rankings stopped growing)."""
    ranked_end = con.execute(
        "SELECT max(date) FROM read_parquet(?)", [str(volume_rankings)]
    ).fetchone()[0]
    # Rankings need a volume: a newest day whose volumes are still to come (T+1) is not late.
    days, volume_end = con.execute(
        "SELECT count(DISTINCT date), max(date) FROM daily "
        "WHERE available AND quote_volume_usdt IS NOT NULL AND (? IS NULL OR date > ?)",
        [ranked_end, ranked_end],
    ).fetchone()
    if not days:
        return None
    start = ranked_end.isoformat() if ranked_end else "no date at all"
    return Anomaly(
        "rankings_end_early",
        int(days),
        f"volume_rankings ends on {start} but daily_availability has volumes up to "
        f"{volume_end.isoformat()}: the rankings stopped being regenerated",
        [{"rankings_end": ranked_end and ranked_end.isoformat(), "volume_end": str(volume_end)}],
    )


def log_anomalies(report: QualityReport) -> None:
    """One warning per anomaly kind (used once per rolling version, on its first read)."""
    for a in report.anomalies:
        log.warning("%s: %s: %d %s; details: bfa check --data-version %s",
                    report.version, a.name, a.count, a.meaning, report.version)  # fmt: skip
