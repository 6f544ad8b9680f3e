"""Answers to the questions users ask, from one pinned version of the datasets.

>>> from intake_bfa.query import Query
>>> q = Query()                                  # "latest", resolved once, then pinned
>>> q.snapshot("2021-03-04")                     # symbols available that day
>>> q.universe("2021-01-01", "2021-03-31", min_volume=1e6, quote="USDT")
>>> q.timeline("BTCUSDT", as_relation=True)      # a lazy DuckDB relation instead

A :class:`Query` resolves its version once, at construction: every answer of one
object comes from the same version, even if "latest" moves meanwhile. It runs
DuckDB over the verified local files (downloaded on first need, one dataset at a
time) through one in-memory connection holding a view per dataset. Every method
returns a pandas DataFrame, or with ``as_relation=True`` a DuckDB relation on
that connection (valid until :meth:`Query.close`). Values are always bound as
parameters; bad input raises :class:`~intake_bfa.errors.QueryError` (a
``ValueError``) with a one-line message.

Definitions
-----------
listing
    A symbol's first available date (``symbols.first_date``). Symbols already
    trading when the data starts (2019-12-31) are "listed" on that first day.
delisting
    The last available date of a symbol that is not listed now
    (``symbols.listed_now`` is false: no file on the last two covered dates, or a
    ``...SETTLED`` history). "Now" is the end of the version's coverage, so a
    pinned version answers as of its own date; a symbol whose last two days are
    merely late on Binance Vision looks delisted until they appear.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intake_bfa import asof as A
from intake_bfa.config import Settings, get_settings
from intake_bfa.datasets import arrow_to_pandas, ensure_local
from intake_bfa.errors import QueryError
from intake_bfa.filters import DateLike, as_date
from intake_bfa.query import sql as S
from intake_bfa.releases import missing_dataset_note
from intake_bfa.resolve import pin
from intake_bfa.symbols import match_symbols, parquet_symbols

log = logging.getLogger(__name__)

__all__ = ["Query", "fetch_arrow"]


class Query:
    """Query the datasets of one pinned version.

    Parameters
    ----------
    version
        ``"latest"`` (resolved now, once) or a pinned version such as ``"2026-11-20"``.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.
    as_of
        Answer as the data could have been known at this UTC instant (``"2024-03-05T09:00Z"``,
        a ``datetime``, naive = UTC; a date = its 00:00 UTC), or ``"D+1T09:00Z"``: each day
        as known at 09:00 UTC the next day (publication lag). See :mod:`intake_bfa.asof`.
    lag
        The publication lag alone: ``"09:00"`` or a ``timedelta`` after each day's end.

    Attributes
    ----------
    version : str
        The concrete version every answer comes from.
    as_of : intake_bfa.asof.AsOf or None
        When answers are known (None: as published).
    coverage : tuple of datetime.date
        First and last covered day (inclusive); with a fixed ``as_of``, the last day that
        had ended by then.

    Notes
    -----
    A Query holds one DuckDB connection and is not thread-safe: use one per thread
    (creating one costs a few cached-file reads, no download). Use it as a context
    manager, or call :meth:`close`, to release the connection. :meth:`sql` runs a
    user's SELECT on a separate, locked-down connection.
    """

    # --- pinning, connections and validation ------------------------------------------------

    def __init__(
        self,
        version: str = "latest",
        settings: Settings | None = None,
        *,
        as_of: Any = None,
        lag: Any = None,
    ) -> None:
        self.as_of: A.AsOf | None = A.parse_as_of(as_of, lag)
        self.settings = settings or get_settings()
        self._manifest = pin(version, self.settings)
        self.version: str = self._manifest.version
        self._con: Any = None
        self._views: set[str] = set()
        self._sql_con: Any = None
        self._sql_database = False
        self._coverage: tuple[dt.date, dt.date] | None = None
        self._coverages: dict[str, tuple[dt.date, dt.date]] = {}
        if self._manifest.coverage:
            lo, hi = self._manifest.coverage
            self._coverage = (dt.date.fromisoformat(lo), dt.date.fromisoformat(hi))
        self._symbols: frozenset[str] | None = None
        self._all_symbols: frozenset[str] | None = None
        self._quotes: frozenset[str] | None = None
        #: DuckDB settings applied to the locked SQL connection before it is locked,
        #: e.g. ``{"memory_limit": "1GB", "threads": 2}`` (a server bounds each query).
        self.sql_limits: dict[str, Any] = {}
        log.debug("query pinned to %s of %s", self.version, self.settings.repo)
        if self.as_of is not None:
            self.coverage  # noqa: B018 - a fixed instant before the data fails now
            if "availability_events" not in self._manifest.datasets:
                A.warn_rolling()

    def __repr__(self) -> str:
        when = f", as_of={str(self.as_of)!r}" if self.as_of is not None else ""
        return f"{type(self).__name__}(version={self.version!r}{when}, repo={self.settings.repo!r})"

    @property
    def label(self) -> str:
        """The version, and when answers are known: ``2024-03-15 as of 2024-03-05T09:00Z``."""
        return self.version if self.as_of is None else f"{self.version} as of {self.as_of}"

    def __enter__(self) -> Query:
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
        from intake_bfa import interrupt

        if self._con is None:
            self._con = interrupt.connect(":memory:")
        if self.as_of is not None:
            wanted = [n for n in views if n in A.AS_OF_DATASETS and n not in self._views]
            if wanted:
                self._views.update(A.install(self._con, self.as_of, self._as_of_files(), wanted))
        for name in views:
            if name not in self._views:
                self._con.read_parquet(str(self.path(name))).create_view(name, replace=True)
                self._views.add(name)
        return self._con

    def _as_of_files(self) -> dict[str, Path]:
        """The files the as-of tables are computed from (the events only if published)."""
        names = ["daily_availability"]
        if "availability_events" in self._manifest.datasets:
            names.append("availability_events")
        return {name: self.path(name) for name in names}

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
        return self._as_of_coverage(self._coverage)

    def _as_of_coverage(self, coverage: tuple[dt.date, dt.date]) -> tuple[dt.date, dt.date]:
        """``coverage`` cut at the last day that had ended by a fixed ``as_of``."""
        last = self.as_of.last_day if self.as_of is not None else None
        if last is None or (coverage[1] is not None and last >= coverage[1]):
            return coverage
        if coverage[0] is None or last < coverage[0]:
            raise QueryError(
                f"as_of {self.as_of} is before the first day of version {self.version} "
                f"({coverage[0]}) had ended: nothing was known yet",
                as_of=str(self.as_of),
                coverage=tuple(map(str, coverage)),
            )
        return coverage[0], last

    def _coverage_of(self, dataset: str) -> tuple[dt.date, dt.date]:
        """The days ``dataset`` covers: from the manifest, else from that dataset alone.

        Never from another dataset, so checking a date for ``top`` reads the rankings
        file, not the (rolling layout's) whole database.
        """
        if dataset == "daily_availability" or self.as_of is not None:
            # As of a time, every table is computed from daily_availability as known then.
            return self.coverage
        if dataset not in self._coverages:
            entry = self._manifest.datasets.get(dataset)
            if entry is not None and entry.coverage:
                lo, hi = (dt.date.fromisoformat(d) for d in entry.coverage)
            else:
                con = self._connection([dataset])
                lo, hi = con.execute(S.coverage_sql(dataset)).fetchall()[0]
            self._coverages[dataset] = (lo, hi)
        return self._as_of_coverage(self._coverages[dataset])

    def _day(self, value: DateLike, name: str, dataset: str = "daily_availability") -> dt.date:
        if isinstance(value, bool) or not isinstance(value, (str, dt.date)):
            raise QueryError(
                f"{name}={value!r} is not a date; use YYYY-MM-DD (e.g. 2021-03-04)",
                argument=name,
                value=value,
            )
        day = as_date(value, name)
        lo, hi = self._coverage_of(dataset)
        if not lo <= day <= hi:
            raise QueryError(
                f"{name} {day} is outside the coverage of version {self.label} ({lo} .. {hi})",
                argument=name,
                value=str(day),
                coverage=(str(lo), str(hi)),
            )
        return day

    def _window(
        self,
        start: DateLike | None,
        end: DateLike | None,
        *,
        single: bool = False,
        dataset: str = "daily_availability",
    ) -> tuple[dt.date, dt.date]:
        """Inclusive bounds; None means the coverage edge of ``dataset`` (``single``: end
        defaults to start)."""
        coverage = self._coverage_of(dataset)
        lo = self._day(start, "start", dataset) if start is not None else coverage[0]
        if end is not None:
            hi = self._day(end, "end", dataset)
        else:
            hi = lo if single and start is not None else coverage[1]
        if lo > hi:
            raise QueryError(f"start {lo} is after end {hi}", start=str(lo), end=str(hi))
        return lo, hi

    def _known_symbols(self) -> frozenset[str]:
        if self._symbols is None:
            rows = self._connection(["symbols"]).execute(S.KNOWN_SYMBOLS).fetchall()
            self._symbols = frozenset(r[0] for r in rows)
        return self._symbols

    def _symbol(self, symbol: str) -> str:
        """``symbol`` in its real spelling (see :func:`intake_bfa.symbols.match_symbols`)."""
        if not isinstance(symbol, str) or not symbol:
            raise QueryError(f"symbol must be a non-empty string, not {symbol!r}", symbol=symbol)
        if symbol in self._known_symbols():
            return symbol
        # The symbols table lists symbols that ever had a file; one whose every row is
        # unavailable (e.g. a pair that never got a file) still has a timeline, so the
        # daily file's own symbols (read once per file) count too.
        if self._all_symbols is None:
            daily = parquet_symbols(self.path("daily_availability"), con=self._connection([]))
            self._all_symbols = self._known_symbols() | daily
        return match_symbols([symbol], self._all_symbols, version=self.version)[0]

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
        max_bytes: int | None = None,
        arrow: bool = False,
    ):
        """Run one read-only ``SELECT`` on the datasets, safely.

        Views ``daily_availability``, ``volume_rankings`` and ``symbols`` read this
        version's cached files; ``database=True`` also attaches ``availability_db``
        read-only as schema ``db`` (``db.daily_symbol_counts``...; downloads it).
        The connection cannot touch any other file, the network or extensions, and
        its settings are locked (see :func:`intake_bfa.query.sql.locked_connection`).

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
        max_bytes
            Refuse results over this many bytes (Arrow buffers). With ``max_rows`` or
            ``max_bytes`` the result is fetched in batches of :data:`SQL_BATCH_ROWS`
            rows, the caps checked as they arrive: the query is stopped at the first
            batch past a cap instead of being built whole.
        arrow
            Return a ``pyarrow.Table`` instead of a pandas DataFrame.

        Raises
        ------
        QueryError
            For anything but one SELECT statement, for DuckDB's errors (its message,
            first line), and when ``timeout`` or ``max_rows`` is exceeded (context
            ``reason`` is ``"timeout"``, ``"too_many_rows"`` or ``"too_large"``).
        """
        import duckdb

        S.check_select(text)
        capped = max_rows is not None or max_bytes is not None
        if as_relation and (timeout is not None or capped):
            raise QueryError(
                "timeout, max_rows and max_bytes apply to executed queries, not relations"
            )
        con = self._locked(database)
        try:
            if as_relation:
                return con.sql(text)
            relation = con.sql(text)
            if max_rows is not None:
                relation = relation.limit(max_rows + 1)
            with S.deadline(con, timeout):
                if capped:
                    table = _fetch_capped(con, relation, max_rows, max_bytes)
                else:
                    table = relation.to_arrow_table()
        except duckdb.InterruptException:
            raise QueryError(
                f"the query ran longer than {timeout:g} s and was stopped; narrow it "
                "(fewer days or symbols) or aggregate",
                reason="timeout",
                timeout=timeout,
            ) from None
        except duckdb.CatalogException as err:
            raise self._unknown_table(err) from None
        except duckdb.Error as err:
            raise S.sql_error(err) from None
        if max_rows is not None and table.num_rows > max_rows:
            raise QueryError(
                f"the result has more than {max_rows:,} rows; add a LIMIT, filter or aggregate",
                reason="too_many_rows",
                max_rows=max_rows,
            )
        return table if arrow else arrow_to_pandas(table)

    def _unknown_table(self, err: Exception) -> QueryError:
        """A missing table named with what there is (see :func:`S.unknown_table_error`)."""
        views = [t for t in S.TABLES if t in self._manifest.datasets]
        if self._sql_database:
            views.append(f"{S.DATABASE_SCHEMA}.* (availability_db)")

        def absent(name: str) -> str:
            note = missing_dataset_note(self._manifest.layout, name)
            return f"version {self.version} has no {name} dataset ({note})"

        return S.unknown_table_error(err, views, absent)

    def _locked(self, database: bool) -> Any:
        if self._sql_con is not None and (self._sql_database or not database):
            return self._sql_con
        if self._sql_con is not None:
            self._sql_con.close()
        # Only the datasets this version has: a release without one (the upstream's rolling
        # layout skips its rankings file when that step fails) still answers the others.
        files = {name: self.path(name) for name in S.TABLES if name in self._manifest.datasets}
        db = self.path("availability_db") if database else None
        self._sql_con = S.locked_connection(files, db, limits=self.sql_limits, as_of=self.as_of)
        self._sql_database = database
        return self._sql_con

    # --- questions ---------------------------------------------------------------------------

    def snapshot(
        self,
        date: DateLike,
        *,
        quote: str | None = None,
        kind: str | None = None,
        as_relation: bool = False,
    ):
        """Symbols available on ``date``, one row each, ordered by symbol.

        Parameters
        ----------
        date
            A day inside :attr:`coverage` (``YYYY-MM-DD`` string or ``datetime.date``).
        quote
            Keep only this quote asset (``USDT``, ``USDC``...; case-insensitive).
        kind
            Keep only ``perpetual``, ``delivery`` or ``settled`` contracts.
        as_relation
            Return a lazy DuckDB relation instead of a DataFrame.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            date, symbol, contract_kind, quote_asset, file_size_bytes, last_modified,
            quote_volume_usdt, trade_count.
        """
        day = self._day(date, "date")
        filters, values = self._filters(quote, kind)
        sql = S.SNAPSHOT.format(filters=filters)
        return self._run(sql, [day, *values], ["daily_availability", "symbols"], as_relation)

    def available_in(
        self,
        start: DateLike,
        end: DateLike,
        *,
        quote: str | None = None,
        kind: str | None = None,
        as_relation: bool = False,
    ):
        """Symbols available on at least one day of ``start`` .. ``end`` (inclusive).

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            symbol, contract_kind, quote_asset, first_available, last_available and
            days_available, all within the range.
        """
        lo, hi = self._window(start, end)
        filters, values = self._filters(quote, kind)
        sql = S.AVAILABLE_IN.format(filters=filters)
        return self._run(sql, [lo, hi, *values], ["daily_availability", "symbols"], as_relation)

    def timeline(
        self,
        symbol: str,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        as_relation: bool = False,
    ):
        """Every ``daily_availability`` row of ``symbol`` (available or not), by date.

        ``start``/``end`` default to the coverage; all columns are returned.
        """
        sym = self._symbol(symbol)
        lo, hi = self._window(start, end)
        return self._run(S.TIMELINE, [sym, lo, hi], ["daily_availability"], as_relation)

    def lifetime(self, symbol: str, *, as_relation: bool = False):
        """The ``symbols`` row of ``symbol``: first/last available date, listed-now, gaps..."""
        sym = self._symbol(symbol)
        return self._run(S.LIFETIME, [sym], ["symbols"], as_relation)

    def symbols(
        self,
        *,
        quote: str | None = None,
        kind: str | None = None,
        listed_now: bool | None = None,
        as_relation: bool = False,
    ):
        """The ``symbols`` table (every symbol ever available), optionally filtered."""
        filters, values = self._filters(quote, kind, listed_now)
        return self._run(S.SYMBOLS.format(filters=filters), values, ["symbols"], as_relation)

    def listings(
        self,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        quote: str | None = None,
        kind: str | None = None,
        as_relation: bool = False,
    ):
        """New listings (first available date) on ``start``, or over ``start`` .. ``end``.

        ``end`` omitted: the single day ``start``; both omitted: the whole coverage.
        Columns: date (the first available date), symbol, contract_kind, quote_asset,
        last_date, listed_now.
        """
        lo, hi = self._window(start, end, single=True)
        filters, values = self._filters(quote, kind)
        sql = S.LISTINGS.format(filters=filters)
        return self._run(sql, [lo, hi, *values], ["symbols"], as_relation)

    def delistings(
        self,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        quote: str | None = None,
        kind: str | None = None,
        as_relation: bool = False,
    ):
        """Delistings on ``start``, or over ``start`` .. ``end`` (same defaults as listings).

        A delisting is the last available date of a symbol that is not listed now
        (see the module docstring). Columns: date (the last available date), symbol,
        contract_kind, quote_asset, first_date, days_available.
        """
        lo, hi = self._window(start, end, single=True)
        filters, values = self._filters(quote, kind)
        sql = S.DELISTINGS.format(filters=filters)
        return self._run(sql, [lo, hi, *values], ["symbols"], as_relation)

    def counts(
        self,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        as_relation: bool = False,
    ):
        """Per date: available_symbols, listings and delistings (defaults: whole coverage)."""
        lo, hi = self._window(start, end)
        return self._run(S.COUNTS, [lo, hi], ["daily_availability", "symbols"], as_relation)

    def gaps(self, symbol: str | None = None, *, as_relation: bool = False):
        """Runs of missing days between a symbol's first and last available date.

        Parameters
        ----------
        symbol
            One symbol, or None for every symbol.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            symbol, start, end (first and last missing day, inclusive), days.
        """
        if symbol is None:
            return self._run(S.GAPS.format(filters=""), [], ["daily_availability"], as_relation)
        sql = S.GAPS.format(filters=S.GAPS_SYMBOL_FILTER)
        return self._run(sql, [self._symbol(symbol)], ["daily_availability"], as_relation)

    def top(self, date: DateLike, n: int = 10, *, as_relation: bool = False):
        """The ``n`` symbols with the largest quote volume on ``date`` (rank 1 first).

        Ranks are dense, so ties share a rank; ties are broken by symbol to pick ``n``.
        """
        day = self._day(date, "date", "volume_rankings")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise QueryError(f"n must be a whole number >= 1, not {n!r}", n=n)
        return self._run(S.TOP, [day, n], ["volume_rankings"], as_relation)

    def rank_history(
        self,
        symbol: str,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        as_relation: bool = False,
    ):
        """A symbol's daily rank, volume, market share and rank changes, by date."""
        # A ranked symbol is known without the symbols table (on the rolling layout that
        # table comes from the whole database); anything else gets the usual check.
        con = self._connection(["volume_rankings"])
        ranked = isinstance(symbol, str) and con.execute(S.RANKED, [symbol]).fetchall()
        sym = symbol if ranked else self._symbol(symbol)
        lo, hi = self._window(start, end, dataset="volume_rankings")
        return self._run(S.RANK_HISTORY, [sym, lo, hi], ["volume_rankings"], as_relation)

    def universe(
        self,
        start: DateLike,
        end: DateLike,
        *,
        every_day: bool = True,
        on: DateLike | None = None,
        min_volume: float | None = None,
        quote: str | None = None,
        kind: str | None = None,
        by: str = "symbol",
        as_relation: bool = False,
    ):
        """A survivorship-free universe for a backtest over ``start`` .. ``end``.

        Delisted, settled and expired contracts are included whenever they meet the
        condition: membership depends only on data inside the window.

        A row is always one contract, i.e. one symbol: when Binance reuses a ticker, the
        old contract's history is renamed (``BNXUSDTSETTLED``) and the new one trades under
        the plain ticker (``BNXUSDT``); the two are never merged, since their prices and
        volumes are those of different instruments. ``by="contract"`` says which rows
        share a ticker.

        Parameters
        ----------
        start, end
            The window (inclusive), inside :attr:`coverage`.
        every_day
            True (default): symbols available on *every* day of the window.
            False: available on at least one day.
        on
            Instead of ``every_day``: symbols available on this day (inside the window);
            the window then only serves the volume criterion.
        min_volume
            Minimum *average* daily quote volume (``quote_volume_usdt``, in the quote
            asset) over the window's available days with a known volume. An average,
            not an every-day minimum, so one quiet or unreported day does not drop a
            liquid symbol; ``min_quote_volume`` is returned for a stricter filter.
            Symbols without any known volume in the window are excluded when set.
            To avoid look-ahead, end the window at the rebalancing date.
        quote, kind
            Keep only this quote asset / contract kind.
        by
            ``"symbol"`` (default): one row per symbol, ordered by symbol.
            ``"contract"``: the same rows, each with the ``ticker`` it traded under and the
            ``predecessor`` / ``successor`` contracts of that ticker (whether or not they are
            in the universe), ordered by ticker, oldest contract first. There is no
            ``"ticker"``: one row for both contracts of a reused ticker would add up two
            instruments' volumes and join two unrelated price histories.
        as_relation
            Return a lazy DuckDB relation instead of a DataFrame.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            symbol, contract_kind, quote_asset, days_available, window_days,
            avg_quote_volume, min_quote_volume, first_date, last_date, listed_now;
            ``by="contract"`` adds ticker (second) and predecessor, successor (last).

        Raises
        ------
        QueryError
            For a date outside the coverage, an unknown quote asset, contract kind or
            ``by``, or a negative ``min_volume``.
        """
        if not isinstance(by, str) or by not in S.UNIVERSE_BY:
            hint = (
                "; a ticker's contracts are kept apart (by='contract' gives each row its ticker)"
                if by == "ticker"
                else ""
            )
            raise QueryError(
                f"by must be one of {', '.join(map(repr, S.UNIVERSE_BY))}, not {by!r}{hint}",
                by=by,
            )
        lo, hi = self._window(start, end)
        window_days = (hi - lo).days + 1
        params: list[Any] = []
        if on is not None:
            if not every_day:
                raise QueryError("give either on=DATE or every_day=False, not both")
            day = self._day(on, "on")
            if not lo <= day <= hi:
                raise QueryError(f"on {day} is outside the window {lo} .. {hi}", on=str(day))
            condition = S.UNIVERSE_ON_DAY
        elif every_day:
            day, condition = hi, S.UNIVERSE_EVERY_DAY
            params.append(window_days)
        else:
            day, condition = hi, S.UNIVERSE_ANY_DAY
        if min_volume is not None:
            if (
                isinstance(min_volume, bool)
                or not isinstance(min_volume, (int, float))
                or not math.isfinite(min_volume)
                or min_volume < 0
            ):
                raise QueryError(
                    f"min_volume must be a number >= 0, not {min_volume!r}", min_volume=min_volume
                )
            condition += S.UNIVERSE_MIN_VOLUME
            params.append(float(min_volume))
        filters, values = self._filters(quote, kind)
        sql = S.UNIVERSE_BY[by].format(condition=condition, filters=filters)
        return self._run(
            sql,
            [day, lo, hi, window_days, *params, *values],
            ["daily_availability", "symbols"],
            as_relation,
        )

    # --- when data appears ---------------------------------------------------------------

    def _latency_sql(
        self,
        template: str,
        start: DateLike | None,
        end: DateLike | None,
        symbols: Any,
        exact_only: bool,
    ) -> tuple[str, list[Any]]:
        """``template`` with its first_seen source and filters, and its values."""
        lo, hi = self._window(start, end)
        filters, params = "", [lo, hi]
        if symbols is not None:
            if isinstance(symbols, str):
                symbols = [symbols]
            wanted = list(dict.fromkeys(self._symbol(s) for s in symbols))
            if not wanted:
                raise QueryError("symbols is empty; give at least one symbol or None for all")
            filters, params = S.LATENCY_SYMBOLS_FILTER, [*params, wanted]
        con = self._connection(["daily_availability"])
        columns = {c for (c,) in con.execute(S.VIEW_COLUMNS, ["daily_availability"]).fetchall()}
        first_seen = S.LATENCY_FIRST_SEEN if "first_seen" in columns else S.LATENCY_LAST_MODIFIED
        exact = S.LATENCY_EXACT_FILTER if exact_only else ""
        for name, fragment in (("first_seen", first_seen), ("filters", filters), ("exact", exact)):
            template = template.replace(f"{{{name}}}", fragment)
        return template, params

    def latency(
        self,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        symbols: str | Sequence[str] | None = None,
        exact_only: bool = False,
        as_relation: bool = False,
    ):
        """When each file appeared: its upload delay after the end of its day.

        Parameters
        ----------
        start, end
            Days of the files (inclusive); default the whole coverage.
        symbols
            One symbol or a list; None for every symbol.
        exact_only
            Only files whose first_seen is exact.
        as_relation
            Return a lazy DuckDB relation instead of a DataFrame.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            One row per available file, by date then symbol: symbol, date, first_seen,
            first_seen_exact and ``delay_hours`` = first_seen minus the end of ``date``
            (midnight UTC starting the next day), in hours: 8.5 means 08:30 UTC the next
            day, 48 two days late.

        Notes
        -----
        Where ``first_seen_exact`` is false, first_seen (hence the delay) is only an upper
        bound: the file's Last-Modified when no collector saw it arrive, which a later
        re-upload moves. Releases built before first_seen existed use the Last-Modified
        (not exact) for every row.
        """
        sql, params = self._latency_sql(S.LATENCY, start, end, symbols, exact_only)
        return self._run(sql, params, ["daily_availability"], as_relation)

    def latency_summary(
        self,
        start: DateLike | None = None,
        end: DateLike | None = None,
        *,
        symbols: str | Sequence[str] | None = None,
        exact_only: bool = False,
        by: str | None = None,
        as_relation: bool = False,
    ):
        """Percentiles of the upload delay: by what time the files of day D are there.

        Parameters
        ----------
        start, end, symbols
            As in :meth:`latency`.
        exact_only
            Count only files whose first_seen is exact. By default every file counts, the
            inexact ones with their upper bound (a delay never shorter than the real one):
            ``exact_files`` says how many are exact.
        by
            None (default): one row for the whole window; ``"date"``: one row per day;
            ``"symbol"``: one row per symbol (first column).
        as_relation
            Return a lazy DuckDB relation instead of a DataFrame.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            files, exact_files; ``p50_hours``, ``p90_hours``, ``p95_hours``, ``p99_hours``:
            delay percentiles in hours after the end of D (linear interpolation);
            ``p50_by`` .. ``p99_by``: the same as the time by which that share of files is
            there, e.g. ``"D+1 08:50 UTC"`` (rounded up to the minute; ``D+3`` is two days
            later); max_hours; ``late_1d_pct`` and ``late_7d_pct``: percent of files that
            arrived more than 1 and 7 days after the end of D. A window without files
            gives one row with files 0 and nulls.

        Raises
        ------
        QueryError
            For a date outside the coverage, an unknown symbol or ``by``.
        """
        if by not in S.LATENCY_GROUPS:
            choices = ", ".join(repr(k) for k in S.LATENCY_GROUPS)
            raise QueryError(f"by must be one of {choices}, not {by!r}", by=by)
        group = S.LATENCY_GROUPS[by]
        sql, params = self._latency_sql(S.LATENCY_SUMMARY, start, end, symbols, exact_only)
        sql = sql.format(
            group=f"{group}, " if group else "",
            group_by=f"GROUP BY {group}" if group else "",
            order_by=f"ORDER BY {group}" if group else "",
        )
        return self._run(sql, params, ["daily_availability"], as_relation)


