"""What intake-bfa publishes: the datasets, their files and the meaning of every column.

Pure data, no heavy imports: the catalog, the readers, the CLI and the producer
all describe the datasets from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from intake_bfa.errors import DatasetNotFoundError, nearest

#: Bumped when the manifest's structure changes incompatibly.
MANIFEST_SCHEMA_VERSION = 1
#: The first UTC day for which Binance Vision has USDT-M daily klines.
FIRST_DATE = "2019-12-31"
#: The tables a consumer can compute from the release's database (``derived_from`` in a
#: manifest): exactly the keys of :data:`intake_bfa.derive.DERIVED_SQL`.
DERIVABLE = ("daily_availability", "symbols")

DAILY_AVAILABILITY_COLUMNS: dict[str, tuple[str, str]] = {
    "date": ("DATE", "UTC day"),
    "symbol": ("VARCHAR", "futures symbol as on Binance Vision, e.g. BTCUSDT, BTCUSDT_240329"),
    "available": ("BOOLEAN", "Binance Vision holds that day's 1m klines file for the symbol"),
    "file_size_bytes": ("BIGINT", "size of the daily 1m klines zip (null when not available)"),
    "last_modified": ("TIMESTAMP", "S3 Last-Modified of the file, UTC (not the data date)"),
    "url": ("VARCHAR", "the file's URL on data.binance.vision"),
    "status_code": ("INTEGER", "HTTP status the check observed (200 or 404)"),
    "probe_timestamp": ("TIMESTAMP", "when this row was last checked, UTC"),
    "quote_volume_usdt": ("DOUBLE", "daily quote volume from the 1d kline"),
    "trade_count": ("BIGINT", "number of trades that day"),
    "volume_base": ("DOUBLE", "daily volume in the base asset"),
    "taker_buy_volume_base": ("DOUBLE", "taker buy volume in the base asset"),
    "taker_buy_quote_volume_usdt": ("DOUBLE", "taker buy volume in the quote asset"),
    "open_price": ("DOUBLE", "daily open"),
    "high_price": ("DOUBLE", "daily high"),
    "low_price": ("DOUBLE", "daily low"),
    "close_price": ("DOUBLE", "daily close"),
}

#: The columns of the database's ``daily_availability`` table: exactly the publishing
#: project's schema, so its package reads (and writes) our database. The Parquet file adds
#: :data:`FIRST_SEEN_COLUMNS`, computed from the ``availability_events`` table.
DATABASE_DAILY_COLUMNS: dict[str, tuple[str, str]] = dict(DAILY_AVAILABILITY_COLUMNS)

#: When each file was first seen, appended to the ``daily_availability`` dataset.
FIRST_SEEN_COLUMNS: dict[str, tuple[str, str]] = {
    "first_seen": (
        "TIMESTAMP",
        "when the file was first seen on Binance Vision, UTC: the Last-Modified of the first "
        "upload seen (null when not available)",
    ),
    "first_seen_exact": (
        "BOOLEAN",
        "first_seen is the real upload time, not only an upper bound (null when not available)",
    ),
}
DAILY_AVAILABILITY_COLUMNS.update(FIRST_SEEN_COLUMNS)

#: The kinds of ``availability_events.event``.
EVENT_KINDS = ("appeared", "replaced", "disappeared")

AVAILABILITY_EVENTS_COLUMNS: dict[str, tuple[str, str]] = {
    "symbol": ("VARCHAR", "futures symbol"),
    "date": ("DATE", "UTC day of the daily 1m klines file"),
    "event": (
        "VARCHAR",
        "appeared (a new file), replaced (same file, new size, ETag or Last-Modified) or "
        "disappeared (no longer listed)",
    ),
    "event_time": (
        "TIMESTAMP",
        "when it happened, UTC: the file's Last-Modified for appeared and replaced; for "
        "disappeared, the listing that first missed it (an upper bound)",
    ),
    "exact": ("BOOLEAN", "event_time is the real time of the event, not only an upper bound"),
    "file_size_bytes": ("BIGINT", "size of the file as listed (as last listed, if disappeared)"),
    "etag": ("VARCHAR", "the file's S3 ETag as listed (null when unknown)"),
    "last_modified": ("TIMESTAMP", "the file's S3 Last-Modified as listed, UTC"),
    "observed_at": ("TIMESTAMP", "when the listing that saw the event was made, UTC"),
}

#: The day's 1d-kline figures (volume and prices): null when there is no file.
VOLUME_COLUMNS = (
    "quote_volume_usdt",
    "trade_count",
    "volume_base",
    "taker_buy_volume_base",
    "taker_buy_quote_volume_usdt",
    "open_price",
    "high_price",
    "low_price",
    "close_price",
)

#: Columns that are never null (the publishing project's schema declares them NOT NULL).
REQUIRED_COLUMNS = ("date", "symbol", "available", "url", "status_code", "probe_timestamp")

VOLUME_RANKINGS_COLUMNS: dict[str, tuple[str, str]] = {
    "date": ("DATE", "UTC day"),
    "symbol": ("VARCHAR", "futures symbol"),
    "rank": ("SMALLINT", "dense rank by quote volume on that date, 1 = largest"),
    "quote_volume_usdt": ("DOUBLE", "daily quote volume"),
    "trade_count": ("BIGINT", "number of trades that day"),
    "rank_change_1d": (
        "SMALLINT",
        "rank minus the symbol's rank on its previous ranked day (a day it was available "
        "with a volume); negative = rose, null = no earlier ranked day",
    ),
    "rank_change_7d": ("SMALLINT", "rank minus the symbol's rank 7 ranked days earlier"),
    "rank_change_14d": ("SMALLINT", "rank minus the symbol's rank 14 ranked days earlier"),
    "rank_change_30d": ("SMALLINT", "rank minus the symbol's rank 30 ranked days earlier"),
    "percentile": ("FLOAT", "PERCENT_RANK by quote volume, in percent: 0 = top, 100 = bottom"),
    "market_share_pct": ("FLOAT", "share of that date's total quote volume, in percent"),
    "days_available": (
        "TINYINT",
        "the symbol's ranked days up to this date, capped at 30 (its last 30 ranked rows)",
    ),
    "generation_timestamp": ("TIMESTAMP", "when the rankings were computed, UTC"),
}

SYMBOLS_COLUMNS: dict[str, tuple[str, str]] = {
    "symbol": ("VARCHAR", "futures symbol"),
    "first_date": ("DATE", "first day with a data file"),
    "last_date": ("DATE", "last day with a data file"),
    "days_available": ("INTEGER", "days with a data file"),
    "missing_days": ("INTEGER", "days without a file between first_date and last_date"),
    "gap_count": ("INTEGER", "runs of missing days between first_date and last_date"),
    "contract_kind": ("VARCHAR", "perpetual, delivery (dated quarterly) or settled (history)"),
    "delivery_date": ("DATE", "delivery date of a dated contract, else null"),
    "quote_asset": ("VARCHAR", "quote asset: USDT, USDC, BUSD, BTC..."),
    "listed_now": ("BOOLEAN", "available on the last or second-to-last covered date"),
    "ticker": (
        "VARCHAR",
        "the ticker the contract traded under: the symbol less its SETTLED suffixes "
        "(BNXUSDTSETTLED traded as BNXUSDT); a reused ticker is several contracts",
    ),
    "successor": (
        "VARCHAR",
        "for a settled history, the next contract of its ticker (BNXUSDTSETTLED -> BNXUSDT, "
        "XSETTLEDSETTLED -> XSETTLED); null for the latest contract of a ticker",
    ),
    "predecessor": (
        "VARCHAR",
        "the previous contract of the ticker (BNXUSDT -> BNXUSDTSETTLED); null for its first",
    ),
}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset a release carries.

    Attributes
    ----------
    name
        Catalog and manifest name.
    description
        One line for catalogs and ``--help``.
    kind
        ``"table"`` (a Parquet file) or ``"database"`` (a DuckDB file).
    asset
        File name of the asset in the project's own release layout.
    columns
        Column name -> (DuckDB type, meaning); for a database, its main table.
    """

    name: str
    description: str
    kind: str
    asset: str
    columns: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def has_date(self) -> bool:
        """True when rows are per date (date-range filters apply)."""
        return "date" in self.columns

    @property
    def has_symbol(self) -> bool:
        """True when rows carry a symbol (symbol filters apply)."""
        return "symbol" in self.columns


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "daily_availability",
            "One row per (UTC date, symbol), dense grid: is the day's file on Binance Vision, "
            "with size, timestamps and daily volume",
            "table",
            "daily_availability.parquet",
            DAILY_AVAILABILITY_COLUMNS,
        ),
        DatasetSpec(
            "availability_db",
            "The whole DuckDB database (daily_availability, symbols, daily_symbol_counts, "
            "volume_rankings and, in the project's own releases, availability_events), "
            "opened read-only",
            "database",
            "availability.duckdb.gz",
            DATABASE_DAILY_COLUMNS,
        ),
        DatasetSpec(
            "volume_rankings",
            "Daily rank of every traded symbol by quote volume, with rank changes and market share",
            "table",
            "volume_rankings.parquet",
            VOLUME_RANKINGS_COLUMNS,
        ),
        DatasetSpec(
            "symbols",
            "One row per symbol (one contract): first/last available date, days available, gaps, "
            "contract kind, quote asset, listed-now flag, ticker and the contracts before and "
            "after it under that ticker",
            "table",
            "symbols.parquet",
            SYMBOLS_COLUMNS,
        ),
        DatasetSpec(
            "availability_events",
            "The observation history: one row per change seen on a Binance Vision file "
            "(appeared, replaced, disappeared), with its time, size and ETag",
            "table",
            "availability_events.parquet",
            AVAILABILITY_EVENTS_COLUMNS,
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """Return the :class:`DatasetSpec` for ``name`` or raise :class:`DatasetNotFoundError`."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(DATASETS)
        close = nearest(str(name), DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}; intake-bfa publishes: {known}.{hint}",
            dataset=name,
            available=list(DATASETS),
        ) from None
