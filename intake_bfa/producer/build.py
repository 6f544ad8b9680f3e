"""Build a release folder from a ``daily_availability`` table.

Writes, into ``out_dir``: ``availability.duckdb.gz`` (tables daily_availability
with its primary key, symbols, daily_symbol_counts, volume_rankings), one Parquet
file per table dataset, ``manifest.json`` and a ``catalog.yaml`` pinned to the
version. Every file is written under a temporary name and moved into place.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import atomic_write_bytes, atomic_writer
from intake_bfa.derive import SYMBOLS_SQL, write_parquet
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.parquet_layout import TILED_ORDER
from intake_bfa.schema import DAILY_AVAILABILITY_COLUMNS, DATASETS, MANIFEST_SCHEMA_VERSION

log = logging.getLogger(__name__)

#: Oldest DuckDB storage format we write, so the previous minor releases can open it.
STORAGE_VERSION = "v1.4.0"

_DDL = ",\n    ".join(f"{name} {typ}" for name, (typ, _) in DAILY_AVAILABILITY_COLUMNS.items())
CREATE_DAILY_AVAILABILITY = f"""
CREATE TABLE daily_availability (
    {_DDL},
    PRIMARY KEY (date, symbol)
)"""

DAILY_SYMBOL_COUNTS_SQL = """
SELECT date,
       CAST(COUNT(*) AS INTEGER) AS total_symbols,
       CAST(COUNT(*) FILTER (WHERE available) AS INTEGER) AS available_symbols,
       CAST(COUNT(*) FILTER (WHERE NOT available) AS INTEGER) AS unavailable_symbols,
       MAX(probe_timestamp) AS last_updated
FROM daily_availability GROUP BY date ORDER BY date
"""

# Rank changes compare with the rank N *calendar* days earlier (a join on date - N),
# not N rows earlier, so a missing day never shifts the comparison.
VOLUME_RANKINGS_SQL = """
WITH traded AS (
    SELECT date, symbol, quote_volume_usdt, trade_count
    FROM daily_availability
    WHERE available AND quote_volume_usdt > 0
),
ranked AS (
    SELECT *,
           DENSE_RANK() OVER (PARTITION BY date ORDER BY quote_volume_usdt DESC) AS rnk,
           SUM(quote_volume_usdt) OVER (PARTITION BY date) AS total
    FROM traded
),
bounds AS (SELECT date, MAX(rnk) AS max_rank FROM ranked GROUP BY date),
window30 AS (
    SELECT date, symbol,
           SUM(CAST(available AS INTEGER)) OVER (
               PARTITION BY symbol ORDER BY date
               RANGE BETWEEN INTERVAL 29 DAY PRECEDING AND CURRENT ROW) AS days_30
    FROM daily_availability
)
SELECT r.date, r.symbol,
       CAST(r.rnk AS SMALLINT) AS rank,
       r.quote_volume_usdt, r.trade_count,
       CAST(p1.rnk - r.rnk AS SMALLINT) AS rank_change_1d,
       CAST(p7.rnk - r.rnk AS SMALLINT) AS rank_change_7d,
       CAST(p14.rnk - r.rnk AS SMALLINT) AS rank_change_14d,
       CAST(p30.rnk - r.rnk AS SMALLINT) AS rank_change_30d,
       CAST(CASE WHEN b.max_rank > 1 THEN (r.rnk - 1) / (b.max_rank - 1) ELSE 0 END AS FLOAT)
           AS percentile,
       CAST(100 * r.quote_volume_usdt / r.total AS FLOAT) AS market_share_pct,
       CAST(w.days_30 AS TINYINT) AS days_available,
       CAST($generated AS TIMESTAMP) AS generation_timestamp
