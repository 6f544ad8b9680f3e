"""``bfa collect``: list Binance Vision and update the state folder.

One listing per symbol replaces the public project's HEAD per symbol per day:
``data/futures/um/daily/klines/{SYM}/1m/`` holds one ``{SYM}-1m-{date}.zip`` per day
(plus a ``.CHECKSUM`` sibling), so listing it tells which days exist, with size,
ETag and Last-Modified, 1000 keys per request. A daily run lists each known symbol
only from ``last date - recheck_days`` (``start-after``), about one request per
symbol, and replaces that window in the state: objects that vanished disappear,
late back-fills and replaced objects are picked up. Since the window is re-listed
whole, an incremental run ends with the state a full rebuild would produce, as long
as nothing changed before the window.

Changes before the window (a back-fill of last year, a file replaced months later) are
caught by a rotating full re-listing: every run also lists one slice of the symbols from
their first day, a fixed slice per day of a ``full_every``-day cycle (7 by default), so
every symbol is listed whole at least once every ``full_every`` days. Such a change is
therefore published at most ``full_every - 1`` days after the run that could first see it,
for a few extra requests per run (``benchmarks/bench_collect.py``).

Every run also appends what it saw change to the observation history
(``events.parquet``, :func:`intake_bfa.producer.state.events_schema`), per object key:
a key not in the re-listed window before is ``appeared``, one with a new size, ETag or
Last-Modified is ``replaced`` (at its new Last-Modified, exactly), one no longer listed is
``disappeared`` (at the time of the listing that missed it: only a bound, S3 keeps no
trace of a deletion). Keys of symbols that failed, and dates a run did not re-list, get
no event, and a run that sees no change appends nothing.

When an appearance is exact. S3 keeps only the Last-Modified of an object's latest
upload, so an appearance at Last-Modified is exact only when no earlier upload of that
key can have been replaced unseen. We take it as exact when either

* we saw the key arrive: an earlier listing that covered its date did not have it. That
  holds for every symbol this collector has listed before (it has rows with an ETag,
  which only our listings record): a symbol's first listing covers every date, later
  ones run open-ended from their start date. It also holds for a symbol folder that a
  previous run's discovery did not find: none of its keys existed then; or
* it is the first time we look and the Last-Modified lies in the normal upload window,
  before ``D + 2`` 00:00 UTC for day ``D`` (Binance Vision uploads day ``D`` around
  08:30 UTC on ``D + 1``): a file for ``D`` cannot exist before ``D + 1``, and a
  replacement within a day of the first upload is implausible.

Otherwise (first looked at, with a later Last-Modified: the first run, a state seeded from
a release, a symbol whose listings all failed) a late back-fill and an early upload
replaced later look the same from S3, so ``exact`` is false and the time only an upper
bound. Between two listings that cover a date, a key uploaded and then replaced is seen
once, at its latest upload: the rule assumes that does not happen within one re-check
interval.

A symbol whose listing fails keeps its previous rows; when more than
``error_threshold`` of the symbols fail, the run raises and saves nothing, so a
broken run is never published.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import BfaError, CollectError, ConfigError
from intake_bfa.producer.s3 import S3Client
from intake_bfa.producer.state import (
    State,
    append_events,
    availability_schema,
    events_schema,
    load_state,
    merge_availability,
    merge_volume,
    save_state,
)
from intake_bfa.producer.volume import VolumeTargets, collect_volume, rows_to_table
from intake_bfa.schema import FIRST_DATE

log = logging.getLogger(__name__)

KLINES_PREFIX = "data/futures/um/daily/klines/"
EARLIEST = dt.date.fromisoformat(FIRST_DATE)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class CollectReport:
    """What a collect run did.

    Attributes
    ----------
    today, full, started
        UTC run date, whether every symbol was listed from the start, start time (ISO).
    symbols_discovered, symbols_listed, symbols_new
        Symbol folders found; listed successfully; listed in full for being new.
    symbols_full_slice
        Known symbols listed in full because today is their day of the rotation.
    symbols_failed
        Symbol -> reason, for symbols whose listing or volume failed.
    symbols_vanished
        Symbols in the previous state whose folder is gone (their rows are dropped).
    keys_seen
        Objects returned by the 1m listings (``.CHECKSUM`` siblings included).
    rows_added, rows_removed, rows_changed
        Availability rows new, gone, or with a new size/ETag/Last-Modified.
    events_added, events_exact
        Events appended to the observation history; of them, those with an exact time.
    volume_rows, volume_absent
        Volume rows written with numbers; placeholder rows for days without a kline.
    requests, retries
        HTTP requests by kind (``discover``, ``list``, ``volume_list``, ``volume_get``),
        and how many of them failed and were retried.
    error_rate
        Failed symbols / discovered symbols.
    elapsed
        Seconds.
    saved
        Whether the state folder was written.
    """

    today: dt.date
    full: bool
    started: str
    symbols_discovered: int = 0
    symbols_listed: int = 0
    symbols_new: int = 0
    symbols_full_slice: int = 0
    symbols_failed: dict[str, str] = field(default_factory=dict)
    symbols_vanished: list[str] = field(default_factory=list)
    keys_seen: int = 0
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0
    events_added: int = 0
    events_exact: int = 0
    volume_rows: int = 0
    volume_absent: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    elapsed: float = 0.0
    saved: bool = False

    @property
    def total_requests(self) -> int:
        """All HTTP requests of the run."""
        return sum(self.requests.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the run log entry)."""
        out = asdict(self)
        out["today"] = self.today.isoformat()
        return out


