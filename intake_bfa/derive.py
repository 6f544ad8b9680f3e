"""Tables computed from the DuckDB database, shared by the consumer and the producer.

A rolling-layout release ships only the database, so the consumer derives the
``daily_availability`` and ``symbols`` Parquet files from it, once, into the
cache. ``daily_availability`` gains ``first_seen``: from the database's observation history
(``availability_events``) when it has one, else the file's Last-Modified, not exact (the
publishing project keeps no history, so that time only bounds the first upload). The
producer runs the same SQL when it builds a release, so both paths give identical tables.
``volume_rankings`` is computed here exactly as the publishing project's own generator
computes it, so the dataset means one thing in every layout.
"""

from __future__ import annotations

import logging
from pathlib import Path

from intake_bfa.cache.layout import cache_writes
from intake_bfa.parquet_layout import TILED_ORDER, write_table

log = logging.getLogger(__name__)


_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "BTC", "ETH", "BNB")

#: The ticker a contract traded under: its symbol less the ``SETTLED`` suffixes Binance
#: gives a contract's history when it reuses the ticker for a new contract
#: (``BNXUSDTSETTLED`` and ``BNXUSDT`` both traded as BNXUSDT).
TICKER_SQL = "regexp_replace(symbol, '(_?SETTLED)+$', '')"

#: The contracts of one ticker, oldest first (a window over rows with ``symbol``, ``ticker``,
#: ``first_date`` and ``last_date``): the settled histories by their last, then first day
#: (more ``SETTLED`` suffixes first on a tie), and the plain ticker, the contract that holds
#: it now, last. ``LAG``/``LEAD`` over it give a contract's predecessor and successor. By
#: dates, not by counting suffixes, so the links hold however Binance named the histories.
CONTRACT_WINDOW_SQL = (
    "PARTITION BY ticker ORDER BY regexp_matches(symbol, 'SETTLED$') DESC, last_date, "
    "first_date, length(symbol) DESC, symbol"
)

#: One row per symbol that was ever available. Coverage end = the table's last date.
SYMBOLS_SQL = f"""
WITH avail AS (
    SELECT symbol, date FROM daily_availability WHERE available
),
runs AS (
    SELECT symbol, date,
           date - LAG(date) OVER (PARTITION BY symbol ORDER BY date) AS step
    FROM avail
),
life AS (
    SELECT symbol,
           MIN(date) AS first_date,
           MAX(date) AS last_date,
           CAST(COUNT(*) AS INTEGER) AS days_available,
           CAST(COUNT(*) FILTER (WHERE step > 1) AS INTEGER) AS gap_count
    FROM runs GROUP BY symbol
),
coverage AS (SELECT MAX(date) AS end_date FROM daily_availability),
tickers AS (SELECT *, {TICKER_SQL} AS ticker FROM life),
named AS (
    SELECT *,
           regexp_replace(ticker, '_[0-9]{{6}}$', '') AS pair,
           CASE
               WHEN regexp_matches(symbol, 'SETTLED$') THEN 'settled'
               WHEN regexp_matches(symbol, '_[0-9]{{6}}$') THEN 'delivery'
               ELSE 'perpetual'
           END AS contract_kind,
           CASE WHEN regexp_matches(symbol, '_[0-9]{{6}}$')
                THEN TRY_CAST(strptime(regexp_extract(symbol, '_([0-9]{{6}})$', 1), '%y%m%d')
                              AS DATE)
           END AS delivery_date
    FROM tickers
)
SELECT symbol, first_date, last_date, days_available,
       CAST(date_diff('day', first_date, last_date) + 1 - days_available AS INTEGER)
           AS missing_days,
       gap_count, contract_kind, delivery_date,
       NULLIF(regexp_extract(pair, '({"|".join(_QUOTES)})$', 1), '') AS quote_asset,
       (contract_kind <> 'settled' AND last_date >= coverage.end_date - INTERVAL 1 DAY)
           AS listed_now,
       ticker,
       LEAD(symbol) OVER contracts AS successor,
       LAG(symbol) OVER contracts AS predecessor
FROM named, coverage
WINDOW contracts AS ({CONTRACT_WINDOW_SQL})
ORDER BY symbol
"""

#: The rankings, row for row what the publishing project's generator writes
#: (``.github/scripts/generate_volume_rankings.py`` of binance-futures-availability 1.5.0, its
#: ADR-0013): every available row with a volume is ranked, zero volume included; a rank change
#: is today's rank minus the rank ``N`` *ranked rows* earlier for the symbol (negative = rose);
#: percentile is ``PERCENT_RANK() * 100`` (0 = top); ``days_available`` counts the symbol's
#: ranked rows among its last 30. Its users and its docs rely on exactly this, so our own
#: releases use it too (checked against the generator in tests/test_upstream_oracle.py).
#: ``$generated`` is the build time (the generator uses CURRENT_TIMESTAMP).
VOLUME_RANKINGS_SQL = """
WITH ranked AS (
    SELECT date, symbol, quote_volume_usdt, trade_count,
           DENSE_RANK() OVER (PARTITION BY date ORDER BY quote_volume_usdt DESC) AS rnk,
           PERCENT_RANK() OVER (PARTITION BY date ORDER BY quote_volume_usdt DESC) * 100
               AS pct,
           quote_volume_usdt / NULLIF(SUM(quote_volume_usdt) OVER (PARTITION BY date), 0) * 100
               AS share,
           COUNT(*) OVER (PARTITION BY symbol ORDER BY date
                          ROWS BETWEEN 29 PRECEDING AND CURRENT ROW) AS last_30
    FROM daily_availability
    WHERE available AND quote_volume_usdt IS NOT NULL
),
changes AS (
    SELECT *,
           rnk - LAG(rnk, 1) OVER w AS change_1, rnk - LAG(rnk, 7) OVER w AS change_7,
           rnk - LAG(rnk, 14) OVER w AS change_14, rnk - LAG(rnk, 30) OVER w AS change_30
    FROM ranked
    WINDOW w AS (PARTITION BY symbol ORDER BY date)
)
SELECT date, symbol,
       CAST(rnk AS SMALLINT) AS rank,
       quote_volume_usdt, trade_count,
       CAST(change_1 AS SMALLINT) AS rank_change_1d,
       CAST(change_7 AS SMALLINT) AS rank_change_7d,
       CAST(change_14 AS SMALLINT) AS rank_change_14d,
       CAST(change_30 AS SMALLINT) AS rank_change_30d,
       CAST(pct AS FLOAT) AS percentile,
       CAST(share AS FLOAT) AS market_share_pct,
       CAST(last_30 AS TINYINT) AS days_available,
       CAST($generated AS TIMESTAMP) AS generation_timestamp
FROM changes
"""

