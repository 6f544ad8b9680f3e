"""Daily volume and OHLC of one symbol, from Binance Vision's 1d klines.

For a day in a complete past month the monthly file
``data/futures/um/monthly/klines/{SYM}/1d/{SYM}-1d-{YYYY-MM}.zip`` (one CSV row per day)
is used, otherwise the daily file ``data/futures/um/daily/klines/{SYM}/1d/{SYM}-1d-{date}.zip``
(one row). Which files exist comes from listing both folders; nothing is probed blindly.

Every row records its ``source``: ``daily:<etag>`` or ``monthly:<etag>``. A day whose
kline is missing gets a placeholder row with null numbers and source ``absent`` (no
file listed) or ``absent:<kind>:<etag>`` (the file has no row for that day), so that a
re-run does not fetch it again: a day is fetched only when it has no row yet, or when
it is re-checked and the file that would now be chosen differs from its ``source``. A
placeholder never replaces a row that has numbers (volume is never erased).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import zipfile
from collections.abc import Iterable
from typing import Any

from intake_bfa.errors import DownloadError
from intake_bfa.producer.s3 import S3Client, S3Object
from intake_bfa.producer.state import State
from intake_bfa.schema import VOLUME_COLUMNS

log = logging.getLogger(__name__)

DAILY_PREFIX = "data/futures/um/daily/klines/{symbol}/1d/"
MONTHLY_PREFIX = "data/futures/um/monthly/klines/{symbol}/1d/"
#: Source of a placeholder row whose day has no 1d file at all.
ABSENT = "absent"
CSV_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
#: state column -> CSV column.
COLUMN_MAP = {
    "quote_volume_usdt": "quote_volume",
    "trade_count": "count",
    "volume_base": "volume",
    "taker_buy_volume_base": "taker_buy_volume",
    "taker_buy_quote_volume_usdt": "taker_buy_quote_volume",
    "open_price": "open",
    "high_price": "high",
    "low_price": "low",
    "close_price": "close",
}
# Epoch milliseconds stay below 1e14 until the year 5138; microseconds of any date
# after 1973 are above it.
_MICROS_FROM = 10**14
_EPOCH = dt.date(1970, 1, 1)


def _month_end(day: dt.date) -> dt.date:
    nxt = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def day_of(open_time: int) -> dt.date:
    """UTC day of a kline ``open_time`` given in epoch milliseconds or microseconds."""
    per_day = 86_400_000_000 if abs(open_time) >= _MICROS_FROM else 86_400_000
    return _EPOCH + dt.timedelta(days=open_time // per_day)


def parse_klines(data: bytes) -> dict[dt.date, dict[str, Any]]:
    """Rows of a 1d klines zip, keyed by UTC day, mapped to the state's volume columns.

    The header row is optional (older files have none): a first row whose first field
    is not a number is taken as the header and columns are then found by name.

    Raises
    ------
    ValueError
        When ``data`` is not a zip holding a CSV file.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ValueError("the zip holds no .csv file")
            text = archive.read(names[0]).decode("utf-8-sig")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise ValueError(f"not a klines zip: {err}") from None
    index = {name: i for i, name in enumerate(CSV_COLUMNS)}
    out: dict[dt.date, dict[str, Any]] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or not "".join(row).strip():
            continue
        first = row[0].strip()
        if n == 0 and not re.fullmatch(r"-?\d+(\.\d+)?", first):
            names = [c.strip().lower() for c in row]
            index = {
                name: names.index(name) if name in names else i
                for i, name in enumerate(CSV_COLUMNS)
            }
            continue
        try:
            values = {
                col: (
                    int(float(row[index[src]])) if col == "trade_count" else float(row[index[src]])
                )
                for col, src in COLUMN_MAP.items()
            }
            out[day_of(int(float(row[index["open_time"]])))] = values
        except (ValueError, IndexError, OverflowError):
            log.debug("skipping unreadable kline row %r", row)
    return out


def _by_date(objects: Iterable[S3Object], folder: str, symbol: str, fmt: str) -> dict:
    pattern = re.compile(re.escape(symbol) + r"-1d-(" + fmt + r")\.zip")
    found = {}
    for obj in objects:
        match = pattern.fullmatch(obj.key[len(folder) :]) if obj.key.startswith(folder) else None
        if match:
            found[match.group(1)] = obj
    return found