@dataclass
class _Plan:
    symbol: str
    since: dt.date  # first date this run lists (everything from it on is seen afresh)
    new: bool


@dataclass
class _Result:
    symbol: str
    table: Any = None
    keys: int = 0
    listed_at: dt.datetime | None = None  # when the listing ended (naive UTC)
    volume: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def discover(client: S3Client) -> list[str]:
    """Every symbol folder under :data:`KLINES_PREFIX`, in S3 order (paged by 1000)."""
    listing = client.list(KLINES_PREFIX, delimiter="/", kind="discover")
    names = [p[len(KLINES_PREFIX) :].rstrip("/") for p in listing.prefixes]
    return [n for n in names if n and "/" not in n]


def due_for_full_listing(symbol: str, today: dt.date, full_every: int) -> bool:
    """True when ``today`` is ``symbol``'s day of the ``full_every``-day rotation.

    Each symbol has a fixed slot (a CRC-32 of its name, stable across runs, machines and
    Python versions, unlike ``hash``), so over any ``full_every`` consecutive days every
    symbol comes up exactly once. ``full_every <= 0`` turns the rotation off.
    """
    if full_every <= 0:
        return False
    return zlib.crc32(symbol.encode()) % full_every == today.toordinal() % full_every


def list_symbol(client: S3Client, symbol: str, since: dt.date) -> tuple[Any, int]:
    """Availability rows of ``symbol`` from ``since`` on, and how many keys were seen.

    Keys other than ``{SYM}-1m-YYYY-MM-DD.zip`` (``.CHECKSUM`` siblings, strays) and
    dates before :data:`EARLIEST` or ``since`` are ignored.
    """
    import pyarrow as pa

    folder = f"{KLINES_PREFIX}{symbol}/1m/"
    start = None if since <= EARLIEST else f"{folder}{symbol}-1m-{since.isoformat()}"
    stem = f"{symbol}-1m-"
    cols: dict[str, list] = {name: [] for name in availability_schema().names}
    keys = 0
    for page in client.iter_pages(folder, start_after=start, kind="list"):
        keys += len(page.objects)
        for obj in page.objects:
            name = obj.key[len(folder) :] if obj.key.startswith(folder) else ""
            day = name[len(stem) : -4] if name.startswith(stem) and name.endswith(".zip") else ""
            if not _DAY.fullmatch(day):
                continue
            try:
                date = dt.date.fromisoformat(day)
            except ValueError:
                continue
            if date < max(since, EARLIEST):
                continue  # a v1 endpoint may have ignored start-after
            cols["symbol"].append(symbol)
            cols["date"].append(date)
            cols["file_size_bytes"].append(obj.size)
            cols["last_modified"].append(obj.last_modified)
            cols["etag"].append(obj.etag)
            cols["probe_timestamp"].append(page.listed_at)
    return pa.table(cols, schema=availability_schema()), keys


