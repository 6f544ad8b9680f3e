"""SQL text of the query layer, and the locked-down DuckDB connection for user SQL.

Every statement here is a constant: identifiers are written quoted, and every value
(dates, symbols, quote assets, thresholds) is a ``?`` parameter bound at execution.
Optional filters are chosen among constant fragments, never built from input.

User SQL (``bfa sql``, :meth:`intake_bfa.query.Query.sql`) runs on a separate
connection whose dataset views read only the verified cached files (or, for
``bfa sql --remote``, only the release's Parquet assets by HTTP ranges), with external
access disabled and the configuration locked, after a check that the text is one
read-only ``SELECT`` (see :func:`check_select` for why both layers are needed).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from intake_bfa.derive import CONTRACT_WINDOW_SQL, TICKER_SQL
from intake_bfa.errors import QueryError
from intake_bfa.filters import quote_identifier

log = logging.getLogger(__name__)

#: The table datasets, each exposed as a view of the same name.
TABLES = ("daily_availability", "volume_rankings", "symbols", "availability_events")
#: ``symbols.contract_kind`` values.
KINDS = ("perpetual", "delivery", "settled")

# Optional filters on the joined symbols table (alias s); each binds one value.
QUOTE_FILTER = " AND s.quote_asset = ?"
KIND_FILTER = " AND s.contract_kind = ?"
LISTED_FILTER = " AND s.listed_now = ?"

SNAPSHOT = """
SELECT a.date, a.symbol, s.contract_kind, s.quote_asset, a.file_size_bytes, a.last_modified,
       a.quote_volume_usdt, a.trade_count
FROM "daily_availability" AS a
LEFT JOIN "symbols" AS s ON s.symbol = a.symbol
WHERE a.date = ? AND a.available{filters}
ORDER BY a.symbol
"""

AVAILABLE_IN = """
SELECT a.symbol, s.contract_kind, s.quote_asset,
       MIN(a.date) AS first_available, MAX(a.date) AS last_available,
       CAST(COUNT(*) AS INTEGER) AS days_available
FROM "daily_availability" AS a
LEFT JOIN "symbols" AS s ON s.symbol = a.symbol
WHERE a.date >= ? AND a.date <= ? AND a.available{filters}
GROUP BY a.symbol, s.contract_kind, s.quote_asset
ORDER BY a.symbol
"""

TIMELINE = """
SELECT * FROM "daily_availability" WHERE "symbol" = ? AND "date" >= ? AND "date" <= ?
ORDER BY "date"
"""

SYMBOLS = """
SELECT s.* FROM "symbols" AS s WHERE TRUE{filters} ORDER BY s.symbol
"""

LIFETIME = """
SELECT * FROM "symbols" WHERE "symbol" = ?
"""

LISTINGS = """
SELECT s.first_date AS date, s.symbol, s.contract_kind, s.quote_asset, s.last_date,
       s.listed_now
FROM "symbols" AS s
WHERE s.first_date >= ? AND s.first_date <= ?{filters}
ORDER BY date, s.symbol
"""

# A delisting is the last available date of a symbol that is not listed now.
DELISTINGS = """
SELECT s.last_date AS date, s.symbol, s.contract_kind, s.quote_asset, s.first_date,
       s.days_available
FROM "symbols" AS s
WHERE NOT s.listed_now AND s.last_date >= ? AND s.last_date <= ?{filters}
ORDER BY date, s.symbol
"""

COUNTS = """
WITH per_day AS (
    SELECT "date", CAST(COUNT(*) FILTER (WHERE "available") AS INTEGER) AS available_symbols
    FROM "daily_availability"
    WHERE "date" >= ? AND "date" <= ?
    GROUP BY "date"
),
listed AS (
    SELECT first_date AS "date", CAST(COUNT(*) AS INTEGER) AS n FROM "symbols" GROUP BY 1
),
delisted AS (
    SELECT last_date AS "date", CAST(COUNT(*) AS INTEGER) AS n
    FROM "symbols" WHERE NOT listed_now GROUP BY 1
)
SELECT per_day."date", per_day.available_symbols,
       COALESCE(listed.n, 0) AS listings, COALESCE(delisted.n, 0) AS delistings
