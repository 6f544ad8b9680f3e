"""Symbol names a user asked for -> the real spelling in the data, or one clear error.

Every read path that takes symbols (:mod:`intake_bfa.datasets`, its intake readers,
:class:`~intake_bfa.query.Query`, the CLI and the HTTP API through it) checks them here,
so an unknown symbol raises the same :class:`~intake_bfa.errors.QueryError`, with
suggestions, everywhere instead of an empty result. Matching ignores case when that
is unambiguous (``btcusdt`` reads ``BTCUSDT``); an exact match always wins.

The symbols of a local Parquet file are read once per file (its ``symbol`` column,
dictionary-decoded only) and kept in a small in-process memo keyed by path, size and
modification time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from intake_bfa.errors import QueryError, nearest

#: Unknown symbols named in one message (the ``symbols`` attribute lists them all).
SHOWN = 5
#: Files whose symbol sets the memo keeps (a handful of versions x datasets).
MEMO_SIZE = 32


def fold(symbol: str) -> str:
    """The case-insensitive key of ``symbol`` (Unicode case folding)."""
    return symbol.casefold()


def match_symbols(
    wanted: Sequence[str],
    known: Collection[str],
    *,
    version: str | None = None,
    dataset: str | None = None,
) -> list[str]:
    """The real spelling of each symbol in ``wanted``, or one error naming every bad one.

    A symbol present in ``known`` as given is kept as given. Otherwise it matches the one
    symbol of ``known`` equal to it ignoring case; none is an unknown symbol, several
    (real symbols differing only by case) an ambiguous one.

    Parameters
    ----------
    wanted
        The symbols the user asked for.
    known
        The symbols that exist (in the file or version being read).
    version
        The version ``known`` comes from, named in the error.
    dataset
        The dataset ``known`` comes from (named in the error: a symbol may exist in the
        version but not in, e.g., ``volume_rankings``, which only lists traded symbols).

    Returns
    -------
    list of str
        One real symbol per entry of ``wanted``, in the same order.

    Raises
    ------
    QueryError
        When a symbol is unknown or ambiguous. Attributes: ``symbols`` (every such
        symbol), ``suggestions`` (real spellings, closest first: up to 3 per unknown
        symbol, every candidate of an ambiguous one), ``suggested`` (symbol -> its
        suggestions), ``ambiguous`` (the ambiguous symbols), ``version``, ``dataset`` and
        ``symbol`` (the first bad symbol).
    """
    known = known if isinstance(known, (set, frozenset, dict)) else frozenset(known)
    folded: dict[str, list[str]] | None = None
    out: list[str] = []
    bad: dict[str, list[str]] = {}
    ambiguous: list[str] = []
    for symbol in wanted:
        if symbol in known:
            out.append(symbol)
            continue
        if folded is None:
            folded = _by_fold(known)
        same = folded.get(fold(symbol), [])
        if len(same) == 1:
            out.append(same[0])
            continue
        if symbol in bad:
            continue
        if same:
            ambiguous.append(symbol)
            bad[symbol] = same
        else:
            bad[symbol] = suggest(symbol, known, by_fold=folded)
    if bad:
        raise _error(bad, ambiguous, version, dataset)
    return out


def suggest(
    symbol: str, known: Iterable[str], n: int = 3, *, by_fold: dict[str, list[str]] | None = None
) -> list[str]:
    """Up to ``n`` real symbols closest to ``symbol`` ignoring case, in their real spelling.

    Parameters
    ----------
    symbol
        The symbol the user asked for.
    known
        The symbols that exist.
    n
        How many suggestions (see :func:`intake_bfa.errors.nearest`).
    by_fold
        ``known`` grouped by :func:`fold`, when the caller has it already.

    Returns
    -------
    list of str
        The suggestions, closest first.
    """
    groups = by_fold if by_fold is not None else _by_fold(known)
    close = nearest(fold(symbol), sorted(groups), n=n)
    return [real for key in close for real in groups[key]][:n]


def _by_fold(known: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for real in sorted(known):
        groups.setdefault(fold(real), []).append(real)
    return groups


def _error(
    bad: dict[str, list[str]], ambiguous: list[str], version: str | None, dataset: str | None
) -> QueryError:
    if dataset and version:
        where = f" in {dataset} of version {version}"
    elif dataset or version:
        where = f" in {dataset}" if dataset else f" in version {version}"
    else:
        where = ""
    names = list(bad)

    def part(symbol: str) -> str:
        options = ", ".join(bad[symbol])
        if symbol in ambiguous:
            return f"{symbol!r} (matches {options}, which differ only by case: use one of them)"
        return f"{symbol!r}" + (f" (did you mean {options}?)" if options else "")

    if len(names) == 1 and not ambiguous:
        options = ", ".join(bad[names[0]])
        hint = f"; did you mean {options}?" if options else ""
        message = f"unknown symbol {names[0]!r}{where}{hint}"
    elif len(names) == 1:
        options = ", ".join(bad[names[0]])
        message = (
            f"symbol {names[0]!r} is ambiguous{where}: it matches {options}, which differ only "
            "by case; use the exact spelling"
        )
    else:
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        what = "unknown or ambiguous symbols" if ambiguous else "unknown symbols"
        message = f"{what}{where}: {', '.join(part(s) for s in names[:SHOWN])}{more}"
    suggestions = list(dict.fromkeys(real for s in names for real in bad[s]))
    return QueryError(
        message,
        symbol=names[0],
        symbols=names,
        suggestions=suggestions,
        suggested=dict(bad),
        ambiguous=list(ambiguous),
        version=version,
        dataset=dataset,
    )


def parquet_symbols(path: str | os.PathLike[str], *, con: Any = None) -> frozenset[str]:
    """The distinct values of the ``symbol`` column of a local Parquet file.

    Only that column is read: ~40 ms for the full-scale ``daily_availability`` (2.5 M
    rows), once per file and process; later calls for the unchanged file (same size and
    modification time) are a dictionary lookup (see :func:`cached_symbols`).

    Parameters
    ----------
    path
        A local Parquet file with a ``symbol`` column.
    con
        A DuckDB connection to read it with (a caller that has one need not import
        pyarrow); default pyarrow, the column read as a dictionary.

    Returns
    -------
    frozenset of str
    """
    key = _key(path)
    with _MEMO_LOCK:
        found = _MEMO.get(key)
    if found is not None:
        return found
    if con is not None:
        cursor = con.cursor()  # its own result: a pending one on ``con`` stays intact
        try:
            sql = 'SELECT DISTINCT "symbol" FROM read_parquet(?)'
            rows = cursor.execute(sql, [key[0]]).fetchall()
        finally:
            cursor.close()
        found = frozenset(r[0] for r in rows if r[0] is not None)
    else:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(key[0], columns=["symbol"], read_dictionary=["symbol"])
        found = frozenset(s for s in pc.unique(table.column(0)).to_pylist() if s is not None)
    with _MEMO_LOCK:
        _MEMO[key] = found
        while len(_MEMO) > MEMO_SIZE:
            del _MEMO[next(iter(_MEMO))]  # the oldest entry
    return found


def cached_symbols(path: str | os.PathLike[str]) -> frozenset[str] | None:
    """What :func:`parquet_symbols` returns, if it has read the unchanged file already.

    Parameters
    ----------
    path
        A local Parquet file.

    Returns
    -------
    frozenset of str or None
        None when the file's symbols are not in the memo (nothing is read).
    """
    key = _key(path)
    with _MEMO_LOCK:
        return _MEMO.get(key)


def _key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    stat = os.stat(path)
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


_MEMO: dict[tuple[str, int, int], frozenset[str]] = {}
_MEMO_LOCK = threading.Lock()
