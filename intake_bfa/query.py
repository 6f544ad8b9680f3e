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

import logging
import math
from typing import Any

from . import query_sql as S
from .datasets import DateLike
from .errors import QueryError
from .query_base import QueryBase, fetch_arrow

log = logging.getLogger(__name__)

__all__ = ["Query", "fetch_arrow"]


class Query(QueryBase):
    """Query the datasets of one pinned version.

    Parameters
    ----------
    version
        ``"latest"`` (resolved now, once) or a pinned version such as ``"2026-11-20"``.
    settings
        Configuration; default :func:`intake_bfa.config.get_settings`.

    Attributes
    ----------
    version : str
        The concrete version every answer comes from.
    coverage : tuple of datetime.date
        First and last covered day (inclusive).

    Notes
    -----
    A Query holds one DuckDB connection and is not thread-safe: use one per thread
    (creating one costs a few cached-file reads, no download). Use it as a context
    manager, or call :meth:`close`, to release the connection. :meth:`sql` runs a
    user's SELECT on a separate, locked-down connection.
    """

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
        day = self._day(date, "date")
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
        sym = self._symbol(symbol)
        lo, hi = self._window(start, end)
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
        as_relation: bool = False,
    ):
        """A survivorship-free universe for a backtest over ``start`` .. ``end``.

        Delisted, settled and expired contracts are included whenever they meet the
        condition: membership depends only on data inside the window.

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
        as_relation
            Return a lazy DuckDB relation instead of a DataFrame.

        Returns
        -------
        pandas.DataFrame or duckdb.DuckDBPyRelation
            symbol, contract_kind, quote_asset, days_available, window_days,
            avg_quote_volume, min_quote_volume, first_date, last_date, listed_now.
        """
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
        sql = S.UNIVERSE.format(condition=condition, filters=filters)
        return self._run(
            sql,
            [day, lo, hi, window_days, *params, *values],
            ["daily_availability", "symbols"],
            as_relation,
        )