FROM per_day
LEFT JOIN listed ON listed."date" = per_day."date"
LEFT JOIN delisted ON delisted."date" = per_day."date"
ORDER BY per_day."date"
"""

# A gap is a run of days without a file between two available days of one symbol.
GAPS = """
WITH avail AS (
    SELECT "symbol", "date", LAG("date") OVER (PARTITION BY "symbol" ORDER BY "date") AS prev
    FROM "daily_availability"
    WHERE "available"{filters}
)
SELECT "symbol", CAST(prev + 1 AS DATE) AS "start", CAST("date" - 1 AS DATE) AS "end",
       CAST("date" - prev - 1 AS INTEGER) AS days
FROM avail
WHERE "date" - prev > 1
ORDER BY "symbol", "start"
"""
GAPS_SYMBOL_FILTER = ' AND "symbol" = ?'

_RANK_COLUMNS = """"date", "symbol", "rank", quote_volume_usdt, market_share_pct, percentile,
       trade_count, rank_change_1d, rank_change_7d, rank_change_14d, rank_change_30d"""

TOP = f"""
SELECT {_RANK_COLUMNS}
FROM "volume_rankings" WHERE "date" = ?
ORDER BY "rank", "symbol"
LIMIT ?
"""

RANK_HISTORY = f"""
SELECT {_RANK_COLUMNS}, days_available
FROM "volume_rankings" WHERE "symbol" = ? AND "date" >= ? AND "date" <= ?
ORDER BY "date"
"""

# One pass over the window's rows: availability and volume per symbol, then the
# universe condition (every day / on a day / any day) and the volume threshold.
_UNIVERSE_WINDOW = """
WITH w AS (
    SELECT "symbol",
           CAST(COUNT(*) FILTER (WHERE "available") AS INTEGER) AS days_available,
           COALESCE(BOOL_OR("available" AND "date" = ?), FALSE) AS on_day,
           AVG(quote_volume_usdt) FILTER (WHERE "available") AS avg_quote_volume,
           MIN(quote_volume_usdt) FILTER (WHERE "available") AS min_quote_volume
    FROM "daily_availability"
    WHERE "date" >= ? AND "date" <= ?
    GROUP BY "symbol"
)"""
UNIVERSE = f"""{_UNIVERSE_WINDOW}
SELECT w.symbol, s.contract_kind, s.quote_asset, w.days_available,
       CAST(? AS INTEGER) AS window_days, w.avg_quote_volume, w.min_quote_volume,
       s.first_date, s.last_date, s.listed_now
FROM w JOIN "symbols" AS s ON s.symbol = w.symbol
WHERE {{condition}}{{filters}}
ORDER BY w.symbol
"""
# by="contract": the same rows, each with the ticker it traded under and the contracts before
# and after it under that ticker, grouped by ticker (oldest contract first). Computed from the
# symbols table's names and dates with the SQL that builds its own ticker, predecessor and
# successor columns, so it answers alike on releases built before those columns existed.
UNIVERSE_BY_CONTRACT = f"""{_UNIVERSE_WINDOW},
t AS (SELECT symbol, first_date, last_date, {TICKER_SQL} AS ticker FROM "symbols"),
c AS (
    SELECT symbol, ticker,
           LAG(symbol) OVER contracts AS predecessor,
           LEAD(symbol) OVER contracts AS successor,
           ROW_NUMBER() OVER contracts AS nth
    FROM t
    WINDOW contracts AS ({CONTRACT_WINDOW_SQL})
)
SELECT w.symbol, c.ticker, s.contract_kind, s.quote_asset, w.days_available,
       CAST(? AS INTEGER) AS window_days, w.avg_quote_volume, w.min_quote_volume,
       s.first_date, s.last_date, s.listed_now, c.predecessor, c.successor
FROM w JOIN "symbols" AS s ON s.symbol = w.symbol JOIN c ON c.symbol = w.symbol
WHERE {{condition}}{{filters}}
ORDER BY c.ticker, c.nth
"""
#: ``universe(by=...)`` values and their SQL.
UNIVERSE_BY = {"symbol": UNIVERSE, "contract": UNIVERSE_BY_CONTRACT}
UNIVERSE_EVERY_DAY = "w.days_available = ?"
UNIVERSE_ANY_DAY = "w.days_available > 0"
UNIVERSE_ON_DAY = "w.on_day"
UNIVERSE_MIN_VOLUME = " AND w.avg_quote_volume >= ?"

# Upload delay: first_seen minus the end of the file's day (midnight UTC starting D+1), in
# hours. {first_seen} is LATENCY_FIRST_SEEN, or on a release without that column (built
# before it existed) LATENCY_LAST_MODIFIED: the Last-Modified, an upper bound; {filters} is
# empty or LATENCY_SYMBOLS_FILTER; {exact} is empty or LATENCY_EXACT_FILTER.
_LATENCY_ROWS = """
SELECT "symbol", "date", first_seen, first_seen_exact,
       EPOCH_US(first_seen - CAST("date" + 1 AS TIMESTAMP)) / 3600e6 AS delay_hours