def collect(
    state_dir: str | Path,
    *,
    full: bool = False,
    recheck_days: int = 20,
    full_every: int = 7,
    workers: int = 8,
    volume: bool = False,
    error_threshold: float = 0.05,
    endpoint: str | None = None,
    bucket: str | None = None,
    data_url: str | None = None,
    settings: Settings | None = None,
    today: dt.date | None = None,
) -> CollectReport:
    """List Binance Vision and update the state folder ``state_dir``.

    Parameters
    ----------
    state_dir
        State folder (see :mod:`intake_bfa.producer.state`); created if missing.
    full
        List every symbol from the first day (and re-check all volume), not only the
        trailing window.
    recheck_days
        Days before each symbol's last known date that are listed again.
    full_every
        Rotation length in days: each run also lists ``1 / full_every`` of the known
        symbols from their first day (see :func:`due_for_full_listing`); 0 turns it off.
    workers
        Symbols listed concurrently.
    volume
        Also collect daily volume and OHLC from the 1d klines (see
        :mod:`intake_bfa.producer.volume`).
    error_threshold
        Largest tolerated fraction of failed symbols; above it the run raises.
    endpoint, bucket, data_url
        S3 endpoint, bucket and download base; else ``BFA_S3_ENDPOINT``,
        ``BFA_S3_BUCKET``, ``BFA_DATA_URL``; else Binance Vision.
    settings
        Timeouts and retry budget; default :func:`intake_bfa.config.get_settings`.
    today
        UTC run date (decides which months are complete); default: now.

    Returns
    -------
    CollectReport
        Also appended to the state's run log.

    Raises
    ------
    CollectError
        When discovery fails, finds nothing, or too many symbols fail or vanish; the
        state folder is then left untouched. ``.report`` holds the report.
    ConfigError
        For invalid arguments or ``BFA_*`` values.
    """
    started = time.perf_counter()
    if recheck_days < 0 or full_every < 0 or workers < 1 or not 0 <= error_threshold <= 1:
        raise ConfigError(
            "collect needs recheck_days >= 0, full_every >= 0, workers >= 1 and "
            f"0 <= error_threshold <= 1 (got {recheck_days}, {full_every}, {workers}, "
            f"{error_threshold})",
            variable="collect",
            value=(recheck_days, full_every, workers, error_threshold),
        )
    settings = settings or get_settings()
    if settings.offline:
        raise ConfigError(
            "BFA_OFFLINE is set but collect must list Binance Vision; unset BFA_OFFLINE",
            variable="BFA_OFFLINE",
            value="1",
        )
    client = S3Client(endpoint, bucket, data_url, settings=settings)
    today = today or dt.datetime.now(dt.UTC).date()
    report = CollectReport(today=today, full=full, started=dt.datetime.now(dt.UTC).isoformat())
    state = load_state(Path(state_dir))

    def finish() -> None:
        report.requests, report.retries = client.requests, client.retries
        report.elapsed = round(time.perf_counter() - started, 3)

    try:
        symbols = discover(client)
        discovered_at = _utc_now()
    except BfaError as err:
        finish()
        raise CollectError(f"could not discover symbols: {err}", report=report) from err
    report.symbols_discovered = len(symbols)
    if not symbols:
        finish()
        raise CollectError(
            f"no symbol folders under {client.endpoint}/{client.bucket}/{KLINES_PREFIX}; "
            "check BFA_S3_ENDPOINT and BFA_S3_BUCKET",
            report=report,
        )
    known = set(state.symbols) | set(_unique(state.availability["symbol"]))
    report.symbols_vanished = sorted(known - set(symbols))
    if len(report.symbols_vanished) > error_threshold * max(1, len(known)):
        finish()
        raise CollectError(
            f"{len(report.symbols_vanished)} of {len(known)} known symbols are no longer "
            f"listed (e.g. {report.symbols_vanished[:5]}); refusing to drop them",
            report=report,
        )

    last = state.last_dates()
    plans = []
    for symbol in symbols:
        if full or symbol not in last:
            plans.append(_Plan(symbol, EARLIEST, new=symbol not in last))
        elif due_for_full_listing(symbol, today, full_every):
            plans.append(_Plan(symbol, EARLIEST, new=False))
            report.symbols_full_slice += 1
        else:
            since = max(EARLIEST, last[symbol] - dt.timedelta(days=recheck_days))
            plans.append(_Plan(symbol, since, new=False))
    context = VolumeTargets(state, {p.symbol: p.since for p in plans}, full) if volume else None

    def work(plan: _Plan) -> _Result:
        result = _Result(plan.symbol)
        try:
            result.table, result.keys = list_symbol(client, plan.symbol, plan.since)
            # A key missing from the listing was gone by the time it ended.
            result.listed_at = _utc_now()
            if context is not None:
                targets = context.targets(plan.symbol, plan.since, result.table["date"].to_pylist())
                result.volume = collect_volume(client, plan.symbol, targets, today=today)
        except Exception as err:  # one symbol must not sink the others
            result.error = f"{type(err).__name__}: {err}"
            log.warning("symbol %s failed: %s", plan.symbol, result.error)
        return result

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bfa-collect") as pool:
        results = list(pool.map(work, plans))

    report.symbols_failed = {r.symbol: r.error for r in results if r.error}
    report.error_rate = len(report.symbols_failed) / len(symbols)
    finish()
    if report.error_rate > error_threshold:
        raise CollectError(
            f"{len(report.symbols_failed)} of {len(symbols)} symbols failed "
            f"({report.error_rate:.1%} > {error_threshold:.1%}); the state is unchanged. "
            f"First failures: {dict(list(report.symbols_failed.items())[:3])}",
            report=report,
        )

    done = [r for r in results if not r.error]
    since = {p.symbol: p.since for p in plans if p.symbol not in report.symbols_failed}
    since.update({s: EARLIEST for s in report.symbols_vanished})
    report.symbols_listed = len(done)
    report.symbols_new = sum(p.new for p in plans if p.symbol in since)
    report.keys_seen = sum(r.keys for r in done)
    # When each re-listed symbol was seen without its vanished keys; a whole folder gone
    # was seen so by discovery.
    gone_at = {s: discovered_at for s in report.symbols_vanished}
    gone_at.update({r.symbol: r.listed_at for r in done})
    _merge(state, done, since, gone_at, report)
    state.symbols = sorted(symbols)
    finish()
    state.runs.append(report.to_dict() | {"saved": True})
    save_state(Path(state_dir), state)
    report.saved = True
    finish()
    log.info(
        "collect: %d symbols listed, %d failed, +%d/-%d/~%d rows, %d requests in %.1f s",
        report.symbols_listed,
        len(report.symbols_failed),
        report.rows_added,
        report.rows_removed,
        report.rows_changed,
        report.total_requests,
        report.elapsed,
    )
    return report


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _unique(column) -> list:
    import pyarrow.compute as pc

    return pc.unique(column).to_pylist()