def collect_volume(
    client: S3Client,
    symbol: str,
    targets: dict[dt.date, str | None],
    *,
    today: dt.date,
) -> list[dict[str, Any]]:
    """Volume rows for the days of one symbol that need them.

    Parameters
    ----------
    client
        Lists the 1d folders and downloads the files (counted as ``volume_list`` and
        ``volume_get``).
    symbol
        Futures symbol.
    targets
        Day -> the ``source`` of its current volume row (None when it has none). Days
        whose chosen file matches their source are skipped.
    today
        UTC run date: a month is complete when it ended before ``today``.

    Returns
    -------
    list of dict
        Rows with ``symbol``, ``date``, the volume columns and ``source``.

    Raises
    ------
    DownloadError
        When a listing or download fails after retries.
    """
    if not targets:
        return []
    first = min(targets)
    daily_dir = DAILY_PREFIX.format(symbol=symbol)
    listing = client.list(
        daily_dir, start_after=f"{daily_dir}{symbol}-1d-{first}", kind="volume_list"
    )
    daily = _by_date(listing.objects, daily_dir, symbol, r"\d{4}-\d{2}-\d{2}")
    monthly: dict[str, S3Object] = {}
    complete = [d for d in targets if _month_end(d) < today]
    if complete:
        month_dir = MONTHLY_PREFIX.format(symbol=symbol)
        since = f"{month_dir}{symbol}-1d-{min(complete):%Y-%m}"
        listing = client.list(month_dir, start_after=since, kind="volume_list")
        monthly = _by_date(listing.objects, month_dir, symbol, r"\d{4}-\d{2}")

    def chosen(day: dt.date) -> tuple[str, S3Object] | None:
        if _month_end(day) < today and f"{day:%Y-%m}" in monthly:
            return "monthly", monthly[f"{day:%Y-%m}"]
        if day.isoformat() in daily:
            return "daily", daily[day.isoformat()]
        return None

    rows: list[dict[str, Any]] = []
    wanted: dict[dt.date, tuple[str, S3Object]] = {}
    for day, source in sorted(targets.items()):
        pick = chosen(day)
        label = f"{pick[0]}:{pick[1].etag}" if pick else ABSENT
        if source is not None and source in (label, f"{ABSENT}:{label}"):
            continue  # already read from this very file
        if pick is None:
            if source is None or source.startswith(ABSENT):
                rows.append(_row(symbol, day, None, ABSENT))
        else:
            wanted[day] = pick

    cache: dict[str, dict[dt.date, dict[str, Any]] | None] = {}
    for day, (kind, obj) in wanted.items():
        values = _fetch(client, obj, cache).get(day)
        label = f"{kind}:{obj.etag}"
        if values is None and kind == "monthly" and day.isoformat() in daily:
            # The monthly file lacks the day: the daily file is the reference.
            fallback = daily[day.isoformat()]
            values, label = _fetch(client, fallback, cache).get(day), f"daily:{fallback.etag}"
        if values is not None:
            rows.append(_row(symbol, day, values, label))
        elif targets[day] is None or targets[day].startswith(ABSENT):
            rows.append(_row(symbol, day, None, f"{ABSENT}:{label}"))
    return rows


def _fetch(client: S3Client, obj: S3Object, cache: dict) -> dict[dt.date, dict[str, Any]]:
    if obj.key not in cache:
        try:
            cache[obj.key] = parse_klines(client.get(obj.key, kind="volume_get"))
        except DownloadError as err:
            if err.context.get("status") != 404:
                raise
            log.info("%s vanished after it was listed", obj.key)
            cache[obj.key] = {}
        except ValueError as err:
            log.warning("%s is unreadable (%s); its days get no volume", obj.key, err)
            cache[obj.key] = {}
    return cache[obj.key]


def _row(symbol: str, day: dt.date, values: dict | None, source: str) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": symbol, "date": day}
    row.update({c: (values or {}).get(c) for c in VOLUME_COLUMNS})
    row["source"] = source
    return row


def rows_to_table(rows: list[dict[str, Any]]):
    """Arrow table with :func:`~intake_bfa.producer.state.volume_schema` from row dicts."""
    import pyarrow as pa

    from intake_bfa.producer.state import volume_schema

    schema = volume_schema()
    return pa.table({name: [r[name] for r in rows] for name in schema.names}, schema=schema)


class VolumeTargets:
    """Picks the days of each symbol whose volume is fetched or re-checked.

    A day is a target when it is available and has no volume row, or when it lies in
    the re-listed window (every day on a full run), where its source is compared with
    the file that would be chosen now.

    Parameters
    ----------
    state
        The state before this run.
    since
        Symbol -> first date its availability is re-listed from.
    full
        Re-check every day, not only the window.
    """

    def __init__(self, state: State, since: dict[str, dt.date], full: bool) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        avail, vol = state.availability, state.volume
        lacking = avail.select(["symbol", "date"]).join(
            vol.select(["symbol", "date"]), ["symbol", "date"], join_type="left anti"
        )
        self.lacking: dict[str, list[dt.date]] = {}
        for symbol, day in zip(
            lacking["symbol"].to_pylist(), lacking["date"].to_pylist(), strict=True
        ):
            self.lacking.setdefault(symbol, []).append(day)
        if not full and vol.num_rows:
            start = pa.array([since.get(s) for s in vol["symbol"].to_pylist()], pa.date32())
            vol = vol.filter(pc.fill_null(pc.greater_equal(vol["date"], start), False))
        self.sources: dict[tuple[str, dt.date], str | None] = dict(
            zip(
                zip(vol["symbol"].to_pylist(), vol["date"].to_pylist(), strict=True),
                vol["source"].to_pylist(),
                strict=True,
            )
        )

    def targets(
        self, symbol: str, since: dt.date, listed: list[dt.date]
    ) -> dict[dt.date, str | None]:
        """Day -> current source (None: no row) for ``symbol``, given the days listed
        from ``since`` on by this run."""
        out = {d: None for d in self.lacking.get(symbol, ()) if d < since}
        for day in listed:
            out[day] = self.sources.get((symbol, day))
        return out


__all__ = ["ABSENT", "VolumeTargets", "collect_volume", "day_of", "parse_klines", "rows_to_table"]