FROM (SELECT "symbol", "date", {first_seen}
      FROM "daily_availability"
      WHERE "available" AND "date" >= ? AND "date" <= ?{filters}) AS a
WHERE first_seen IS NOT NULL"""
LATENCY = _LATENCY_ROWS + '{exact}\nORDER BY "date", "symbol"\n'
LATENCY_FIRST_SEEN = "first_seen, first_seen_exact"
LATENCY_LAST_MODIFIED = "CAST(last_modified AS TIMESTAMP) AS first_seen, false AS first_seen_exact"
LATENCY_SYMBOLS_FILTER = ' AND list_contains(?, "symbol")'
LATENCY_EXACT_FILTER = " AND first_seen_exact"
#: The quantiles of ``latency_summary`` (percent).
LATENCY_PERCENTILES = (50, 90, 95, 99)


def _there_by(hours: str) -> str:
    """SQL text of 'D+1 08:50 UTC': when, counted from day D, ``hours`` after D's end have
    passed (rounded up to the minute)."""
    m = f"CAST(CEIL({hours} * 60) AS BIGINT)"
    day = f"CAST(FLOOR({m} / 1440) AS BIGINT)"
    rest = f"({m} - {day} * 1440)"  # minutes into that day, 0..1439
    return (f"CASE WHEN {hours} IS NOT NULL THEN printf('D+%d %02d:%02d UTC', {day} + 1, "
            f"{rest} // 60, {rest} % 60) END")  # fmt: skip


_PCT = ",\n       ".join(
    f"quantile_cont(delay_hours, {p / 100}) AS p{p}_hours" for p in LATENCY_PERCENTILES
)
_BY = ",\n       ".join(f"{_there_by(f'p{p}_hours')} AS p{p}_by" for p in LATENCY_PERCENTILES)
# {group} is empty or one of LATENCY_GROUPS' columns followed by a comma.
LATENCY_SUMMARY = f"""
WITH l AS ({_LATENCY_ROWS}{{exact}}),
s AS (
SELECT {{group}}CAST(COUNT(*) AS BIGINT) AS files,
       CAST(COUNT(*) FILTER (WHERE first_seen_exact) AS BIGINT) AS exact_files,
       {_PCT},
       MAX(delay_hours) AS max_hours,
       100.0 * AVG(CAST(delay_hours > 24 AS DOUBLE)) AS late_1d_pct,
       100.0 * AVG(CAST(delay_hours > 168 AS DOUBLE)) AS late_7d_pct
FROM l {{group_by}}
)
SELECT {{group}}files, exact_files,
       {", ".join(f"p{p}_hours" for p in LATENCY_PERCENTILES)},
       {_BY},
       max_hours, late_1d_pct, late_7d_pct