FROM ranked r
JOIN bounds b USING (date)
JOIN window30 w ON w.date = r.date AND w.symbol = r.symbol
LEFT JOIN ranked p1 ON p1.symbol = r.symbol AND p1.date = r.date - 1
LEFT JOIN ranked p7 ON p7.symbol = r.symbol AND p7.date = r.date - 7
LEFT JOIN ranked p14 ON p14.symbol = r.symbol AND p14.date = r.date - 14
LEFT JOIN ranked p30 ON p30.symbol = r.symbol AND p30.date = r.date - 30
"""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gzip_file(src: Path, dest: Path, level: int = 6) -> Path:
    """Gzip ``src`` into ``dest`` atomically (mtime 0 so the bytes are reproducible)."""

    def write(fh) -> None:
        with (
            open(src, "rb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=level, mtime=0) as gz,
        ):
            shutil.copyfileobj(raw, gz, 1 << 20)

    return atomic_writer(dest, write)


def load_database(con, table: Any) -> None:
    """Create the release tables in DuckDB connection ``con`` from an Arrow table."""
    con.execute(CREATE_DAILY_AVAILABILITY)
    con.register("incoming", table)
    cols = ", ".join(DAILY_AVAILABILITY_COLUMNS)
    con.execute(f"INSERT INTO daily_availability SELECT {cols} FROM incoming ORDER BY date, symbol")
    con.unregister("incoming")
    con.execute(f"CREATE TABLE symbols AS {SYMBOLS_SQL}")
    con.execute(f"CREATE TABLE daily_symbol_counts AS {DAILY_SYMBOL_COUNTS_SQL}")


def _columns(con, relation_sql: str) -> list[dict[str, str]]:
    rel = con.sql(relation_sql)
    return [{"name": n, "type": str(t)} for n, t in zip(rel.columns, rel.types, strict=True)]


def _coverage(con, table: str) -> dict[str, str] | None:
    lo, hi = con.sql(f"SELECT MIN(date), MAX(date) FROM {table}").fetchall()[0]
    return {"start": lo.isoformat(), "end": hi.isoformat()} if lo else None


def build_release(
    table: Any,
    out_dir: Path,
    version: str,
    *,
    created_at: dt.datetime | None = None,
    synthetic: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """Write a complete release (assets + manifest + pinned catalog) into ``out_dir``.

    Parameters
    ----------
    table
        ``pyarrow.Table`` (or anything DuckDB can scan) with the daily_availability columns.
    out_dir
        Folder to write into (created).
    version
        The release version, e.g. ``"2026-11-23"`` (tag ``data-2026-11-23``).
    created_at
        Build time recorded in the manifest and rankings (default: now, UTC).
    synthetic
        Label the release as synthetic sample data.
    note
        Free text stored in the manifest (e.g. where synthetic data comes from).

    Returns
    -------
    dict
        The manifest document that was written.
    """
    import duckdb

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = (created_at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    stamp = created.astimezone(dt.UTC).replace(tzinfo=None)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        db_path = work / "availability.duckdb"
        con = duckdb.connect()
        con.execute("ATTACH ? AS release (STORAGE_VERSION ?)", [str(db_path), STORAGE_VERSION])
        con.execute("USE release")
        load_database(con, table)
        con.execute(f"CREATE TABLE volume_rankings AS {VOLUME_RANKINGS_SQL}", {"generated": stamp})
        datasets: dict[str, Any] = {}
        tables = {
            "daily_availability": f"SELECT * FROM daily_availability ORDER BY {TILED_ORDER}",
            "volume_rankings": f"SELECT * FROM volume_rankings ORDER BY {TILED_ORDER}",
            "symbols": "SELECT * FROM symbols ORDER BY symbol",
        }
        for name, sql in tables.items():
            asset = DATASETS[name].asset
            write_parquet(con.sql(sql), out_dir / asset)
            datasets[name] = {
                "asset": asset,
                "rows": con.sql(f"SELECT COUNT(*) FROM {name}").fetchall()[0][0],
                "coverage": _coverage(con, name) if name != "symbols" else None,
                "columns": _columns(con, f"SELECT * FROM {name}"),
            }
        datasets["availability_db"] = {
            "asset": DATASETS["availability_db"].asset,
            "compression": "gzip",
            "rows": datasets["daily_availability"]["rows"],
            "coverage": datasets["daily_availability"]["coverage"],
            "tables": [r[0] for r in con.sql("SHOW TABLES").fetchall()],
        }
        con.execute("CHECKPOINT")
        con.close()
        gzip_file(db_path, out_dir / DATASETS["availability_db"].asset)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for entry in datasets.values():
        path = out_dir / entry["asset"]
        entry["size"] = os.path.getsize(path)
        entry["sha256"] = sha256_file(path)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "version": version,
        "layout": "dated",
        "created_at": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "coverage": datasets["daily_availability"]["coverage"],
        "synthetic": synthetic,
        "datasets": datasets,
    }
    if note:
        manifest["note"] = note
    atomic_write_bytes(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    log.info("built release %s in %s", version, out_dir)
    return manifest
