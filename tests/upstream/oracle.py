"""Run inside the upstream project's own venv (``binance-futures-availability`` from PyPI).

    python oracle.py build RECORDS.parquet OUT_DIR   # its own schema + insert_batch, then gzip
    python oracle.py ask DATABASE QUESTIONS.json     # its own query classes; answers as JSON
    python oracle.py upsert DATABASE RECORDS.parquet # its AvailabilityDatabase on a database
    python oracle.py validate RANKINGS.parquet GENERATOR.py  # its validate_rankings_table

Nothing here is intake-bfa code: the database is written by the upstream's
``AvailabilityDatabase`` and every answer comes from its ``SnapshotQueries``,
``TimelineQueries`` and ``AnalyticsQueries``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import sys
from pathlib import Path


def build(records_path: str, out_dir: str) -> None:
    import pyarrow.parquet as pq
    from binance_futures_availability.database import AvailabilityDatabase

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "availability.duckdb"
    db_path.unlink(missing_ok=True)
    table = pq.read_table(records_path)
    db = AvailabilityDatabase(db_path=db_path)  # its schema (create_schema)
    # Its insert_batch is an executemany upsert, ~10 ms a row in DuckDB: every row goes in
    # with one INSERT on its own connection and schema, then insert_batch upserts the rows
    # of a few symbols again (its ON CONFLICT path and its materialized-view refresh).
    columns = ", ".join(table.column_names)
    db.conn.execute(
        f"INSERT INTO daily_availability ({columns}) SELECT {columns} FROM read_parquet(?)",
        [records_path],
    )
    some = sorted(set(table.column("symbol").to_pylist()))[:3]
    db.insert_batch([r for r in table.to_pylist() if r["symbol"] in some])
    records = table.num_rows
    db.close()
    with open(db_path, "rb") as src, gzip.open(out / "availability.duckdb.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    print(json.dumps({"rows": records}))


def _iso(value):
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def ask(db_path: str, questions_path: str) -> None:
    from binance_futures_availability.queries import (
        AnalyticsQueries,
        SnapshotQueries,
        TimelineQueries,
        VolumeQueries,
    )

    q = json.loads(Path(questions_path).read_text())
    answers: dict = {"snapshot": {}, "range": {}, "timeline": {}, "first": {}, "last": {}}
    answers["new_listings"] = {}
    with SnapshotQueries(db_path=Path(db_path)) as snap:
        for day in q["dates"]:
            answers["snapshot"][day] = [
                r["symbol"] for r in snap.get_available_symbols_on_date(day)
            ]
        for start, end in q["ranges"]:
            answers["range"][f"{start}..{end}"] = snap.get_symbols_in_date_range(start, end)
    with TimelineQueries(db_path=Path(db_path)) as tl:
        for symbol in q["symbols"]:
            answers["timeline"][symbol] = [
                [r["date"], r["available"]] for r in tl.get_symbol_availability_timeline(symbol)
            ]
            answers["first"][symbol] = _iso(tl.get_symbol_first_listing_date(symbol))
            answers["last"][symbol] = _iso(tl.get_symbol_last_available_date(symbol))
    with AnalyticsQueries(db_path=Path(db_path)) as an:
        answers["counts"] = {r["date"]: r["available_count"] for r in an.get_availability_summary()}
        for day in q["dates"]:
            answers["new_listings"][day] = sorted(an.detect_new_listings(day))
        answers["delistings"] = {d: sorted(an.detect_delistings(d)) for d in q["delisting_dates"]}
    answers["top"] = {}
    vq = VolumeQueries(db_path=db_path)
    for day in q["dates"]:
        top = vq.get_top_by_volume(dt.date.fromisoformat(day), limit=q["top_n"])
        answers["top"][day] = [[r["symbol"], r["volume_rank"]] for r in top]
    vq.db.close()
    print(json.dumps(answers))


def upsert(db_path: str, records_path: str) -> None:
    """Open a database with its package (its create_schema runs), upsert, read back."""
    import pyarrow.parquet as pq
    from binance_futures_availability.database import AvailabilityDatabase
    from binance_futures_availability.queries import SnapshotQueries

    records = pq.read_table(records_path).to_pylist()
    db = AvailabilityDatabase(db_path=Path(db_path))  # read-write, as its daily update opens it
    db.insert_batch(records)  # ON CONFLICT upsert + refresh of daily_symbol_counts
    rows = db.query("SELECT COUNT(*) FROM daily_availability")[0][0]
    counts = {
        d.isoformat(): [t, a]
        for d, t, a in db.query(
            "SELECT date, total_symbols, available_symbols FROM daily_symbol_counts"
        )
    }
    db.close()
    days = sorted({r["date"].isoformat() for r in records})
    with SnapshotQueries(db_path=Path(db_path)) as snap:
        snapshot = {
            d: sorted(r["symbol"] for r in snap.get_available_symbols_on_date(d)) for d in days
        }
    print(json.dumps({"rows": rows, "counts": counts, "snapshot": snapshot}))


def validate(rankings_path: str, generator_path: str) -> None:
    """Its generator's own ``validate_rankings_table`` (schema, rows, ranks) on a file."""
    import importlib.util

    import pyarrow.parquet as pq

    spec = importlib.util.spec_from_file_location("generate_volume_rankings", generator_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = pq.read_table(rankings_path)
    module.validate_rankings_table(table)  # raises ValueError on any mismatch
    print(json.dumps({"rows": table.num_rows, "schema": str(table.schema)}))


if __name__ == "__main__":
    commands = {"build": build, "ask": ask, "upsert": upsert, "validate": validate}
    commands[sys.argv[1]](*sys.argv[2:])