FROM s {{order_by}}
"""
#: ``latency_summary(by=...)``: the group column (None: one row for the whole window).
LATENCY_GROUPS = {None: "", "date": '"date"', "symbol": '"symbol"'}

VIEW_COLUMNS = "SELECT column_name FROM duckdb_columns() WHERE table_name = ?"
KNOWN_SYMBOLS = 'SELECT "symbol" FROM "symbols"'
RANKED = 'SELECT 1 FROM "volume_rankings" WHERE "symbol" = ? LIMIT 1'
KNOWN_QUOTES = 'SELECT DISTINCT "quote_asset" FROM "symbols" WHERE "quote_asset" IS NOT NULL'
COVERAGE = 'SELECT MIN("date"), MAX("date") FROM "daily_availability"'


def coverage_sql(dataset: str) -> str:
    """First and last date of a table dataset (its name quoted: identifiers cannot be bound)."""
    return f'SELECT MIN("date"), MAX("date") FROM {quote_identifier(dataset)}'


# --- user SQL ------------------------------------------------------------------------------

#: Statement kinds a user may run: DuckDB parses SELECT, WITH, VALUES, FROM-first,
#: DESCRIBE, SHOW and SUMMARIZE all as SELECT statements.
_READ_ONLY_KINDS = ("SELECT",)
#: Schema under which ``availability_db`` is attached when asked for.
DATABASE_SCHEMA = "db"


def check_select(text: str) -> None:
    """Refuse anything but one read-only ``SELECT`` statement.

    Disabling external access is not enough on its own: DuckDB lets a ``COPY ... TO``
    (with ``USE_TMP_FILE false``) *write* to a path listed in ``allowed_paths``, i.e.
    overwrite a cached dataset file (measured with DuckDB 2.0). ``EXPLAIN ANALYZE``
    executes its statement, so it is refused too.

    Raises
    ------
    QueryError
        For empty text, several statements, a parse error, or another statement kind.
    """
    import duckdb

    if not isinstance(text, str) or not text.strip():
        raise QueryError("the SQL query is empty; e.g. SELECT * FROM symbols LIMIT 5")
    try:
        statements = duckdb.extract_statements(text)
        kinds = [str(st.type).rsplit(".", 1)[-1] for st in statements]
    except duckdb.Error as err:
        raise sql_error(err) from None
    except ValueError:
        # DuckDB 2.0's Python module raises ValueError for statement types it has no
        # enum member for (e.g. CONNECT, found by fuzzing): certainly not a SELECT.
        raise QueryError(
            "only read-only SELECT queries are allowed (also WITH, FROM, VALUES, DESCRIBE, "
            "SHOW, SUMMARIZE)",
            statement="unknown",
        ) from None
    if len(statements) != 1:
        raise QueryError(
            f"give exactly one SQL statement (got {len(statements)}); bfa sql runs one "
            "read-only SELECT query"
        )
    kind = kinds[0]
    if kind not in _READ_ONLY_KINDS:
        raise QueryError(
            f"only read-only SELECT queries are allowed (also WITH, FROM, VALUES, DESCRIBE, "
            f"SHOW, SUMMARIZE), not {kind}",
            statement=kind,
        )


#: Table functions served SQL may call: generators only. Every other one reads the
#: catalog, the settings, files or runs SQL text (``query('...')``, ``query_table``), so
#: this is an allowlist: a table function a new DuckDB adds is refused until listed.
SERVED_TABLE_FUNCTIONS = frozenset(
    {"range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree"}
)
#: Scalar functions that read the configuration, variables, secrets or the environment.
_CONFIG_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable", "which_secret"})
_parser = threading.local()


def check_served(text: str, tables: Sequence[str], *, database: bool = False) -> None:
    """Refuse SQL that reads anything but ``tables`` (and schema ``db``): no introspection.

    For ``bfa serve``, on top of :func:`check_select`: the settings (``allowed_paths``,
    ``temp_directory``, ``home_directory``...), the views' SQL and the attached
    databases name server paths, and ``duckdb_settings()``, ``current_setting()``,
    ``duckdb_views()``, ``duckdb_databases()``, ``information_schema``, ``sqlite_master``
    or ``pragma_database_list`` show them. Rather than scrub results (``hex(path)``
    would pass any scrubber) the statement's syntax tree is checked: relations must be
    the served views, CTEs in scope or ``db.*``; table functions must be in
    :data:`SERVED_TABLE_FUNCTIONS` (an allowlist: ``query('...')`` could run any text);
    configuration functions are refused. A statement DuckDB cannot serialise is refused.

    Raises
    ------
    QueryError
        For a relation that is not served (like DuckDB's unknown table, 400 from the
        server), and with ``duckdb_error="PermissionException"`` (403) for a function.
    """
    import json

    import duckdb

    con = getattr(_parser, "con", None)
    if con is None:  # a plain connection of this thread, only to parse
        con = _parser.con = duckdb.connect(":memory:")
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0][0])
    if tree.get("error"):
        _refuse("this statement cannot be checked; write it as a plain SELECT")
    allowed = {t.lower() for t in tables}
    _walk(tree["statements"], frozenset(), allowed, database)


def _refuse(message: str) -> None:
    raise QueryError(message, duckdb_error="PermissionException")


def _walk(node: Any, ctes: frozenset[str], tables: set[str], database: bool) -> None:
    """Check every relation and function of a serialised statement, CTE names scoped."""
    if isinstance(node, list):
        for item in node:
            _walk(item, ctes, tables, database)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        _check_relation(node, ctes, tables, database)
    elif kind == "TABLE_FUNCTION":
        name = str((node.get("function") or {}).get("function_name", "")).lower()
        if name not in SERVED_TABLE_FUNCTIONS:
            _refuse(
                f"table function {name}() is not available here; use the tables "
                f"{', '.join(sorted(tables))} (and {', '.join(sorted(SERVED_TABLE_FUNCTIONS))})"
            )
    elif kind == "RECURSIVE_CTE_NODE":
        ctes = ctes | {str(node.get("cte_name", "")).lower()}
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name in _CONFIG_FUNCTIONS or name.startswith(("duckdb_", "pragma_")):
            _refuse(f"{name}() is not available here: the server's settings are private")
    entries = (node.get("cte_map") or {}).get("map") or []
    for entry in entries:  # a CTE sees the ones before it (itself only when recursive)
        _walk(entry.get("value"), ctes, tables, database)
        ctes = ctes | {str(entry.get("key", "")).lower()}
    for key, value in node.items():
        if key != "cte_map" and isinstance(value, (dict, list)):
            _walk(value, ctes, tables, database)


def _check_relation(node: dict, ctes: frozenset[str], tables: set[str], database: bool) -> None:
    catalog = str(node.get("catalog_name") or "").lower()
    schema = str(node.get("schema_name") or "").lower()
    name = str(node.get("table_name") or "").lower()
    if not catalog and not schema and (name in ctes or name in tables):
        return
    if catalog in ("", "memory") and schema in ("", "main") and name in tables:
        return
    if database and (
        (catalog == DATABASE_SCHEMA and schema in ("", "main"))
        or (not catalog and schema == DATABASE_SCHEMA)
    ):
        return
    # What is not served does not exist, as far as the client knows (400, not 403).
    shown = ".".join(p for p in (catalog, schema, name) if p)
    more = f" and schema {DATABASE_SCHEMA}" if database else ""
    raise QueryError(
        f"there is no table {shown!r}; the tables are {', '.join(sorted(tables))}{more}",
        table=shown,
    )


def sql_error(err: Exception) -> QueryError:
    """DuckDB's message (without the echoed query) as a :class:`QueryError`, no traceback."""
    kept = []
    for line in str(err).splitlines():
        if line.startswith("LINE "):  # the echoed query and a caret: noise on one line
            break
        if line.strip():
            kept.append(line.strip())
    message = " ".join(kept) or type(err).__name__
    return QueryError(message, duckdb_error=type(err).__name__)


