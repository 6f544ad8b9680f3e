"""Build a release folder from a ``daily_availability`` table.

Writes, into ``out_dir``: ``availability.duckdb.gz`` (tables daily_availability
with its primary key, symbols, daily_symbol_counts, volume_rankings, availability_events),
one Parquet file per table dataset, ``manifest.json`` and a ``catalog.yaml`` pinned to the
version.

The database's ``daily_availability`` keeps exactly the publishing project's columns (its
package reads and writes our database, and the rolling release is that file); the
Parquet file adds ``first_seen`` and ``first_seen_exact``, computed from the database's
``availability_events`` table by :data:`intake_bfa.derive.DAILY_AVAILABILITY_EVENTS_SQL`,
the SQL a consumer deriving the table from the database runs too. Every file is written
under a temporary name and moved into place.
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
from intake_bfa.derive import (
    AVAILABILITY_EVENTS_SQL,
    DAILY_AVAILABILITY_EVENTS_SQL,
    SYMBOLS_SQL,
    VOLUME_RANKINGS_SQL,
    write_parquet,
)
from intake_bfa.manifest import MANIFEST_NAME
from intake_bfa.parquet_layout import TILED_ORDER
from intake_bfa.schema import (
    AVAILABILITY_EVENTS_COLUMNS,
    DATABASE_DAILY_COLUMNS,
    DATASETS,
    MANIFEST_SCHEMA_VERSION,
    REQUIRED_COLUMNS,
)

log = logging.getLogger(__name__)

#: The DuckDB storage format we write. v1.2.0 is the newest one in which the publishing
#: project's ``create_schema`` (its ``USING COMPRESSION dictionary`` columns) still binds, so
#: its package, which opens the database read-write, can use ours; DuckDB 1.2 onwards read it.
STORAGE_VERSION = "v1.2.0"

_DDL = ",\n    ".join(
    f"{name} {typ}" + (" NOT NULL" if name in REQUIRED_COLUMNS else "")
    for name, (typ, _) in DATABASE_DAILY_COLUMNS.items()
)
CREATE_DAILY_AVAILABILITY = f"""
CREATE TABLE daily_availability (
    {_DDL},
    PRIMARY KEY (date, symbol)
)"""

# As the publishing project declares it: its insert_batch refreshes the counts with
# INSERT OR REPLACE, which needs the primary key.
CREATE_DAILY_SYMBOL_COUNTS = """
CREATE TABLE daily_symbol_counts (
    date DATE PRIMARY KEY,
    total_symbols INTEGER NOT NULL,
    available_symbols INTEGER NOT NULL,
    unavailable_symbols INTEGER NOT NULL,
    last_updated TIMESTAMP NOT NULL
)"""

DAILY_SYMBOL_COUNTS_SQL = """
SELECT date,
       CAST(COUNT(*) AS INTEGER) AS total_symbols,
       CAST(COUNT(*) FILTER (WHERE available) AS INTEGER) AS available_symbols,
       CAST(COUNT(*) FILTER (WHERE NOT available) AS INTEGER) AS unavailable_symbols,
       MAX(probe_timestamp) AS last_updated
FROM daily_availability GROUP BY date ORDER BY date
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
    cols = ", ".join(DATABASE_DAILY_COLUMNS)
    con.execute(f"INSERT INTO daily_availability SELECT {cols} FROM incoming ORDER BY date, symbol")
    con.unregister("incoming")
    con.execute(f"CREATE TABLE symbols AS {SYMBOLS_SQL}")
    con.execute(CREATE_DAILY_SYMBOL_COUNTS)
    con.execute(f"INSERT INTO daily_symbol_counts {DAILY_SYMBOL_COUNTS_SQL}")


CREATE_AVAILABILITY_EVENTS = "CREATE TABLE availability_events (\n    {}\n)".format(
    ",\n    ".join(f"{name} {typ}" for name, (typ, _) in AVAILABILITY_EVENTS_COLUMNS.items())
)

#: Without a collected history: one ``appeared`` event per available row at its
#: Last-Modified, not exact (a replacement before it cannot be ruled out), ETag unknown.
_DERIVED_EVENTS_SQL = """
SELECT symbol, date, 'appeared', last_modified, false, file_size_bytes, CAST(NULL AS VARCHAR),
       last_modified, probe_timestamp
FROM daily_availability WHERE available
"""


def load_events(con, events: Any = None) -> None:
    """Create the ``availability_events`` table in ``con`` (after :func:`load_database`).

    Parameters
    ----------
    con
        A DuckDB connection whose current database holds ``daily_availability``.
    events
        The observation history (:func:`intake_bfa.producer.state.events_schema`), or None
        to derive it from ``daily_availability`` (:data:`_DERIVED_EVENTS_SQL`). Events of
        dates outside the table's dates are left out (a day the build trimmed).
    """
    con.execute(CREATE_AVAILABILITY_EVENTS)
    cols = ", ".join(AVAILABILITY_EVENTS_COLUMNS)
    if events is None:
        con.execute(f"INSERT INTO availability_events {_DERIVED_EVENTS_SQL}")
        return
    con.register("incoming_events", events)
    con.execute(
        f"INSERT INTO availability_events SELECT {cols} FROM incoming_events "
        "WHERE date BETWEEN (SELECT MIN(date) FROM daily_availability) "
        "AND (SELECT MAX(date) FROM daily_availability)"
    )
    con.unregister("incoming_events")


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
    events: Any = None,
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
    events
        The observation history (``State.events``, see
        :func:`intake_bfa.producer.state.events_schema`) published as ``availability_events``
        and the source of ``first_seen``; None (a release built from a table alone) derives
        one ``appeared`` event per available row at its Last-Modified, not exact.

    Returns
    -------
    dict
        The manifest document that was written.
    """
    from intake_bfa import interrupt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = (created_at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    stamp = created.astimezone(dt.UTC).replace(tzinfo=None)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        db_path = work / "availability.duckdb"
        con = interrupt.connect()
        con.execute("ATTACH ? AS release (STORAGE_VERSION ?)", [str(db_path), STORAGE_VERSION])
        con.execute("USE release")
        load_database(con, table)
        con.execute(f"CREATE TABLE volume_rankings AS {VOLUME_RANKINGS_SQL}", {"generated": stamp})
        load_events(con, events)
        datasets: dict[str, Any] = {}
        tables = {
            "daily_availability": DAILY_AVAILABILITY_EVENTS_SQL,
            "volume_rankings": f"SELECT * FROM volume_rankings ORDER BY {TILED_ORDER}",
            "symbols": "SELECT * FROM symbols ORDER BY symbol",
            "availability_events": AVAILABILITY_EVENTS_SQL,
        }
        for name, sql in tables.items():
            asset = DATASETS[name].asset
            write_parquet(con.sql(sql), out_dir / asset)
            datasets[name] = {
                "asset": asset,
                "rows": con.sql(f"SELECT COUNT(*) FROM {name}").fetchall()[0][0],
                "coverage": _coverage(con, name) if name != "symbols" else None,
                "columns": _columns(con, sql),
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
