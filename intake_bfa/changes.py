"""What changed between two versions of ``daily_availability``: every kind of late change.

A release is more than "yesterday appended". Binance Vision back-fills files weeks late,
removes some, replaces others (a new size and Last-Modified), and daily volumes arrive a
day late or get revised. :func:`diff_files` compares two ``daily_availability`` Parquet
files row for row on ``(date, symbol)`` and names each change. ``intake_bfa.diff`` (in
:mod:`intake_bfa.audit`) does it for two published versions; the producer writes the same
comparison into each release's ``RELEASE_NOTES.md`` and ``changes.json``.

Binance Vision's ETag is not part of the dataset, so a replaced object is seen through its
size or its Last-Modified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.schema import VOLUME_COLUMNS

log = logging.getLogger(__name__)


# A file there in both versions: its changes are replacements and revisions. A back-filled
# or vanished file changes its volume too, which its own kind already says.
_BOTH = "o.available AND n.available"

#: Change kind -> (meaning, condition on the joined rows ``o`` (old) and ``n`` (new)).
ROW_CHANGES: dict[str, tuple[str, str]] = {
    "backfilled": (
        "a file appeared for a day that had none (a late back-fill)",
        "NOT o.available AND n.available",
    ),
    "disappeared": (
        "a file that existed is gone",
        "o.available AND NOT n.available",
    ),
    "replaced": (
        "the file was replaced: its size or Last-Modified changed",
        f"{_BOTH} AND (o.file_size_bytes IS DISTINCT FROM n.file_size_bytes "
        "OR o.last_modified IS DISTINCT FROM n.last_modified)",
    ),
    "volume_filled": (
        "the day's volume arrived (it was null)",
        f"{_BOTH} AND o.quote_volume_usdt IS NULL AND n.quote_volume_usdt IS NOT NULL",
    ),
    "volume_revised": (
        "a known volume or price changed or was removed",
        f"{_BOTH} AND o.quote_volume_usdt IS NOT NULL AND ("
        + " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in VOLUME_COLUMNS)
        + ")",
    ),
}

_JOINED = "read_parquet($old) o JOIN read_parquet($new) n USING (date, symbol)"

_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE {cond}) AS {kind}" for kind, (_, cond) in ROW_CHANGES.items()
)
_SUMMARY_SQL = f"SELECT {_COUNTS} FROM {_JOINED}"

_EXAMPLES_SQL = """
SELECT date, symbol,
       o.available, n.available, o.file_size_bytes, n.file_size_bytes,
       o.last_modified, n.last_modified, o.quote_volume_usdt, n.quote_volume_usdt
FROM {joined} WHERE {cond} ORDER BY date DESC, symbol LIMIT $limit
"""

_EDGES_SQL = """
WITH o AS (SELECT * FROM read_parquet($old)), n AS (SELECT * FROM read_parquet($new)),
o_end AS (SELECT max(date) AS d FROM o), n_end AS (SELECT max(date) AS d FROM n)
SELECT
  (SELECT min(date) FROM o), (SELECT d FROM o_end),
  (SELECT min(date) FROM n), (SELECT d FROM n_end),
  (SELECT count(DISTINCT date) FROM n WHERE date > (SELECT d FROM o_end)),
  (SELECT count(*) FROM n ANTI JOIN o USING (date, symbol)),
  (SELECT count(*) FROM o ANTI JOIN n USING (date, symbol))
"""

# Listed now: available on a release's last or second-to-last date (as ``symbols.listed_now``)
# and not a settled (history) name.
_LISTED_SQL = """
SELECT DISTINCT symbol FROM read_parquet($path)
WHERE available AND NOT regexp_matches(symbol, 'SETTLED$')
  AND date >= (SELECT max(date) FROM read_parquet($path)) - INTERVAL 1 DAY