#: ``daily_availability`` with ``first_seen`` from a database without an observation history
#: (the publishing project's): the Last-Modified, an upper bound of the first upload.
DAILY_AVAILABILITY_SQL = f"""
SELECT *,
       CASE WHEN available THEN CAST(last_modified AS TIMESTAMP) END AS first_seen,
       CASE WHEN available THEN false END AS first_seen_exact
FROM daily_availability ORDER BY {TILED_ORDER}
"""


def first_seen_ctes(events: str, name: str) -> str:
    """Two CTEs giving each file's first appearance from an events relation.

    ``appeared``, then ``name`` (symbol, date, ``seen``, ``seen_exact``): the earliest
    ``appeared`` time, exact when one of the events at that time is. The one rule for
    ``first_seen``, used by the release build and by as-of answers (:mod:`intake_bfa.asof`).

    Parameters
    ----------
    events
        A table or CTE with the ``availability_events`` columns (an identifier of our own
        SQL, never user input).
    name
        Name of the resulting CTE.
    """
    return f"""appeared AS (
    SELECT symbol, date, event_time, exact,
           MIN(event_time) OVER (PARTITION BY symbol, date) AS earliest
    FROM {events} WHERE event = 'appeared'
),
{name} AS (
    SELECT symbol, date, MIN(event_time) AS seen, bool_or(exact) AS seen_exact
    FROM appeared WHERE event_time = earliest GROUP BY symbol, date
)"""


#: ``daily_availability`` with ``first_seen`` from the database's ``availability_events``
#: table (the project's own releases): the earliest ``appeared`` time of the file, exact when
#: one of the events at that time is; an available row without any ``appeared`` event falls
#: back to its Last-Modified, not exact. The release's Parquet file is this, row for row.
DAILY_AVAILABILITY_EVENTS_SQL = f"""
WITH {first_seen_ctes("availability_events", "earliest")},
joined AS (
    SELECT d.*,
           CASE WHEN d.available THEN CAST(COALESCE(e.seen, d.last_modified) AS TIMESTAMP)
           END AS first_seen,
           CASE WHEN d.available THEN COALESCE(e.seen IS NOT NULL AND e.seen_exact, false)
           END AS first_seen_exact
    FROM daily_availability AS d
    LEFT JOIN earliest AS e ON e.symbol = d.symbol AND e.date = d.date
)
SELECT * FROM joined ORDER BY {TILED_ORDER}
"""

#: The observation history as the release's Parquet file orders it.
AVAILABILITY_EVENTS_SQL = (
    f"SELECT * FROM availability_events ORDER BY {TILED_ORDER}, observed_at, event_time, event"
)

DERIVED_SQL = {"daily_availability": DAILY_AVAILABILITY_SQL, "symbols": SYMBOLS_SQL}


def derived_sql(con, name: str) -> str:
    """The SQL deriving dataset ``name`` from the database open on ``con``.

    ``daily_availability`` takes ``first_seen`` from the database's ``availability_events``
    table when it has one (:data:`DAILY_AVAILABILITY_EVENTS_SQL`), else from Last-Modified
    (:data:`DAILY_AVAILABILITY_SQL`).

    Parameters
    ----------
    con
        A DuckDB connection whose current database and schema hold the release's tables.
    name
        One of :data:`DERIVED_SQL`.

    Returns
    -------
    str
        A ``SELECT`` over the current database's tables.
    """
    if name == "daily_availability":
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() AND table_name = ?",
            ["availability_events"],
        ).fetchall()[0][0]
        if found:
            return DAILY_AVAILABILITY_EVENTS_SQL
    return DERIVED_SQL[name]


def write_parquet(relation, dest: Path, *, sidecar: bool = False) -> Path:
    """Write a DuckDB relation (already ordered) to ``dest`` with the shared Parquet layout.

    ``sidecar=True`` (cache use) records the file's sha256 for ``bfa cache verify``.
    """
    write_table(relation.to_arrow_table(), dest, sidecar=sidecar)
    return dest


def derive(name: str, database: Path, dest: Path, *, cache_dir: Path | None = None) -> Path:
    """Compute dataset ``name`` from the DuckDB file ``database`` into ``dest`` (Parquet).

    Raises
    ------
    CacheError
        ``dest`` cannot be written (``cache_dir``, default ``dest``'s folder, is named in
        the message); no file is left behind.
    """
    from intake_bfa import interrupt

    log.info("deriving %s from %s", name, database.name)
    con = interrupt.connect(str(database), read_only=True)
    try:
        table = con.sql(derived_sql(con, name)).to_arrow_table()
    finally:
        con.close()
    # Only the write is wrapped: DuckDB's own errors are not the cache folder's.
    with cache_writes(cache_dir or dest.parent, dest):
        write_table(table, dest, sidecar=True)
    return dest
