"""The collected state: what ``bfa collect`` saw on Binance Vision, what ``bfa build`` reads.

A state folder holds four files, each replaced atomically:

``availability.parquet``
    One row per daily 1m-klines object that exists: symbol, date, size, Last-Modified,
    ETag and when it was listed. A missing (symbol, date) means "no file".
``volume.parquet``
    One row per (symbol, date) with the 1d kline's volume and OHLC, and where it came from.
``events.parquet``
    The observation history, append-only: one row per change ``bfa collect`` saw on an
    object (``appeared``, ``replaced``, ``disappeared``), see :func:`events_schema`.
``state.json``
    Every symbol folder discovered, the last date seen, and a log of runs.

Re-listing a symbol from a date replaces that symbol's availability rows from that date
on (objects that vanished disappear, back-filled ones appear); volume rows are only ever
added or updated, never erased by an availability re-check. The history keeps what the
availability table forgets: rows are only ever appended, never rewritten or removed, so
it is carried from run to run (and release to release) whole.

A state folder written before the history existed has no ``events.parquet``; it still
loads (``state_version`` stays 1), its history derived from its availability rows as
``appeared`` events whose time is only a bound (``exact`` false): what happened to those
objects before they were first recorded is unknown. The first save writes the file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.cache.layout import atomic_write_bytes, temp_file
from intake_bfa.schema import EVENT_KINDS as EVENT_KINDS  # the kinds of event, re-exported
from intake_bfa.schema import FIRST_DATE, VOLUME_COLUMNS

STATE_VERSION = 1
AVAILABILITY_FILE = "availability.parquet"
VOLUME_FILE = "volume.parquet"
EVENTS_FILE = "events.parquet"
META_FILE = "state.json"
URL_PREFIX = "https://data.binance.vision/data/futures/um/daily/klines/"

log = logging.getLogger(__name__)


def availability_schema():
    """Arrow schema of ``availability.parquet``."""
    import pyarrow as pa

    return pa.schema(
        [
            ("symbol", pa.string()),
            ("date", pa.date32()),
            ("file_size_bytes", pa.int64()),
            ("last_modified", pa.timestamp("us")),
            ("etag", pa.string()),
            ("probe_timestamp", pa.timestamp("us")),
        ]
    )


def volume_schema():
    """Arrow schema of ``volume.parquet``."""
    import pyarrow as pa

    numbers = [(c, pa.int64() if c == "trade_count" else pa.float64()) for c in VOLUME_COLUMNS]
    return pa.schema(
        [("symbol", pa.string()), ("date", pa.date32()), *numbers, ("source", pa.string())]
    )


def events_schema():
    """Arrow schema of ``events.parquet``, the observation history.

    ``symbol``, ``date``
        The object's key (the daily 1m-klines zip of that symbol and day).
    ``event``
        ``appeared`` (a key not in the previous listing), ``replaced`` (same key, new
        size, ETag or Last-Modified) or ``disappeared`` (a key no longer listed).
    ``event_time``
        When it happened: the object's Last-Modified for ``appeared`` and ``replaced``;
        for ``disappeared``, the time of the listing that first missed it (S3 keeps no
        trace of a deletion, so this is only an upper bound).
    ``exact``
        Whether ``event_time`` is the real time of the event rather than a bound (see
        :mod:`intake_bfa.producer.collect` for when an appearance is exact).
    ``file_size_bytes``, ``etag``, ``last_modified``
        The object as listed; for ``disappeared``, as last listed before it went.
    ``observed_at``
        When the listing that saw the event was made.

    Timestamps are naive UTC, like the other state tables.
    """
    import pyarrow as pa

    return pa.schema(
        [
            ("symbol", pa.string()),
            ("date", pa.date32()),
            ("event", pa.string()),
            ("event_time", pa.timestamp("us")),
            ("exact", pa.bool_()),
            ("file_size_bytes", pa.int64()),
            ("etag", pa.string()),
            ("last_modified", pa.timestamp("us")),
            ("observed_at", pa.timestamp("us")),
        ]
    )


def derived_events(availability: Any) -> Any:
    """``appeared`` events, not exact, for availability rows whose history is unknown.

    Used for a state folder written before the history existed and for a state seeded
    from a release: each row is known to exist, but not whether it replaced an earlier
    upload, so its Last-Modified only bounds its first appearance from above.
    """
    import pyarrow as pa

    rows = availability.sort_by([("symbol", "ascending"), ("date", "ascending")])
    n = rows.num_rows
    return pa.table(
        {
            "symbol": rows["symbol"],
            "date": rows["date"],
            "event": pa.array(["appeared"] * n, pa.string()),
            "event_time": rows["last_modified"],
            "exact": pa.array([False] * n, pa.bool_()),
            "file_size_bytes": rows["file_size_bytes"],
            "etag": rows["etag"],
            "last_modified": rows["last_modified"],
            "observed_at": rows["probe_timestamp"],
        }
    ).cast(events_schema())


@dataclass
class State:
    """A loaded state folder.

    Attributes
    ----------
    availability, volume
        Arrow tables with :func:`availability_schema` / :func:`volume_schema`.
    symbols
        Every symbol folder discovered (listed or not yet).
    runs
        One dict per collect run (counts, requests, errors).
    events
        The observation history (:func:`events_schema`), oldest first; None derives it
        from ``availability`` (:func:`derived_events`), as for a state without one.
    """

    availability: Any
    volume: Any
    symbols: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: Any = None

    def __post_init__(self) -> None:
        if self.events is None:
            self.events = derived_events(self.availability)

    @property
    def last_date(self) -> dt.date | None:
        """Newest date with any file, or None for an empty state."""
        import pyarrow.compute as pc

        if self.availability.num_rows == 0:
            return None
        return pc.max(self.availability["date"]).as_py()

    def last_dates(self) -> dict[str, dt.date]:
        """Newest date with a file, per symbol."""
        if self.availability.num_rows == 0:
            return {}
        grouped = self.availability.group_by("symbol").aggregate([("date", "max")])
        return dict(
            zip(grouped["symbol"].to_pylist(), grouped["date_max"].to_pylist(), strict=True)
        )


def empty_state() -> State:
    """A state with no rows."""
    return State(availability_schema().empty_table(), volume_schema().empty_table())


def load_state(folder: Path) -> State:
    """Read a state folder; a missing folder is an empty state."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.exists():
        return empty_state()
    meta = json.loads(meta_path.read_text())
    if meta.get("state_version") != STATE_VERSION:
        raise ValueError(f"{meta_path}: unsupported state_version {meta.get('state_version')}")
    events_path = folder / EVENTS_FILE
    return State(
        availability=pq.read_table(folder / AVAILABILITY_FILE, schema=availability_schema()),
        volume=pq.read_table(folder / VOLUME_FILE, schema=volume_schema()),
        symbols=list(meta.get("symbols", [])),
        runs=list(meta.get("runs", [])),
        # A folder from before the history has none: State derives it (see the module doc).
        events=pq.read_table(events_path, schema=events_schema()) if events_path.exists() else None,
    )