#: The views a connection of this module holds (the datasets it can read).
VIEWS_SQL = "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'"


def unknown_table_error(
    err: Exception, tables: Sequence[str], absent: Callable[[str], str]
) -> QueryError:
    """A missing table named with what there is, instead of DuckDB's nearest catalog name.

    ``tables`` are the views the query could use; ``absent(name)`` says why one of
    :data:`TABLES` is not among them. Any other error is :func:`sql_error`'s.
    """
    match = re.search(r"Table with name (\S+) does not exist", str(err))
    if match is None:
        return sql_error(err)
    name = match[1].strip('"')
    there = f"the tables are {', '.join(tables)}"
    if name in TABLES:
        return QueryError(f"{absent(name)}; {there}", dataset=name)
    return QueryError(f"there is no table {name!r}; {there}", table=name)


def locked_connection(
    files: Mapping[str, Path],
    database: Path | None = None,
    *,
    limits: Mapping[str, Any] | None = None,
    as_of: Any = None,
) -> Any:
    """An in-memory DuckDB connection that can read ``files`` and nothing else.

    Each ``files`` entry becomes a view named after its dataset; ``database``, if
    given, is attached read-only as schema :data:`DATABASE_SCHEMA`. Then external
    access is disabled and the configuration locked, so user SQL cannot read other
    files, write files, attach databases, install or load extensions, or undo this.

    DuckDB 2.0 checks file access when a query runs, not when a view is created,
    so views over files need those files in ``allowed_paths`` (set before locking).

    Parameters
    ----------
    files
        Dataset name -> verified local Parquet file.
    database
        The verified local ``availability_db`` file, or None.
    limits
        DuckDB settings set before the lock (``memory_limit``, ``threads``...), so
        user SQL cannot raise them.
    as_of
        An :class:`intake_bfa.asof.AsOf`: ``daily_availability``, ``symbols``,
        ``volume_rankings`` and ``availability_events`` are then tables as known at that
        time (:func:`intake_bfa.asof.install`), computed before the lock.

    Returns
    -------
    duckdb.DuckDBPyConnection
    """
    import duckdb

    from intake_bfa import interrupt

    con = interrupt.connect(":memory:")
    timed: list[str] = []
    if as_of is not None:
        from intake_bfa.asof import AS_OF_DATASETS, install

        timed = install(con, as_of, dict(files), [*files, *AS_OF_DATASETS])
    for name, path in files.items():
        # The relation API takes the path as a value: nothing is formatted into SQL.
        if name not in timed:
            con.read_parquet(str(path)).create_view(name, replace=True)
    if database is not None:
        con.execute(f"ATTACH ? AS {DATABASE_SCHEMA} (READ_ONLY)", [str(database)])
    for setting, value in (limits or {}).items():
        if setting not in _LIMIT_SETTINGS:
            raise ValueError(f"not a resource limit: {setting!r}; use {', '.join(_LIMIT_SETTINGS)}")
        try:
            con.execute(f"SET {setting} = ?", [value])  # names from the fixed list above
        except duckdb.Error as err:
            con.close()
            raise QueryError(
                f"invalid {setting} {value!r}: {sql_error(err)}", setting=setting, value=value
            ) from None
    _lock(con, [str(p) for p in files.values()] + ([str(database)] if database else []))
    return con


