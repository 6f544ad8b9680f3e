"""Plumbing of :class:`intake_bfa.query.Query`: the pinned version, the connection, validation.

Kept apart from the questions themselves (:mod:`intake_bfa.query`) so each module stays
small. Every check raises :class:`~intake_bfa.errors.QueryError` with a one-line message.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import query_sql as S
from .config import Settings, get_settings
from .datasets import DateLike, _date, ensure_local
from .errors import QueryError
from .resolve import get_manifest, resolve_release

log = logging.getLogger(__name__)


class QueryBase:
    """Version pinning, the DuckDB connections and input validation of :class:`Query`.

    See :class:`intake_bfa.query.Query` for the parameters.
    """

    def __init__(self, version: str = "latest", settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        pinned, release = resolve_release(version, self.settings)
        self._manifest = get_manifest(self.settings, pinned, release)
        self.version: str = self._manifest.version
        self._con: Any = None
        self._views: set[str] = set()
        self._sql_con: Any = None
        self._sql_database = False
        self._coverage: tuple[dt.date, dt.date] | None = None
        if self._manifest.coverage:
            lo, hi = self._manifest.coverage
            self._coverage = (dt.date.fromisoformat(lo), dt.date.fromisoformat(hi))
        self._symbols: frozenset[str] | None = None
        self._quotes: frozenset[str] | None = None
        #: DuckDB settings applied to the locked SQL connection before it is locked,
        #: e.g. ``{"memory_limit": "1GB", "threads": 2}`` (a server bounds each query).
        self.sql_limits: dict[str, Any] = {}
        log.debug("query pinned to %s of %s", self.version, self.settings.repo)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r}, repo={self.settings.repo!r})"

    def __enter__(self) -> QueryBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the DuckDB connections; relations returned earlier stop working."""
        for con in (self._con, self._sql_con):
            if con is not None:
                con.close()
        self._con = self._sql_con = None
        self._views.clear()

    # --- plumbing ----------------------------------------------------------------------------

    def path(self, dataset: str) -> Path:
        """Verified local file of ``dataset`` at this version (downloaded on first need)."""
        return ensure_local(self.settings, self._manifest, dataset)

    def _connection(self, views: Sequence[str]) -> Any:
        import duckdb

        if self._con is None:
            self._con = duckdb.connect(":memory:")
        for name in views:
            if name not in self._views:
                self._con.read_parquet(str(self.path(name))).create_view(name, replace=True)
                self._views.add(name)
        return self._con

    def _run(self, sql: str, params: list[Any], views: Sequence[str], as_relation: bool):
        import duckdb

        con = self._connection(views)
        log.debug("query %s params %r", " ".join(sql.split()), params)
        try:
            if as_relation:
                return con.sql(sql, params=params)
            return con.execute(sql, params).df()
        except duckdb.Error as err:
            raise S.sql_error(err) from None

    @property
    def coverage(self) -> tuple[dt.date, dt.date]:
        """``(first_date, last_date)`` covered by this version (inclusive)."""
        if self._coverage is None:
            # Releases without coverage in their manifest: ask the data once.
            lo, hi = self._connection(["daily_availability"]).execute(S.COVERAGE).fetchall()[0]
            self._coverage = (lo, hi)
        return self._coverage

    def _day(self, value: DateLike, name: str) -> dt.date:
        if isinstance(value, bool) or not isinstance(value, (str, dt.date)):
            raise QueryError(
                f"{name}={value!r} is not a date; use YYYY-MM-DD (e.g. 2021-03-04)",
                argument=name,
                value=value,
            )
        day = _date(value, name)
        lo, hi = self.coverage
        if not lo <= day <= hi:
            raise QueryError(
                f"{name} {day} is outside the coverage of version {self.version} ({lo} .. {hi})",
                argument=name,
                value=str(day),
                coverage=(str(lo), str(hi)),
            )
        return day

    def _window(
        self, start: DateLike | None, end: DateLike | None, *, single: bool = False
    ) -> tuple[dt.date, dt.date]:
        """Inclusive bounds; None means the coverage edge (``single``: end defaults to start)."""
        lo = self._day(start, "start") if start is not None else self.coverage[0]
        if end is not None:
            hi = self._day(end, "end")
        else:
            hi = lo if single and start is not None else self.coverage[1]
        if lo > hi:
            raise QueryError(f"start {lo} is after end {hi}", start=str(lo), end=str(hi))
        return lo, hi

    def _known_symbols(self) -> frozenset[str]:
        if self._symbols is None:
            rows = self._connection(["symbols"]).execute(S.KNOWN_SYMBOLS).fetchall()
            self._symbols = frozenset(r[0] for r in rows)
        return self._symbols

    def _symbol(self, symbol: str) -> str:
        if not isinstance(symbol, str) or not symbol:
            raise QueryError(f"symbol must be a non-empty string, not {symbol!r}", symbol=symbol)
        known = self._known_symbols()
        if symbol in known:
            return symbol
        # Compare upper-cased so "btcusdt" suggests BTCUSDT; suggest the real spelling.
        by_upper = {s.upper(): s for s in known}
        close = difflib.get_close_matches(symbol.upper(), list(by_upper), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(by_upper[c] for c in close)}?" if close else ""
        raise QueryError(
            f"unknown symbol {symbol!r} in version {self.version}{hint}",
            symbol=symbol,
            suggestions=[by_upper[c] for c in close],
        )

    def _filters(
        self, quote: str | None, kind: str | None, listed_now: bool | None = None
    ) -> tuple[str, list[Any]]:
        """Constant SQL fragments for the optional symbol filters, and their values."""
        sql, params = "", []
        if quote is not None:
            if self._quotes is None:
                rows = self._connection(["symbols"]).execute(S.KNOWN_QUOTES).fetchall()
                self._quotes = frozenset(r[0] for r in rows)
            wanted = str(quote).upper()
            if wanted not in self._quotes:
                raise QueryError(
                    f"unknown quote asset {quote!r}; this version has "
                    f"{', '.join(sorted(self._quotes))}",
                    quote=quote,
                )
            sql, params = sql + S.QUOTE_FILTER, [*params, wanted]
        if kind is not None:
            wanted = str(kind).lower()
            if wanted not in S.KINDS:
                raise QueryError(
                    f"unknown contract kind {kind!r}; use one of {', '.join(S.KINDS)}", kind=kind
                )
            sql, params = sql + S.KIND_FILTER, [*params, wanted]
        if listed_now is not None:
            sql, params = sql + S.LISTED_FILTER, [*params, bool(listed_now)]
        return sql, params

    # --- user SQL ----------------------------------------------------------------------------

    def sql(
        self,
        text: str,
        *,
        database: bool = False,
        as_relation: bool = False,
        timeout: float | None = None,
        max_rows: int | None = None,
        arrow: bool = False,
    ):
        """Run one read-only ``SELECT`` on the datasets, safely.

        Views ``daily_availability``, ``volume_rankings`` and ``symbols`` read this
        version's cached files; ``database=True`` also attaches ``availability_db``
        read-only as schema ``db`` (``db.daily_symbol_counts``...; downloads it).
        The connection cannot touch any other file, the network or extensions, and
        its settings are locked (see :func:`intake_bfa.query_sql.locked_connection`).

        Parameters
        ----------
        text
            One SELECT (also WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE).
        database
            Also attach ``availability_db`` as schema ``db``.
        as_relation
            Return a lazy DuckDB relation (no ``timeout``/``max_rows`` then).
        timeout
            Seconds the query may run; it is interrupted after that.
        max_rows
            Refuse results longer than this (DuckDB stops after ``max_rows + 1`` rows).
        arrow
            Return a ``pyarrow.Table`` instead of a pandas DataFrame.

        Raises
        ------
        QueryError
            For anything but one SELECT statement, for DuckDB's errors (its message,
            first line), and when ``timeout`` or ``max_rows`` is exceeded (context
            ``reason`` is ``"timeout"`` or ``"too_many_rows"``).
        """
        import duckdb

        S.check_select(text)
        if as_relation and (timeout is not None or max_rows is not None):
            raise QueryError("timeout and max_rows apply to executed queries, not relations")
        con = self._locked(database)
        try:
            if as_relation:
                return con.sql(text)
            relation = con.sql(text)
            if max_rows is not None:
                relation = relation.limit(max_rows + 1)
            with S.deadline(con, timeout):
                table = relation.to_arrow_table()
        except duckdb.InterruptException:
            raise QueryError(
                f"the query ran longer than {timeout:g} s and was stopped; narrow it "
                "(fewer days or symbols) or aggregate",
                reason="timeout",
                timeout=timeout,
            ) from None
        except duckdb.Error as err:
            raise S.sql_error(err) from None
        if max_rows is not None and table.num_rows > max_rows:
            raise QueryError(
                f"the result has more than {max_rows:,} rows; add a LIMIT, filter or aggregate",
                reason="too_many_rows",
                max_rows=max_rows,
            )
        return table if arrow else table.to_pandas()

    def _locked(self, database: bool) -> Any:
        if self._sql_con is not None and (self._sql_database or not database):
            return self._sql_con
        if self._sql_con is not None:
            self._sql_con.close()
        files = {name: self.path(name) for name in S.TABLES}
        db = self.path("availability_db") if database else None
        self._sql_con = S.locked_connection(files, db, limits=self.sql_limits)
        self._sql_database = database
        return self._sql_con


def fetch_arrow(relation: Any):
    """Execute a relation into a ``pyarrow.Table``; DuckDB errors become :class:`QueryError`."""
    import duckdb

    try:
        return relation.to_arrow_table()
    except duckdb.Error as err:
        raise S.sql_error(err) from None