def _merge(
    state: State,
    done: list[_Result],
    since: dict[str, dt.date],
    gone_at: dict[str, dt.datetime],
    report: CollectReport,
):
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = availability_schema()
    listed = pa.concat_tables([r.table for r in done]) if done else schema.empty_table()
    old = state.availability
    if old.num_rows and since:
        start = pa.array([since.get(s) for s in old["symbol"].to_pylist()], pa.date32())
        relisted = pc.fill_null(
            pc.and_(pc.is_valid(start), pc.greater_equal(old["date"], start)), False
        )
        before = old.filter(relisted)
    else:
        before = schema.empty_table()
    keys = ["symbol", "date"]
    added = listed.join(before.select(keys), keys, join_type="left anti")
    removed = before.join(listed.select(keys), keys, join_type="left anti")
    report.rows_added, report.rows_removed = added.num_rows, removed.num_rows
    both = listed.join(before, keys, right_suffix="_old", join_type="inner")
    changed = pc.or_(
        pc.not_equal(both["file_size_bytes"], both["file_size_bytes_old"]),
        pc.not_equal(both["last_modified"], both["last_modified_old"]),
    )
    # Rows seeded from a release have no ETag: only a known ETag can differ.
    changed = pc.or_(
        pc.fill_null(changed, True),
        pc.fill_null(pc.not_equal(both["etag"], both["etag_old"]), False),
    )
    report.rows_changed = int(pc.sum(changed).as_py() or 0)
    events = _events(state, added, both.filter(changed), removed, gone_at)
    report.events_added = events.num_rows
    report.events_exact = int(pc.sum(events["exact"]).as_py() or 0)
    merge_availability(state, listed, since)
    append_events(state, events)

    rows = [row for r in done for row in r.volume]
    report.volume_rows = sum(row["quote_volume_usdt"] is not None for row in rows)
    report.volume_absent = len(rows) - report.volume_rows
    if rows:
        merge_volume(state, rows_to_table(rows))


