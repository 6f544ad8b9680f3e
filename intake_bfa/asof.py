"""Point-in-time ("as of") answers: ``daily_availability`` as it could have been known.

A release records when each file was seen: ``availability_events`` (the collector's
history: appeared, replaced, disappeared, each with its ``event_time``) and, on every
available row, ``first_seen``. From those, this module rebuilds ``daily_availability`` as it
stood at a past instant, or, in the *publication-lag* mode, each day ``D`` as it stood at a
fixed time after its end (``as_of="D+1T09:00Z"``: what a daily pipeline running at 09:00 UTC
the next day would have seen).

The rule, per (symbol, date): the last event with ``event_time <= cutoff`` decides.
``appeared``/``replaced``: available, with that event's size and Last-Modified;
``disappeared`` or no event yet: not available. Cutoff = the instant, or ``date + 1 day +
lag``. With a fixed instant, only the days that had ended by then are kept (a later day's
file cannot have existed). An available row without any event (or every row of the public
project's rolling layout, which keeps no history) counts from its ``last_modified``: a file
replaced since counts from its replacement, so those answers are conservative (a file can
only look later than it was, never earlier), and a file deleted since is invisible.

Only the version's volumes are known (the figures of the file as it is now); they are shown
on the rows available as of the cutoff, null elsewhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intake_bfa.derive import first_seen_ctes
from intake_bfa.errors import QueryError
from intake_bfa.filters import quote_identifier
from intake_bfa.schema import DAILY_AVAILABILITY_COLUMNS, VOLUME_COLUMNS

log = logging.getLogger(__name__)

__all__ = ["ROLLING_WARNING", "AsOf", "as_of_sql", "parse_as_of", "warn_rolling"]

#: The longest publication lag accepted (after the end of the day).
MAX_LAG = dt.timedelta(days=31)

#: Logged once per process when as-of answers come from a layout without event history.
ROLLING_WARNING = (
    "as-of answers on the rolling layout come from last_modified: a replaced file counts "
    "from its replacement and a deleted file is not seen at all, so answers are conservative"
)

_LAG_FORM = re.compile(
    r"D\+(?P<days>[0-9]{1,2})"
    r"(?:T(?P<h>[0-9]{2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2}))?(?:Z|\+00:?00)?)?",
    re.IGNORECASE,
)
_HHMM = re.compile(r"(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2}))?Z?", re.IGNORECASE)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HINT = (
    "use an ISO instant such as 2024-03-05T09:00Z (naive = UTC), a date (its 00:00 UTC), "
    "or D+1T09:00Z for each day as known at 09:00 UTC the next day"
)


@dataclass(frozen=True)
class AsOf:
    """When answers are known: a fixed instant, or a lag after each day's end.

    Attributes
    ----------
    instant : datetime.datetime or None
        A fixed UTC instant (naive), for every row.
    lag : datetime.timedelta or None
        Publication-lag mode: row ``date`` is known as of ``date + 1 day + lag``.
    """

    instant: dt.datetime | None = None
    lag: dt.timedelta | None = None

    def __str__(self) -> str:
        if self.instant is not None:
            text = self.instant.isoformat(timespec="seconds")
            return (text[:-3] if text.endswith(":00") else text) + "Z"
        assert self.lag is not None
        days, rest = divmod(int(self.lag.total_seconds()), 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        clock = f"{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
        return f"D+{days + 1}T{clock}Z"

    @property
    def last_day(self) -> dt.date | None:
        """The last day that had ended at the instant (None in publication-lag mode)."""
        if self.instant is None:
            return None
        return (self.instant - dt.timedelta(days=1)).date()

    def cutoff(self, day: dt.date) -> dt.datetime:
        """The instant as of which row ``day`` is answered (naive UTC)."""
        if self.instant is not None:
            return self.instant
        assert self.lag is not None
        return dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1) + self.lag

    def params(self) -> list[Any]:
        """The values bound by :func:`as_of_sql`'s first two placeholders."""
        return [self.instant, self.lag]


