"""The collector's observation history (``events.parquet``) against moto's S3 server.

Each test seeds its own small bucket shaped like Binance Vision, runs ``collect`` (and
``bfa collect`` once), changes the bucket between runs as Binance Vision does (late
back-fills, objects replaced in place, files that vanish, new symbol folders) and checks
the events appended. moto stamps Last-Modified at upload time (it cannot be set), so
times are compared with what S3 itself answers for the object.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq

from intake_bfa.producer.state import (
    EVENT_KINDS,
    EVENTS_FILE,
    META_FILE,
    STATE_VERSION,
    events_schema,
    first_seen,
    load_state,
    save_state,
    seed_from_table,
    to_daily_availability,
)

from .conftest import run_cli
from .test_collect import FaultProxy, Vision, days, m1_key

D = dt.date
T1, T2 = D(2024, 3, 14), D(2024, 3, 15)
WINDOW = (D(2024, 2, 20), D(2024, 3, 13))
BACKFILLED = ("AAAUSDT", D(2024, 3, 5))  # missing at first, uploaded between runs


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def seed(bucket: Vision, symbols: dict[str, list[dt.date]], missing=(BACKFILLED,)) -> None:
    objects = {}
    for symbol, dates in symbols.items():
        for day in dates:
            if (symbol, day) not in missing:
                key = m1_key(symbol, day)
                objects[key] = f"1m klines {symbol} {day}".encode()
                objects[key + ".CHECKSUM"] = b"0" * 64 + key.encode()
    bucket.put(objects)


def s3_object(bucket: Vision, symbol: str, day: dt.date) -> dict:
    """Size, ETag and Last-Modified as S3 answers them (naive UTC, ETag unquoted)."""
    head = bucket.head(m1_key(symbol, day))
    return {
        "file_size_bytes": head["ContentLength"],
        "etag": head["ETag"].strip('"'),
        "last_modified": head["LastModified"].astimezone(dt.UTC).replace(tzinfo=None),
    }


def events(folder) -> list[dict]:
    return load_state(folder).events.to_pylist()


def by_key(rows: list[dict]) -> dict[tuple[str, dt.date], dict]:
    out = {}
    for row in rows:
        assert (row["symbol"], row["date"]) not in out, "one event per key and run"
        out[(row["symbol"], row["date"])] = row
    return out


def test_first_run_records_appearances_exact_only_in_the_upload_window(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "history-first")
    # Days of 2024 uploaded now: their Last-Modified is long after the normal window, so
    # the first run cannot tell a late back-fill from an earlier upload replaced since.
    # Today and yesterday (UTC) uploaded now are in their window.
    today = utc_now().date()
    recent = [today - dt.timedelta(days=1), today]
    seed(bucket, {"AAAUSDT": days(*WINDOW), "NOWUSDT": [D(2024, 3, 1), *recent]})
    report = bucket.run(tmp_path / "s", today=T1)

    state = load_state(tmp_path / "s")
    assert state.events.schema == events_schema()
    history = state.events.to_pylist()
    assert {r["event"] for r in history} == {"appeared"}
    assert len(history) == state.availability.num_rows == report.events_added
    avail = {(r["symbol"], r["date"]): r for r in state.availability.to_pylist()}
    for key, row in by_key(history).items():
        listed = avail[key]
        assert row["event_time"] == row["last_modified"] == listed["last_modified"]
        assert (row["file_size_bytes"], row["etag"]) == (listed["file_size_bytes"], listed["etag"])
        assert row["observed_at"] == listed["probe_timestamp"]
        assert row["exact"] == (key in {("NOWUSDT", d) for d in recent}), key
    assert report.events_exact == 2
    head = s3_object(bucket, "NOWUSDT", today)
    assert by_key(history)[("NOWUSDT", today)]["event_time"] == head["last_modified"]
    assert state.runs[-1]["events_added"] == len(history)


def test_changes_between_runs_append_events(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "history-changes")
    seed(bucket, {"AAAUSDT": days(*WINDOW), "BBBUSDT": days(*WINDOW)})
    state_dir = tmp_path / "s"
    bucket.run(state_dir, today=T1, full_every=0)
    first = events(state_dir)
    original = s3_object(bucket, "BBBUSDT", D(2024, 3, 10))
    gone = s3_object(bucket, "BBBUSDT", D(2024, 3, 8))
    assert first and not any(r["exact"] for r in first)  # all uploaded long after their day

    # (a) a back-fill of an old day, (b) an object replaced in place, (c) one deleted,
    # a new day arriving as usual, and a new symbol folder with a whole past history.
    bucket.put(
        {
            m1_key(*BACKFILLED): b"back-filled weeks later",
            m1_key("BBBUSDT", D(2024, 3, 10)): b"replaced in place, longer than before",
            m1_key("AAAUSDT", T1): b"new day",
        }
    )
    bucket.delete(m1_key("BBBUSDT", D(2024, 3, 8)))
    seed(bucket, {"NEWUSDT": [D(2024, 1, 5), D(2024, 1, 6)]})
    started = utc_now()
    report = bucket.run(state_dir, today=T2, full_every=0)
    ended = utc_now()

    second = events(state_dir)
    assert second[: len(first)] == first  # append-only: the old history is a prefix
    new = by_key(second[len(first) :])
    assert report.events_added == len(new) == 6
    assert set(new) == {
        BACKFILLED,
        ("AAAUSDT", T1),
        ("BBBUSDT", D(2024, 3, 10)),
        ("BBBUSDT", D(2024, 3, 8)),
        ("NEWUSDT", D(2024, 1, 5)),
        ("NEWUSDT", D(2024, 1, 6)),
    }
    assert set(EVENT_KINDS) == {r["event"] for r in new.values()}

    # (a) absent from the previous listing, which covered its date: exact, at Last-Modified.
    backfill = new[BACKFILLED]
    head = s3_object(bucket, *BACKFILLED)
    assert backfill["event"] == "appeared" and backfill["exact"]
    assert backfill["event_time"] == head["last_modified"] > started - dt.timedelta(minutes=5)
    assert {k: backfill[k] for k in head} == head
    assert started <= backfill["observed_at"] <= ended
    assert new[("AAAUSDT", T1)]["exact"]
    # A symbol folder the previous discovery did not find: none of its keys existed then.
    assert all(new[("NEWUSDT", d)]["exact"] for d in (D(2024, 1, 5), D(2024, 1, 6)))

    # (b) the replacement: the new size and ETag, at the new Last-Modified, exactly.
    replaced = new[("BBBUSDT", D(2024, 3, 10))]
    head = s3_object(bucket, "BBBUSDT", D(2024, 3, 10))
    assert replaced["event"] == "replaced" and replaced["exact"]
    assert {k: replaced[k] for k in head} == head
    assert replaced["event_time"] == head["last_modified"] >= original["last_modified"]
    assert head["file_size_bytes"] != original["file_size_bytes"]
    assert head["etag"] != original["etag"]

    # (c) the deletion: a bound only, the time of this run's listing; the object as it was.
    deleted = new[("BBBUSDT", D(2024, 3, 8))]
    assert deleted["event"] == "disappeared" and not deleted["exact"]
    assert started <= deleted["event_time"] == deleted["observed_at"] <= ended
    assert {k: deleted[k] for k in gone} == gone

    # (d) nothing changed: nothing appended, the file's rows unchanged.
    report = bucket.run(state_dir, today=T2, full_every=0)
    assert report.events_added == 0
    assert events(state_dir) == second

    # (g) first appearance: the replacement does not move it, nor does a return.
    bucket.put({m1_key("BBBUSDT", D(2024, 3, 8)): b"back again"})
    report = bucket.run(state_dir, today=T2, full_every=0)
    (back,) = events(state_dir)[len(second) :]
    assert (back["event"], back["exact"], back["date"]) == ("appeared", True, D(2024, 3, 8))
    seen = {(r["symbol"], r["date"]): r for r in first_seen(load_state(state_dir)).to_pylist()}
    assert seen[("BBBUSDT", D(2024, 3, 10))] == {
        "symbol": "BBBUSDT",
        "date": D(2024, 3, 10),
        "first_seen": original["last_modified"],
        "first_seen_exact": False,
    }
    assert seen[("BBBUSDT", D(2024, 3, 8))]["first_seen"] == gone["last_modified"]
    assert seen[BACKFILLED] == {
        "symbol": BACKFILLED[0],
        "date": BACKFILLED[1],
        "first_seen": backfill["event_time"],
        "first_seen_exact": True,
    }
    assert len(seen) == load_state(state_dir).availability.num_rows


def test_dates_not_relisted_and_failed_symbols_get_no_events(moto_endpoint, tmp_path, monkeypatch):
    bucket = Vision(moto_endpoint, "history-window")
    old = (D(2023, 12, 1), D(2023, 12, 31))
    seed(bucket, {"AAAUSDT": days(old[0], WINDOW[1]), "BBBUSDT": days(*WINDOW)}, missing=())
    state_dir = tmp_path / "s"
    bucket.run(state_dir, today=T1, full_every=0)
    first = events(state_dir)

    # (e) changes months before the 20-day re-check window: an incremental run does not
    # re-list those dates, so it neither sees nor invents anything there.
    bucket.put({m1_key("AAAUSDT", D(2023, 12, 10)): b"replaced long after, longer"})
    bucket.delete(m1_key("AAAUSDT", D(2023, 12, 11)))
    report = bucket.run(state_dir, today=T1, full_every=0)
    assert report.events_added == 0 and events(state_dir) == first

    # A symbol whose listing fails keeps its rows and gets no event, even for a change
    # in its window; the next good listing records it.
    monkeypatch.setenv("BFA_RETRIES", "1")
    bucket.delete(m1_key("BBBUSDT", D(2024, 3, 12)))
    with FaultProxy(bucket.endpoint) as proxy:
        proxy.fail_prefix("BBBUSDT", 503)
        report = bucket.run(
            state_dir, endpoint=proxy.endpoint, today=T1, full_every=0, error_threshold=0.5
        )
    assert list(report.symbols_failed) == ["BBBUSDT"]
    assert report.events_added == 0 and events(state_dir) == first

    report = bucket.run(state_dir, today=T1, full=True)
    new = by_key(events(state_dir)[len(first) :])
    assert {k: r["event"] for k, r in new.items()} == {
        ("AAAUSDT", D(2023, 12, 10)): "replaced",
        ("AAAUSDT", D(2023, 12, 11)): "disappeared",
        ("BBBUSDT", D(2024, 3, 12)): "disappeared",
    }
    assert report.events_added == 3 and report.events_exact == 1


def test_state_without_history_loads_and_derives_it(moto_endpoint, tmp_path):
    """(f) a state folder from before the history: same version, history derived, kept."""
    bucket = Vision(moto_endpoint, "history-legacy")
    seed(bucket, {"AAAUSDT": days(*WINDOW)})
    state_dir = tmp_path / "s"
    bucket.run(state_dir, today=T1, full_every=0)
    written = events(state_dir)
    (state_dir / EVENTS_FILE).unlink()
    assert json.loads((state_dir / META_FILE).read_text())["state_version"] == STATE_VERSION

    state = load_state(state_dir)
    derived = state.events.to_pylist()
    assert len(derived) == state.availability.num_rows
    avail = {(r["symbol"], r["date"]): r for r in state.availability.to_pylist()}
    for key, row in by_key(derived).items():
        assert row["event"] == "appeared" and row["exact"] is False
        assert row["event_time"] == avail[key]["last_modified"] == row["last_modified"]
        assert row["observed_at"] == avail[key]["probe_timestamp"]
        assert row["etag"] == avail[key]["etag"]
    # The same rows as the first run wrote, but none exact: what came before is unknown.
    assert [r | {"exact": False} for r in written] == derived

    # The next run writes the derived history and appends to it; the symbol was listed
    # by us before (its rows have ETags), so the back-fill is seen arriving.
    report = bucket.run(state_dir, today=T1, full_every=0)
    assert report.events_added == 0 and events(state_dir) == derived
    assert (state_dir / EVENTS_FILE).exists()
    bucket.put({m1_key(*BACKFILLED): b"back-filled"})
    bucket.run(state_dir, today=T1, full_every=0)
    history = events(state_dir)
    assert history[: len(derived)] == derived
    ((key, row),) = by_key(history[len(derived) :]).items()
    assert key == BACKFILLED and row["event"] == "appeared" and row["exact"]


def test_seeded_state_has_inexact_history_until_listed_by_us(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "history-seeded")
    seed(bucket, {"AAAUSDT": days(*WINDOW), "BBBUSDT": days(*WINDOW)})
    listed = tmp_path / "listed"
    bucket.run(listed, today=T1, full_every=0)
    # A published daily_availability carries no ETag and no history.
    seeded = seed_from_table(to_daily_availability(load_state(listed), T1 - dt.timedelta(1)))
    history = seeded.events.to_pylist()
    assert len(history) == seeded.availability.num_rows > 0
    assert all(r["event"] == "appeared" and not r["exact"] and r["etag"] is None for r in history)
    state_dir = tmp_path / "seeded"
    save_state(state_dir, seeded)
    assert pq.read_table(state_dir / EVENTS_FILE).num_rows == len(history)

    # First run on the seed: no listing of ours covered the date before, and the back-fill's
    # Last-Modified is far past its day, so its time is only a bound ...
    bucket.put({m1_key(*BACKFILLED): b"back-filled"})
    bucket.run(state_dir, today=T1, full_every=0)
    (row,) = events(state_dir)[len(history) :]
    assert (row["symbol"], row["date"], row["event"], row["exact"]) == (
        *BACKFILLED,
        "appeared",
        False,
    )
    # ... and once we have listed the symbol, a deletion and return is seen arriving.
    bucket.delete(m1_key("AAAUSDT", D(2024, 3, 6)))
    bucket.run(state_dir, today=T1, full_every=0)
    bucket.put({m1_key("AAAUSDT", D(2024, 3, 6)): b"back"})
    bucket.run(state_dir, today=T1, full_every=0)
    gone, back = events(state_dir)[len(history) + 1 :]
    assert (gone["event"], gone["exact"], back["event"], back["exact"]) == (
        "disappeared",
        False,
        "appeared",
        True,
    )


def test_cli_collect_appends_history(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "history-cli")
    seed(bucket, {"AAAUSDT": days(*WINDOW), "BBBUSDT": days(*WINDOW)})
    s3 = {"BFA_S3_ENDPOINT": moto_endpoint, "BFA_S3_BUCKET": bucket.name,
          "BFA_DATA_URL": bucket.data_url}  # fmt: skip
    state_dir = tmp_path / "state"
    args = ("collect", "--state", str(state_dir), "--full-every", "0", "--json")

    out = run_cli(*args, env=s3)
    assert out.returncode == 0, out.stderr
    first = pq.read_table(state_dir / EVENTS_FILE)
    assert json.loads(out.stdout)["events_added"] == first.num_rows == 2 * len(days(*WINDOW)) - 1

    bucket.put({m1_key(*BACKFILLED): b"back-filled"})
    out = run_cli(*args, env=s3)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["events_added"], report["events_exact"]) == (1, 1)
    history = pq.read_table(state_dir / EVENTS_FILE)
    assert history.slice(0, first.num_rows).equals(first)
    (row,) = history.slice(first.num_rows).to_pylist()
    assert (row["symbol"], row["date"], row["event"]) == (*BACKFILLED, "appeared")
    assert row["event_time"] == s3_object(bucket, *BACKFILLED)["last_modified"]

    out = run_cli(*args, env=s3)
    assert out.returncode == 0 and json.loads(out.stdout)["events_added"] == 0
    assert pq.read_table(state_dir / EVENTS_FILE).equals(history)