def _covered(state: State) -> tuple[set[str], set[str] | None]:
    """Symbols an earlier listing covered whole, and every symbol known before this run.

    The first set: symbols with a row carrying an ETag (only our listings record one; a
    state seeded from a release has one only where the release's history gives it), whose
    first listing covered every date. The
    second is None when no run of ours has discovered the folders yet (an empty or
    seeded state): then a symbol missing from it may simply not have been looked for.
    """
    import pyarrow.compute as pc

    old = state.availability
    listed = set(_unique(old.filter(pc.is_valid(old["etag"]))["symbol"]))
    if not state.runs:
        return listed, None
    return listed, set(state.symbols) | set(_unique(old["symbol"]))


def _events(state: State, added: Any, replaced: Any, removed: Any, gone_at: dict) -> Any:
    """This run's history rows, from the availability rows it added, changed and removed.

    ``replaced`` is the inner join of listed and previous rows (previous ones suffixed
    ``_old``). See the module docstring for when an appearance is exact.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    listed_before, known = _covered(state)
    symbols = added["symbol"].to_pylist()
    seen_arrive = pa.array(
        [s in listed_before or (known is not None and s not in known) for s in symbols],
        pa.bool_(),
    )
    window_end = pc.add(
        pc.cast(added["date"], pa.timestamp("us")),
        pa.scalar(dt.timedelta(days=2), pa.duration("us")),
    )
    in_window = pc.fill_null(pc.less(added["last_modified"], window_end), False)

    def rows(table: Any, event: str, time: Any, exact: Any, observed: Any) -> Any:
        n = table.num_rows
        return pa.table(
            {
                "symbol": table["symbol"],
                "date": table["date"],
                "event": pa.array([event] * n, pa.string()),
                "event_time": time,
                "exact": exact,
                "file_size_bytes": table["file_size_bytes"],
                "etag": table["etag"],
                "last_modified": table["last_modified"],
                "observed_at": observed,
            },
            schema=events_schema(),
        )

    gone = pa.array([gone_at[s] for s in removed["symbol"].to_pylist()], pa.timestamp("us"))
    events = pa.concat_tables(
        [
            rows(
                added,
                "appeared",
                added["last_modified"],
                pc.or_(seen_arrive, in_window),
                added["probe_timestamp"],
            ),
            rows(
                replaced,
                "replaced",
                replaced["last_modified"],
                pa.array([True] * replaced.num_rows, pa.bool_()),
                replaced["probe_timestamp"],
            ),
            rows(
                removed,
                "disappeared",
                gone,
                pa.array([False] * removed.num_rows, pa.bool_()),
                gone,
            ),
        ]
    )
    return events.sort_by([("symbol", "ascending"), ("date", "ascending")])


__all__ = [
    "KLINES_PREFIX",
    "CollectReport",
    "collect",
    "discover",
    "due_for_full_listing",
    "list_symbol",
]