def locked_remote_connection(version: str, settings: Any) -> tuple[Any, str]:
    """Like :func:`locked_connection`, but the views read the release's Parquet remotely.

    The views of :data:`TABLES` read the ``bfa-remote://`` assets of ``version``
    through a registered :class:`~intake_bfa.remote.http_fs.RemoteFileSystem` (HTTP ranges,
    nothing downloaded; see :func:`intake_bfa.remote.relation.remote_connection`). DuckDB 2.0
    applies ``allowed_paths`` to registered filesystems too: exactly those URLs are
    allowed, so user SQL can read neither local files, nor another asset or version,
    nor a glob, nor any URL (the same lock as :func:`locked_connection`).

    Returns
    -------
    (duckdb.DuckDBPyConnection, str)
        The connection (:func:`intake_bfa.remote.relation.filesystem_of` gives its transfer
        counters) and the pinned version.

    Raises
    ------
    QueryError
        When the version publishes no table as a Parquet asset.
    NotCachedError
        Offline (``BFA_OFFLINE=1``).
    """
    from intake_bfa.remote.relation import remote_connection, remote_tables, remote_url
    from intake_bfa.resolve import resolve_version

    pinned = resolve_version(version, settings=settings)
    # The tables published as Parquet (on the rolling layout only volume_rankings): a query
    # of another one fails on its own, naming the table, like a missing local dataset.
    tables = [t for t in TABLES if t in remote_tables(pinned, settings=settings)]
    if not tables:
        raise QueryError(
            f"version {pinned} publishes no table as a Parquet asset, so nothing can be "
            "queried remotely; run the query without --remote (it downloads the data once)",
            version=pinned,
        )
    allowed = [remote_url(name, pinned, settings=settings) for name in tables]
    # Always our filesystem (never httpfs): its token rules, checks and byte counters.
    con = remote_connection(pinned, settings=settings, datasets=tables, engine="fsspec")
    _lock(con, allowed)
    return con, pinned


#: DuckDB settings :func:`locked_connection` accepts as ``limits``.
_LIMIT_SETTINGS = ("memory_limit", "threads", "max_temp_directory_size")


@contextmanager
def deadline(con: Any, seconds: float | None) -> Iterator[None]:
    """Interrupt ``con``'s running query after ``seconds`` (DuckDB raises InterruptException)."""
    if seconds is None:
        yield
        return
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _lock(con: Any, allowed: list[str]) -> None:
    """Allow ``allowed`` only, disable extensions and external access, lock the settings."""
    con.execute("SET allowed_paths = ?", [allowed])
    for setting, value in (
        ("autoinstall_known_extensions", False),
        ("autoload_known_extensions", False),
        ("allow_community_extensions", False),
        ("enable_external_access", False),
        # No Python variable of the caller's frame is scanned for an unknown table name.
        ("python_enable_replacements", False),
    ):
        con.execute(f"SET {setting} = ?", [value])
    con.execute("SET lock_configuration = true")
    log.debug("locked SQL connection over %s", ", ".join(allowed))