"""
_EVER_SQL = "SELECT DISTINCT symbol FROM read_parquet($path) WHERE available"


@dataclass
class ReleaseDiff:
    """What changed from version ``old`` to version ``new`` of ``daily_availability``.

    Attributes
    ----------
    old, new
        The two versions (or file names) compared.
    old_coverage, new_coverage
        ``(first, last)`` dates of each, ISO strings.
    new_dates
        Dates ``new`` covers after ``old``'s last date.
    added_rows, removed_rows
        ``(date, symbol)`` rows only in ``new`` (new dates, new symbols) / only in ``old``.
    changes
        Change kind (:data:`ROW_CHANGES`) -> number of rows present in both that changed so.
    new_symbols
        Symbols listed now in ``new`` that never had a file in ``old``.
    delisted_symbols
        Symbols listed at the end of ``old`` that are not at the end of ``new``.
    examples
        Change kind -> the newest changed rows (date, symbol, before/after values).
    """

    old: str
    new: str
    old_coverage: tuple[str | None, str | None]
    new_coverage: tuple[str | None, str | None]
    new_dates: int
    added_rows: int
    removed_rows: int
    changes: dict[str, int]
    new_symbols: list[str] = field(default_factory=list)
    delisted_symbols: list[str] = field(default_factory=list)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def late_changes(self) -> int:
        """Rows of earlier dates that changed (every kind but the new dates)."""
        return sum(self.changes.values()) + self.removed_rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the ``changes.json`` release asset, ``bfa diff --format json``)."""
        return {
            "old": self.old,
            "new": self.new,
            "old_coverage": list(self.old_coverage),
            "new_coverage": list(self.new_coverage),
            "new_dates": self.new_dates,
            "added_rows": self.added_rows,
            "removed_rows": self.removed_rows,
            "changes": dict(self.changes),
            "meanings": {kind: meaning for kind, (meaning, _) in ROW_CHANGES.items()},
            "new_symbols": list(self.new_symbols),
            "delisted_symbols": list(self.delisted_symbols),
            "examples": self.examples,
        }

    def summary(self) -> str:
        """One line: the counts of every kind of change."""
        parts = [f"{self.new_dates} new dates"]
        parts += [f"{n} {kind.replace('_', ' ')}" for kind, n in self.changes.items()]
        parts += [
            f"{len(self.new_symbols)} new symbols",
            f"{len(self.delisted_symbols)} delisted",
        ]
        if self.removed_rows:
            parts.append(f"{self.removed_rows} rows removed")
        return "; ".join(parts)


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def diff_files(
    old: str | Path,
    new: str | Path,
    *,
    limit: int = 20,
    old_label: str | None = None,
    new_label: str | None = None,
) -> ReleaseDiff:
    """Compare two ``daily_availability`` Parquet files.

    Parameters
    ----------
    old, new
        The files (the older release first).
    limit
        Examples kept per change kind (newest dates first).
    old_label, new_label
        Names for the two sides (default the file paths).

    Returns
    -------
    ReleaseDiff
    """
    from intake_bfa import interrupt

    con = interrupt.connect()
    try:
        paths = {"old": str(old), "new": str(new)}
        counts = con.execute(_SUMMARY_SQL, paths).fetchone()
        changes = dict(zip(ROW_CHANGES, (int(n) for n in counts), strict=True))
        edges = con.execute(_EDGES_SQL, paths).fetchone()
        o_lo, o_hi, n_lo, n_hi, new_dates, added, removed = edges
        examples: dict[str, list[dict[str, Any]]] = {}
        for kind, (_, cond) in ROW_CHANGES.items():
            if not changes[kind]:
                continue
            sql = _EXAMPLES_SQL.format(joined=_JOINED, cond=cond)
            rows = con.execute(sql, {**paths, "limit": limit}).fetchall()
            examples[kind] = [
                {
                    "date": _iso(r[0]),
                    "symbol": r[1],
                    "available": [r[2], r[3]],
                    "file_size_bytes": [r[4], r[5]],
                    "last_modified": [_iso(r[6]), _iso(r[7])],
                    "quote_volume_usdt": [r[8], r[9]],
                }
                for r in rows
            ]

        def names(sql: str, path: str) -> set[str]:
            return {s for (s,) in con.execute(sql, {"path": path}).fetchall()}

        listed_old, listed_new = names(_LISTED_SQL, paths["old"]), names(_LISTED_SQL, paths["new"])
        ever_old = names(_EVER_SQL, paths["old"])
    finally:
        con.close()
    return ReleaseDiff(
        old=old_label or str(old),
        new=new_label or str(new),
        old_coverage=(_iso(o_lo), _iso(o_hi)),
        new_coverage=(_iso(n_lo), _iso(n_hi)),
        new_dates=int(new_dates),
        added_rows=int(added),
        removed_rows=int(removed),
        changes=changes,
        new_symbols=sorted(listed_new - ever_old),
        delisted_symbols=sorted(listed_old - listed_new),
        examples=examples,
    )