def _error(value: Any, why: str, argument: str = "as_of") -> QueryError:
    return QueryError(f"{argument}={value!r} {why}; {_HINT}", argument=argument, value=str(value))


def _clock(match: re.Match, value: Any, argument: str) -> dt.timedelta:
    h, m, s = int(match["h"] or 0), int(match["m"] or 0), int(match["s"] or 0)
    if h > 23 or m > 59 or s > 59:
        raise _error(value, "is not a time of day", argument)
    return dt.timedelta(hours=h, minutes=m, seconds=s)


def _lag(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        lag = value
    elif isinstance(value, str) and (match := _HHMM.fullmatch(value.strip())):
        lag = _clock(match, value, "lag")
    elif isinstance(value, str) and (match := _LAG_FORM.fullmatch(value.strip())):
        lag = _lag_form(match, value, "lag")
    else:
        raise _error(value, "is not a lag; give HH:MM (UTC, the next day) or a timedelta", "lag")
    if lag < dt.timedelta(0) or lag > MAX_LAG:
        raise _error(value, f"must be between 0 and {MAX_LAG.days} days after the day", "lag")
    return lag


def _lag_form(match: re.Match, value: Any, argument: str) -> dt.timedelta:
    days = int(match["days"])
    if days < 1:
        raise _error(value, "must be D+1 or later (day D is not over before D+1)", argument)
    return dt.timedelta(days=days - 1) + _clock(match, value, argument)


def _instant(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text[:4].isdigit():
            raise _error(value, "is not an ISO date or instant")
        try:
            if _DATE.fullmatch(text):
                moment = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
            else:
                moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise _error(value, "is not an ISO date or instant") from None
    else:
        raise _error(value, "is not a date, instant or D+1T09:00Z")
    try:
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise _error(value, "is out of range") from None
    return moment


def parse_as_of(as_of: Any = None, lag: Any = None) -> AsOf | None:
    """The :class:`AsOf` for ``as_of`` and/or ``lag``; None when both are None.

    Parameters
    ----------
    as_of
        A UTC instant: ``datetime`` (naive = UTC) or ISO text (``2024-03-05T09:00Z``,
        ``2024-03-05T10:00+01:00``, ``2024-03-05 09:00``); a ``date`` or ``YYYY-MM-DD``
        means its 00:00 UTC. Or the publication-lag form ``"D+1T09:00Z"``: each day
        ``D`` as known at 09:00 UTC on ``D+1`` (``D+2...`` for longer lags).
    lag
        Publication-lag mode without ``as_of``: ``"09:00"`` (= ``"D+1T09:00Z"``) or a
        ``timedelta`` after the end of each day (at most :data:`MAX_LAG`).

    Returns
    -------
    AsOf or None

    Raises
    ------
    QueryError
        For anything else, or for both a fixed instant and a lag.
    """
    if as_of is None and lag is None:
        return None
    if isinstance(as_of, bool) or isinstance(lag, bool):
        raise _error(as_of if isinstance(as_of, bool) else lag, "is not a date or lag")
    if isinstance(as_of, str) and (match := _LAG_FORM.fullmatch(as_of.strip())):
        if lag is not None:
            raise QueryError("give the lag once: as_of='D+1T09:00Z' or lag='09:00', not both")
        return AsOf(lag=_lag_form(match, as_of, "as_of"))
    if lag is not None:
        if as_of is not None:
            raise QueryError(
                "give either a fixed as_of instant or a publication lag, not both",
                as_of=str(as_of),
                lag=str(lag),
            )
        return AsOf(lag=_lag(lag))
    return AsOf(instant=_instant(as_of))


_warned = False


def warn_rolling() -> None:
    """Log :data:`ROLLING_WARNING` (once per process)."""
    global _warned
    if not _warned:
        log.warning(ROLLING_WARNING)
        _warned = True


_KIND_ORDER = "CASE h.event WHEN 'disappeared' THEN 0 WHEN 'replaced' THEN 1 ELSE 2 END"
_EVENT_COLUMNS = (
    "symbol, date, event, event_time, exact, file_size_bytes, last_modified, observed_at"
)
_EVENTS_FROM_FILE = f"ev AS (SELECT {_EVENT_COLUMNS} FROM read_parquet(?))"
_NO_EVENTS = f"ev AS (SELECT {_EVENT_COLUMNS} FROM history_columns WHERE false)"


def _output_columns() -> str:
    """The select list: every ``daily_availability`` column, in order, as of the cutoff."""
    computed = {
        "available": "COALESCE(l.event <> 'disappeared', false)",
        "file_size_bytes": "CASE WHEN {up} THEN l.file_size_bytes END",
        "last_modified": "CASE WHEN {up} THEN l.last_modified END",
        "status_code": "CAST(CASE WHEN {up} THEN 200 ELSE 404 END AS INTEGER)",
        "first_seen": "CASE WHEN {up} THEN COALESCE(f.seen, l.event_time) END",
        "first_seen_exact": "CASE WHEN {up} THEN COALESCE(f.seen IS NOT NULL AND f.seen_exact, "
        "false) END",
    }
    up = computed["available"]
    out = []
    for name in DAILY_AVAILABILITY_COLUMNS:
        column = quote_identifier(name)
        if name in computed:
            expr = computed[name].format(up=up)
        elif name in VOLUME_COLUMNS:
            expr = f"CASE WHEN {up} THEN r.{column} END"
        else:
            expr = f"r.{column}"
        out.append(f"{expr} AS {column}")
    return ",\n       ".join(out)


_AS_OF_TEMPLATE = """
WITH cut AS (SELECT CAST(? AS TIMESTAMP) AS instant, CAST(? AS INTERVAL) AS lag),
rows AS (
    SELECT d.*,
           CASE WHEN cut.lag IS NULL THEN cut.instant
                ELSE CAST(d.date AS TIMESTAMP) + INTERVAL 1 DAY + cut.lag END AS _cutoff
    FROM read_parquet(?) AS d, cut
    WHERE cut.lag IS NOT NULL OR CAST(d.date AS TIMESTAMP) + INTERVAL 1 DAY <= cut.instant
),
history_columns AS (
    SELECT symbol, date, 'appeared' AS event, CAST(last_modified AS TIMESTAMP) AS event_time,
           false AS exact, file_size_bytes, CAST(last_modified AS TIMESTAMP) AS last_modified,
           CAST(NULL AS TIMESTAMP) AS observed_at
    FROM rows WHERE available
),
{events},
history AS (
    SELECT * FROM ev
    UNION ALL
    SELECT * FROM history_columns AS r
    WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.symbol = r.symbol AND ev.date = r.date)
),
known AS (
    SELECT h.* FROM history AS h JOIN rows AS r ON r.symbol = h.symbol AND r.date = h.date
    WHERE h.event_time <= r._cutoff
),
l AS (
    SELECT h.symbol, h.date, h.event, h.event_time, h.file_size_bytes, h.last_modified
    FROM known AS h
    QUALIFY row_number() OVER (
        PARTITION BY h.symbol, h.date
        ORDER BY h.event_time DESC, h.observed_at DESC NULLS LAST, {kind_order}
    ) = 1
),
{first_seen}
SELECT {columns}
FROM rows AS r
LEFT JOIN l ON l.symbol = r.symbol AND l.date = r.date
LEFT JOIN f ON f.symbol = r.symbol AND f.date = r.date
"""

_COLUMNS = _output_columns()
#: First appearances known by the cutoff: the release build's rule, on the known events.
_FIRST_SEEN = first_seen_ctes("known", "f")
#: The as-of ``daily_availability`` from the daily file and the events file (4 parameters:
#: instant, lag, daily path, events path).
AS_OF_EVENTS_SQL = _AS_OF_TEMPLATE.format(
    events=_EVENTS_FROM_FILE, kind_order=_KIND_ORDER, columns=_COLUMNS, first_seen=_FIRST_SEEN
)
#: The same without an events file (3 parameters): every file counts from its Last-Modified.
AS_OF_ROLLING_SQL = _AS_OF_TEMPLATE.format(
    events=_NO_EVENTS, kind_order=_KIND_ORDER, columns=_COLUMNS, first_seen=_FIRST_SEEN
)


def as_of_sql(spec: AsOf, daily: Path, events: Path | None) -> tuple[str, list[Any]]:
    """A ``SELECT`` of ``daily_availability`` as of ``spec``, and the values to bind.

    Parameters
    ----------
    spec
        When (see :func:`parse_as_of`).
    daily
        The version's verified ``daily_availability`` Parquet file.
    events
        Its ``availability_events`` Parquet file, or None when the version has none (the
        rolling layout): :data:`ROLLING_WARNING` is logged once and every available file
        counts from its ``last_modified``.

    Returns
    -------
    tuple of (str, list)
        The SQL (its rows in no particular order; the same columns as the dataset) and
        its parameters.
    """
    if events is None:
        warn_rolling()
        return AS_OF_ROLLING_SQL, [*spec.params(), str(daily)]
    return AS_OF_EVENTS_SQL, [*spec.params(), str(daily), str(events)]


#: The events known as of the cutoff (3 parameters: instant, lag, events path).
AS_OF_EVENTS_HISTORY_SQL = """
WITH cut AS (SELECT CAST(? AS TIMESTAMP) AS instant, CAST(? AS INTERVAL) AS lag)
SELECT e.* FROM read_parquet(?) AS e, cut
WHERE e.event_time <= CASE WHEN cut.lag IS NULL THEN cut.instant
                           ELSE CAST(e.date AS TIMESTAMP) + INTERVAL 1 DAY + cut.lag END
"""

#: The datasets that have an as-of form: ``daily_availability`` from the events, and the
#: tables computed from it exactly as a release computes them.
AS_OF_DATASETS = ("daily_availability", "symbols", "volume_rankings", "availability_events")


def install(con: Any, spec: AsOf, files: dict[str, Path], names: Any) -> list[str]:
    """Create the as-of tables ``names`` (of :data:`AS_OF_DATASETS`) on ``con``.

    ``daily_availability`` comes from :func:`as_of_sql`; ``symbols`` and ``volume_rankings``
    are computed from it with the SQL a release uses (:data:`intake_bfa.derive.SYMBOLS_SQL`,
    :data:`~intake_bfa.derive.VOLUME_RANKINGS_SQL`, generated at the instant), so listings,
    delistings, ``listed_now`` and ranks are those known then; ``availability_events`` keeps
    the events up to the cutoff. Tables, not views: computed once per connection.

    Parameters
    ----------
    con
        A DuckDB connection (not yet locked).
    spec
        When.
    files
        Dataset name -> verified local file; ``daily_availability`` is required, and
        ``availability_events`` is used when present.
    names
        The tables wanted; ``daily_availability`` is created too when another needs it.

    Returns
    -------
    list of str
        The tables created.
    """
    from intake_bfa.derive import SYMBOLS_SQL, VOLUME_RANKINGS_SQL

    wanted = [n for n in AS_OF_DATASETS if n in set(names)]
    events = files.get("availability_events")
    created = []
    if any(n != "availability_events" for n in wanted):
        sql, params = as_of_sql(spec, files["daily_availability"], events)
        con.execute(f"CREATE OR REPLACE TABLE daily_availability AS {sql}", params)
        created.append("daily_availability")
    if "symbols" in wanted:
        con.execute(f"CREATE OR REPLACE TABLE symbols AS {SYMBOLS_SQL}")
        created.append("symbols")
    if "volume_rankings" in wanted:
        con.execute(
            f"CREATE OR REPLACE TABLE volume_rankings AS {VOLUME_RANKINGS_SQL}",
            {"generated": spec.instant},
        )
        created.append("volume_rankings")
    if "availability_events" in wanted and events is not None:
        con.execute(
            f"CREATE OR REPLACE TABLE availability_events AS {AS_OF_EVENTS_HISTORY_SQL}",
            [*spec.params(), str(events)],
        )
        created.append("availability_events")
    return created