def _write_table(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = temp_file(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(folder: Path, state: State) -> None:
    """Write the state folder; the tables first, ``state.json`` last (it marks completeness)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    availability = state.availability.sort_by([("symbol", "ascending"), ("date", "ascending")])
    volume = state.volume.sort_by([("symbol", "ascending"), ("date", "ascending")])
    _write_table(availability, folder / AVAILABILITY_FILE)
    _write_table(volume, folder / VOLUME_FILE)
    # Kept in append order (never sorted): the previous file is a prefix of the new one.
    _write_table(state.events.cast(events_schema()), folder / EVENTS_FILE)
    last = state.last_date
    meta = {
        "state_version": STATE_VERSION,
        "symbols": sorted(set(state.symbols)),
        "last_date": last.isoformat() if last else None,
        "runs": state.runs[-100:],  # a bounded log
    }
    atomic_write_bytes(folder / META_FILE, json.dumps(meta, indent=1, ensure_ascii=False).encode())


def merge_availability(state: State, listed: Any, relisted_from: dict[str, dt.date]) -> None:
    """Replace each re-listed symbol's rows from its start date with what was listed.

    Parameters
    ----------
    state
        Updated in place.
    listed
        Rows found by this run (:func:`availability_schema`).
    relisted_from
        symbol -> first date this run listed (everything from it on was seen afresh).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    old = state.availability
    if relisted_from and old.num_rows:
        since = pa.array(
            [relisted_from.get(s) for s in old["symbol"].to_pylist()], type=pa.date32()
        )
        stale = pc.and_(pc.is_valid(since), pc.greater_equal(old["date"], since))
        old = old.filter(pc.invert(pc.fill_null(stale, False)))
    state.availability = pa.concat_tables([old, listed.cast(availability_schema())])


def append_events(state: State, events: Any) -> None:
    """Append ``events`` (:func:`events_schema`) to the history; nothing is ever rewritten."""
    import pyarrow as pa

    if events.num_rows:
        state.events = pa.concat_tables([state.events, events.cast(events_schema())])


def first_seen(state: State) -> Any:
    """When each (symbol, date) object first appeared, and whether that time is exact.

    Parameters
    ----------
    state
        A loaded state.

    Returns
    -------
    pyarrow.Table
        ``symbol``, ``date``, ``first_seen`` (the earliest ``appeared`` event time) and
        ``first_seen_exact`` (that event's ``exact``), one row per key that ever appeared,
        sorted by symbol and date. Later replacements or a disappearance and return do
        not move it: it is the object's first appearance. Keys no longer available are
        included; join on the availability table to keep only current ones.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    events = state.events
    appeared = events.filter(pc.equal(events["event"], "appeared"))
    # Earliest first, and on a tie an exact time before a bound; "first" then picks it.
    ordered = appeared.append_column("inexact", pc.invert(appeared["exact"])).sort_by(
        [
            ("symbol", "ascending"),
            ("date", "ascending"),
            ("event_time", "ascending"),
            ("inexact", "ascending"),
        ]
    )
    grouped = ordered.group_by(["symbol", "date"], use_threads=False).aggregate(
        [("event_time", "first"), ("exact", "first")]
    )
    out = pa.table(
        {
            "symbol": grouped["symbol"],
            "date": grouped["date"],
            "first_seen": grouped["event_time_first"],
            "first_seen_exact": grouped["exact_first"],
        }
    )
    return out.sort_by([("symbol", "ascending"), ("date", "ascending")])


def merge_volume(state: State, rows: Any) -> None:
    """Upsert volume rows by (symbol, date); existing volume is never erased."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = rows.cast(volume_schema())
    if rows.num_rows == 0:
        return
    keys = pc.binary_join_element_wise(rows["symbol"], pc.cast(rows["date"], pa.string()), "\x00")
    old = state.volume
    old_keys = pc.binary_join_element_wise(old["symbol"], pc.cast(old["date"], pa.string()), "\x00")
    kept = old.filter(pc.invert(pc.is_in(old_keys, value_set=keys)))
    state.volume = pa.concat_tables([kept, rows])


def seed_from_table(daily_availability: Any, events: Any = None) -> State:
    """A state equivalent to a published release (the incremental base).

    Parameters
    ----------
    daily_availability
        The release's ``daily_availability`` table.
    events
        The release's ``availability_events`` table, or None for a release without one
        (older releases, the rolling layout).

    With ``events``, the history is carried over unchanged (exact flags and event times):
    it becomes the state's :attr:`State.events`, oldest observation first. Each available
    row takes the ETag of its key's latest event when that event describes it (same size
    and Last-Modified), so the first run after seeding compares like with like and adds
    no event for what the history already holds. An available row the history does not
    describe (it should not happen) gets an ``appeared`` event, not exact, appended.

    Without ``events`` a release carries no history, so each available row gets an
    ``appeared`` event at its Last-Modified with ``exact`` false (:func:`derived_events`):
    a replacement before it was published cannot be ruled out. The ETag is unknown (null).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = daily_availability
    available = table.filter(pc.equal(table["available"], True))
    availability = pa.table(
        {
            "symbol": available["symbol"],
            "date": available["date"],
            "file_size_bytes": available["file_size_bytes"],
            "last_modified": available["last_modified"],
            "etag": pa.nulls(available.num_rows, pa.string()),
            "probe_timestamp": available["probe_timestamp"],
        }
    ).cast(availability_schema())
    traded = available.filter(pc.is_valid(available["quote_volume_usdt"]))
    volume = pa.table(
        {
            "symbol": traded["symbol"],
            "date": traded["date"],
            **{c: traded[c] for c in VOLUME_COLUMNS},
            "source": pa.array(["release"] * traded.num_rows, pa.string()),
        }
    ).cast(volume_schema())
    symbols = sorted(set(table["symbol"].to_pylist()))
    if events is None:
        return State(availability, volume, symbols=symbols)
    history = events.select(events_schema().names).cast(events_schema())
    # Oldest observation first, as the collector appended them (a release sorts its rows).
    history = history.sort_by([("observed_at", "ascending"), ("symbol", "ascending"),
                               ("date", "ascending")])  # fmt: skip
    availability, undescribed = _etags_from_history(availability, history)
    if undescribed.num_rows:
        log.warning(
            "%d available rows have no matching event in the release's history: "
            "recorded as appeared, not exact",
            undescribed.num_rows,
        )
        history = pa.concat_tables([history, derived_events(undescribed)])
    return State(availability, volume, symbols=symbols, events=history)


def _etags_from_history(availability: Any, history: Any) -> tuple[Any, Any]:
    """``availability`` with the ETag of each key's latest event, and the rows without one.

    A row is described by its key's latest event when that event is not ``disappeared``
    and has the row's size and Last-Modified.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = ["symbol", "date"]
    ordered = history.append_column("_order", pa.array(range(history.num_rows), pa.int64()))
    ordered = ordered.sort_by([("symbol", "ascending"), ("date", "ascending"),
                               ("observed_at", "ascending"), ("_order", "ascending")])  # fmt: skip
    last = pc.ScalarAggregateOptions(skip_nulls=False)
    latest = ordered.group_by(keys, use_threads=False).aggregate(
        [(c, "last", last) for c in ("event", "file_size_bytes", "last_modified", "etag")]
    )
    present = latest.filter(pc.not_equal(latest["event_last"], "disappeared"))
    joined = availability.join(present.drop_columns(["event_last"]), keys, join_type="left outer")
    described = pc.fill_null(
        pc.and_(
            pc.equal(joined["file_size_bytes"], joined["file_size_bytes_last"]),
            pc.equal(joined["last_modified"], joined["last_modified_last"]),
        ),
        False,
    )
    etag = pc.if_else(described, joined["etag_last"], joined["etag"])
    seeded = joined.set_column(joined.schema.get_field_index("etag"), "etag", etag)
    seeded = seeded.select(availability_schema().names).cast(availability_schema())
    undescribed = seeded.filter(pc.invert(described))
    return seeded, undescribed


def to_daily_availability(state: State, end: dt.date, *, start: str = FIRST_DATE) -> Any:
    """The dense ``daily_availability`` grid (every known symbol x every date) up to ``end``."""
    from intake_bfa import interrupt

    con = interrupt.connect()
    con.register("avail", state.availability)
    con.register("vol", state.volume)
    con.register("syms", _symbols_table(state))
    volume_cols = ", ".join(f"v.{c}" for c in VOLUME_COLUMNS)
    sql = f"""
        WITH days AS (
            SELECT CAST(d AS DATE) AS date FROM range(CAST(? AS DATE), CAST(? AS DATE) + 1,
                                                      INTERVAL 1 DAY) t(d)
        ),
        probe AS (SELECT MAX(probe_timestamp) AS latest FROM avail)
        SELECT days.date, syms.symbol,
               a.symbol IS NOT NULL AS available,
               a.file_size_bytes, a.last_modified,
               ? || syms.symbol || '/1m/' || syms.symbol || '-1m-' ||
                   strftime(days.date, '%Y-%m-%d') || '.zip' AS url,
               CAST(CASE WHEN a.symbol IS NULL THEN 404 ELSE 200 END AS INTEGER) AS status_code,
               COALESCE(a.probe_timestamp, probe.latest) AS probe_timestamp,
               {volume_cols}
        FROM days CROSS JOIN syms CROSS JOIN probe
        LEFT JOIN avail a ON a.symbol = syms.symbol AND a.date = days.date
        LEFT JOIN vol v ON v.symbol = syms.symbol AND v.date = days.date AND a.symbol IS NOT NULL
        ORDER BY days.date, syms.symbol
    """
    return con.sql(sql, params=[start, end.isoformat(), URL_PREFIX]).to_arrow_table()


def _symbols_table(state: State):
    import pyarrow as pa

    names = sorted(set(state.symbols) | set(state.availability["symbol"].to_pylist()))
    return pa.table({"symbol": pa.array(names, pa.string())})
