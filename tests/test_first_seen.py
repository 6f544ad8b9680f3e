"""The published observation history: ``first_seen`` on daily_availability and the
``availability_events`` dataset, from a collected state (moto's S3 server shaped like
Binance Vision), in the sample releases, and on the public project's rolling layout.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa.errors import DatasetNotFoundError, QueryError
from intake_bfa.manifest import parse_manifest
from intake_bfa.producer.release import build_from_state
from intake_bfa.producer.state import load_state
from intake_bfa.query import Query
from intake_bfa.schema import (
    AVAILABILITY_EVENTS_COLUMNS,
    DAILY_AVAILABILITY_COLUMNS,
    DATABASE_DAILY_COLUMNS,
    DERIVABLE,
    FIRST_SEEN_COLUMNS,
)
from intake_bfa.serve.engine import Engine

from .conftest import V_NEW
from .test_collect import Vision, days, m1_key
from .test_observation_history import BACKFILLED, T1, T2, WINDOW, s3_object, seed

D = dt.date
REPLACED = ("BBBUSDT", D(2024, 3, 10))


def key(row: dict) -> tuple[str, dt.date]:
    return row["symbol"], row["date"]


def test_a_release_built_from_a_state_publishes_first_seen_and_the_events(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "first-seen-release")
    seed(bucket, {"AAAUSDT": days(*WINDOW), "BBBUSDT": days(*WINDOW)})
    state_dir = tmp_path / "state"
    bucket.run(state_dir, today=T1, full_every=0)
    original = s3_object(bucket, *REPLACED)
    # Between runs: an old day back-filled and an object replaced in place.
    bucket.put(
        {
            m1_key(*BACKFILLED): b"back-filled weeks later",
            m1_key(*REPLACED): b"replaced in place, longer than before",
        }
    )
    bucket.run(state_dir, today=T2, full_every=0)
    replaced = s3_object(bucket, *REPLACED)
    backfilled = s3_object(bucket, *BACKFILLED)

    result = build_from_state(state_dir, tmp_path / "rel", version="2024-03-15")
    assert result.report.ok, [f.message for f in result.report.findings]
    consistency = [f.message for f in result.report.findings if f.check == "consistency"]
    assert any(m.startswith("availability_events:") for m in consistency)
    rel = tmp_path / "rel"
    daily = pq.read_table(rel / "daily_availability.parquet")
    assert daily.column_names == list(DAILY_AVAILABILITY_COLUMNS)
    state = load_state(state_dir)
    earliest: dict[tuple[str, dt.date], dt.datetime] = {}
    for event in state.events.to_pylist():
        if event["event"] == "appeared":
            earliest[key(event)] = min(earliest.get(key(event), event["event_time"]),
                                       event["event_time"])  # fmt: skip
    rows = {key(r): r for r in daily.to_pylist()}
    for k, row in rows.items():
        if row["available"]:
            assert row["first_seen"] == earliest[k], k
            assert row["first_seen_exact"] is not None
        else:
            assert row["first_seen"] is None and row["first_seen_exact"] is None, k
    # The replaced object keeps its first appearance; its Last-Modified moved on.
    assert rows[REPLACED]["first_seen"] == original["last_modified"]
    assert rows[REPLACED]["first_seen_exact"] is False  # uploaded long after its day
    assert rows[REPLACED]["last_modified"] == replaced["last_modified"]
    # The back-fill was seen arriving: its first_seen is its upload, exactly.
    assert rows[BACKFILLED]["first_seen"] == backfilled["last_modified"]
    assert rows[BACKFILLED]["first_seen_exact"] is True

    published = pq.read_table(rel / "availability_events.parquet")
    assert published.column_names == list(AVAILABILITY_EVENTS_COLUMNS)
    assert sorted(published.to_pylist(), key=repr) == sorted(state.events.to_pylist(), key=repr)
    kinds = {(key(e), e["event"]) for e in published.to_pylist()}
    assert {(REPLACED, "appeared"), (REPLACED, "replaced"), (BACKFILLED, "appeared")} <= kinds
    (event,) = [e for e in published.to_pylist() if e["event"] == "replaced"]
    assert {k: event[k] for k in replaced} == replaced and event["exact"]

    manifest = json.loads((rel / "manifest.json").read_text())
    entry = manifest["datasets"]["availability_events"]
    assert entry["asset"] == "availability_events.parquet"
    assert entry["rows"] == published.num_rows
    assert [c["name"] for c in entry["columns"]] == list(AVAILABILITY_EVENTS_COLUMNS)
    assert entry["coverage"] == {"start": "2024-02-20", "end": "2024-03-13"}
    names = [c["name"] for c in manifest["datasets"]["daily_availability"]["columns"]]
    assert names == list(DAILY_AVAILABILITY_COLUMNS)
    assert "availability_events" in manifest["datasets"]["availability_db"]["tables"]
    parse_manifest(manifest, source="test")  # consumers accept it


def test_the_database_keeps_the_upstream_columns(samples, tmp_path):
    import gzip
    import shutil

    import duckdb

    db = tmp_path / "a.duckdb"
    with gzip.open(samples.dated(V_NEW) / "availability.duckdb.gz") as src, open(db, "wb") as out:
        shutil.copyfileobj(src, out)
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("SELECT * FROM daily_availability").columns == list(DATABASE_DAILY_COLUMNS)
    assert not set(FIRST_SEEN_COLUMNS) & set(DATABASE_DAILY_COLUMNS)
    # A synthetic release has no collected history: one appeared event per available row,
    # at its Last-Modified, not exact.
    kinds = con.sql(
        "SELECT event, exact, count(*) FROM availability_events GROUP BY ALL"
    ).fetchall()
    available = con.sql("SELECT count(*) FROM daily_availability WHERE available").fetchall()
    assert kinds == [("appeared", False, available[0][0])]


def test_the_sample_release_is_read_through_the_catalog(published):
    cat = intake_bfa.open_catalog()
    assert "availability_events" in list(cat)
    events = cat.availability_events.read()
    assert list(events.columns) == list(AVAILABILITY_EVENTS_COLUMNS)
    assert set(events["event"]) == {"appeared"} and not events["exact"].any()
    one = intake_bfa.read("availability_events", symbols="BTCUSDT", start="2021-06-01")
    assert set(one["symbol"]) == {"BTCUSDT"} and one["date"].min() >= dt.date(2021, 6, 1)
    daily = intake_bfa.read("daily_availability", start="2021-06-01")
    assert list(daily.columns) == list(DAILY_AVAILABILITY_COLUMNS)
    up = daily[daily["available"]]
    assert (up["first_seen"] == up["last_modified"]).all() and not up["first_seen_exact"].any()
    assert daily[~daily["available"]]["first_seen"].isna().all()
    # A view of bfa sql / Query.sql, and served by bfa serve.
    counts = Query().sql("SELECT event, count(*) AS n FROM availability_events GROUP BY event")
    assert list(counts["event"]) == ["appeared"] and counts["n"][0] == len(events)
    engine = Engine().start()
    try:
        assert "availability_events" in engine.versions[engine.default].datasets
        _, served = engine.sql("SELECT count(*) AS n FROM availability_events", None)
        assert served.column("n").to_pylist() == [len(events)]
    finally:
        engine.close()


def test_the_rolling_layout_bounds_first_seen_and_has_no_events(rolling):
    daily = intake_bfa.read("daily_availability", start="2021-06-01")
    assert list(daily.columns) == list(DAILY_AVAILABILITY_COLUMNS)
    up = daily[daily["available"]]
    assert len(up) and (up["first_seen"] == up["last_modified"]).all()
    assert not up["first_seen_exact"].astype(bool).any()
    assert daily[~daily["available"]]["first_seen"].isna().all()
    with pytest.raises(DatasetNotFoundError, match="the rolling layout publishes no event history"):
        intake_bfa.read("availability_events")
    with pytest.raises(QueryError, match="the rolling layout publishes no event history"):
        Query().sql("SELECT * FROM availability_events")
    # bfa serve starts on it and serves the rest.
    engine = Engine().start()
    try:
        served = engine.versions[engine.default]
        assert "availability_events" not in served.datasets and served.layout == "rolling"
    finally:
        engine.close()


def test_the_events_are_never_derived():
    assert "availability_events" not in DERIVABLE
    doc = {
        "schema_version": 1,
        "version": "2024-03-15",
        "layout": "dated",
        "created_at": "2024-03-15T09:30:00Z",
        "datasets": {
            "availability_db": {"asset": "availability.duckdb.gz", "size": 1, "sha256": "0" * 64},
            "availability_events": {"derived_from": "availability_db"},
        },
    }
    with pytest.raises(Exception, match="availability_events"):
        parse_manifest(doc, source="test")