#: Rows per Arrow batch when a user query's result is capped: the caps are checked per
#: batch, so this bounds the overshoot (DuckDB itself computes 2048-row vectors).
SQL_BATCH_ROWS = 256


def _fetch_capped(con: Any, relation: Any, max_rows: int | None, max_bytes: int | None):
    """Stream ``relation`` into a ``pyarrow.Table``, stopping at the first batch past a cap.

    DuckDB streams the result (only blocking operators such as ORDER BY or GROUP BY
    hold rows, within its ``memory_limit``), so a huge result costs one batch past
    the cap, not its whole size.
    """
    import pyarrow as pa

    reader = relation.to_arrow_reader(SQL_BATCH_ROWS)
    batches, rows, size = [], 0, 0
    try:
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
            if max_rows is not None and rows > max_rows:
                raise QueryError(
                    f"the result has more than {max_rows:,} rows; add a LIMIT, filter or aggregate",
                    reason="too_many_rows",
                    max_rows=max_rows,
                )
            if max_bytes is not None and size > max_bytes:
                raise QueryError(
                    f"the result is over the limit of {max_bytes:,} bytes; select fewer "
                    "columns or rows",
                    reason="too_large",
                    max_bytes=max_bytes,
                )
        schema = reader.schema
    except QueryError:
        con.interrupt()  # stop DuckDB's pipeline now, not at its next vector
        raise
    finally:
        reader.close()
    return pa.Table.from_batches(batches, schema=schema)


def fetch_arrow(relation: Any):
    """Execute a relation into a ``pyarrow.Table``; DuckDB errors become :class:`QueryError`."""
    import duckdb

    try:
        return relation.to_arrow_table()
    except duckdb.Error as err:
        raise S.sql_error(err) from None
