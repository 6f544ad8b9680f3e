"""Tables as HTTP bodies: JSON, CSV or Parquet, chosen by ``?format=`` or ``Accept``.

JSON is ``{"version", "row_count", "columns": [{"name", "type"}], "rows": [{...}]}``:
strict JSON (NaN and infinities become null, which Python's ``json`` would otherwise
write as invalid tokens), dates and timestamps as ISO 8601 strings, decimals as
numbers, bytes as base64, integers beyond 64 bits exact. Written by orjson when
installed (the ``serve`` extra has it), else by the standard library.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import math
from typing import Any

from intake_bfa.errors import QueryError

#: Format name -> media type of the response.
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
#: Media types a client may ask for in ``Accept`` -> format name.
_ACCEPT = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


def choose_format(explicit: str | None, accept: str | None) -> str:
    """``?format=`` wins; else the first ``Accept`` media type we produce; else JSON."""
    if explicit:
        return explicit
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return "json"


def _default(value: Any) -> Any:
    # Types json cannot write, as they come out of Arrow's to_pylist().
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        # Integral decimals (DuckDB's HUGEINT arrives as decimal128(38, 0)) stay exact.
        return int(value) if value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def _finite(value: Any) -> Any:
    """Replace non-finite floats by None, deep (for the stdlib encoder, which refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_rows(table: Any) -> list[dict[str, Any]]:
    """Rows as dicts; non-finite floats are left to :func:`_dumps` (orjson or ``_finite``)."""
    # Duplicate column names (user SQL) would collapse in dicts: keep them apart.
    names, seen = [], {}
    for name in table.column_names:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return table.rename_columns(names).to_pylist()


#: Cells turned into Python objects at once while writing JSON or CSV: a wide or long
#: table is written slice by slice, its size checked after each.
_SLICE_CELLS = 65_536


def _slices(table: Any) -> Any:
    step = max(1, _SLICE_CELLS // max(1, table.num_columns))
    for start in range(0, table.num_rows, step):
        yield table.slice(start, step)


def _too_large(fmt: str, size: int, max_bytes: int) -> QueryError:
    return QueryError(
        f"the {fmt} result is over {size:,} bytes, over the limit of {max_bytes:,}; "
        "select fewer columns or rows",
        reason="too_large",
    )


def _json_body(doc: dict[str, Any], table: Any, max_bytes: int | None) -> bytes:
    """``doc`` with ``"rows"`` written slice by slice, stopping once over ``max_bytes``."""
    head = _dumps({**doc, "rows": []})
    assert head.endswith(b"[]}")
    parts, size = [head[:-2]], len(head)
    for piece in _slices(table):
        chunk = _dumps({"rows": _json_rows(piece)})  # {"rows":[...]}: keep the inside
        start, end = chunk.index(b"[") + 1, chunk.rindex(b"]")
        if end > start:
            if len(parts) > 1:
                parts.append(b",")
            parts.append(chunk[start:end])
            size += end - start + 1
        if max_bytes is not None and size > max_bytes:
            raise _too_large("json", size, max_bytes)
    parts.append(b"]}")
    return b"".join(parts)


def _csv_body(table: Any, max_bytes: int | None) -> bytes:
    import pyarrow.csv as pcsv

    sink = io.BytesIO()
    with pcsv.CSVWriter(sink, table.schema) as writer:
        for piece in _slices(table):
            writer.write_table(piece)
            if max_bytes is not None and sink.tell() > max_bytes:
                raise _too_large("csv", sink.tell(), max_bytes)
    return sink.getvalue()


def _dumps(doc: dict[str, Any]) -> bytes:
    """orjson (5-10x faster; NaN becomes null) or, for what it refuses, the stdlib."""
    try:
        import orjson

        return orjson.dumps(doc, default=_default)
    except (ImportError, TypeError):  # e.g. a HUGEINT beyond 64 bits from user SQL
        pass
    try:
        text = json.dumps(doc, default=_default, allow_nan=False, ensure_ascii=False)
    except ValueError:  # a NaN or an infinity somewhere
        doc["rows"] = _finite(doc["rows"])
        text = json.dumps(doc, default=_default, allow_nan=False, ensure_ascii=False)
    return text.encode("utf-8")


def encode(table: Any, fmt: str, *, version: str, max_bytes: int | None = None) -> bytes:
    """Serialise a ``pyarrow.Table`` in ``fmt``.

    Raises
    ------
    QueryError
        When the table cannot be written in that format (e.g. nested columns as CSV),
        or the body would exceed ``max_bytes`` (context ``reason="too_large"``).
    """
    import pyarrow as pa

    try:
        if fmt == "json":
            doc = {
                "version": version,
                "row_count": table.num_rows,
                "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
            }
            body = _json_body(doc, table, max_bytes)
        elif fmt == "csv":
            body = _csv_body(table, max_bytes)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            body = sink.getvalue()
        else:
            raise QueryError(f"unknown format {fmt!r}; use json, csv or parquet", format=fmt)
    except (pa.ArrowException, NotImplementedError, TypeError, OverflowError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise QueryError(
            f"the result cannot be written as {fmt} ({first}); try format=json or parquet",
            format=fmt,
        ) from None
    if max_bytes is not None and len(body) > max_bytes:
        raise QueryError(
            f"the {fmt} result is {len(body):,} bytes, over the limit of {max_bytes:,}; "
            "select fewer columns or rows",
            reason="too_large",
        )
    return body
