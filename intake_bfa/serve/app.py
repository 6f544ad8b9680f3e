"""The read-only HTTP API of ``bfa serve``: FastAPI routes over an :class:`Engine`.

Every answer comes from one pinned, verified, cached version (``X-BFA-Version`` says
which). Every error is JSON, ``{"error": {"code", "message", "status", ...}}``, with a
4xx status for anything a request can cause; see :func:`error_status` and
docs/serving.md for the table. Nothing here reaches the network or writes a file.
"""

from __future__ import annotations

import datetime as dt
import logging
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from intake_bfa import __version__
from intake_bfa.errors import (
    BfaError,
    DatasetNotFoundError,
    NotCachedError,
    QueryError,
    VersionNotFoundError,
)
from intake_bfa.serve.access_log import AccessLogMiddleware
from intake_bfa.serve.encode import MEDIA_TYPES, choose_format, encode
from intake_bfa.serve.engine import Engine

log = logging.getLogger(__name__)


class Format(StrEnum):
    """Response formats."""

    json = "json"
    csv = "csv"
    parquet = "parquet"


class Kind(StrEnum):
    """Contract kinds."""

    perpetual = "perpetual"
    delivery = "delivery"
    settled = "settled"


class UniverseBy(StrEnum):
    """Rows of a universe: per symbol, or per contract with its ticker and neighbours."""

    symbol = "symbol"
    contract = "contract"


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable reason, e.g. invalid_query")
    message: str = Field(description="what was wrong and how to fix it")
    status: int


class ErrorBody(BaseModel):
    error: ErrorDetail


class Column(BaseModel):
    name: str
    type: str


class Table(BaseModel):
    version: str = Field(description="the pinned version every row comes from")
    row_count: int
    columns: list[Column]
    rows: list[dict[str, Any]]


class SqlRequest(BaseModel):
    sql: str = Field(description="one read-only SELECT", examples=["SELECT * FROM symbols LIMIT 5"])
    version: str | None = Field(None, description="a served version; default: the server's")
    format: Format = Format.json
    database: bool = Field(False, description="also query availability_db as schema db")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Invalid query or parameter values (e.g. a date outside the coverage)"),
        (403, "SQL that tries to read files, attach databases or change settings"),
        (404, "Unknown version, symbol or path"),
        (413, "SQL text over the length limit"),
        (422, "Malformed parameters, or a result over the row/size/time limits"),
        (429, "Too many SQL queries running; retry after Retry-After seconds"),
    )
}
_TABLE = {
    200: {
        "model": Table,
        "description": "The rows, as JSON (default), CSV or Parquet",
        "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
    },
    **_ERRORS,
}

VersionParam = Annotated[
    str | None,
    Query(description="served version (see /v1/versions); default: the server's", max_length=64),
]
FormatParam = Annotated[Format | None, Query(description="json (default), csv or parquet")]
QuoteParam = Annotated[
    str | None, Query(description="quote asset, e.g. USDT", pattern=r"^[A-Za-z0-9]{1,16}$")
]


def error_status(err: BfaError) -> tuple[int, str]:
    """HTTP status and error code for an intake-bfa error raised by a request."""
    if isinstance(err, (VersionNotFoundError, DatasetNotFoundError)):
        return 404, "not_found"
    if isinstance(err, NotCachedError):
        return 404, "not_cached"
    if isinstance(err, QueryError):
        ctx = err.context
        reason = ctx.get("reason")
        if reason == "timeout":
            return 422, "query_timeout"
        if reason in ("too_many_rows", "too_large"):
            return 422, "result_too_large"
        if reason == "busy":
            return 429, "busy"
        if reason == "too_long":
            return 413, "sql_too_long"
        if ctx.get("duckdb_error") == "PermissionException":
            return 403, "forbidden"
        if "suggestions" in ctx:
            return 404, "unknown_symbol"
        return 400, "invalid_query"
    return 500, "internal_error"


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "status": status, **extra}}
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(engine: Engine) -> FastAPI:
    """The ASGI application over a started :class:`Engine`."""
    app = FastAPI(
        title="intake-bfa",
        version=__version__,
        summary="Binance USDT-M futures availability: read-only, pinned, verified answers.",
        description="Which futures existed on a day, a symbol's timeline, survivorship-free "
        "universes and read-only SQL, from pinned versions of the dataset. "
        "Formats: JSON (default), CSV, Parquet (`?format=` or `Accept`).",
        redoc_url=None,
    )
    app.state.engine = engine
    cache_root = str(engine.settings.cache_dir)

    def clean(message: str) -> str:
        # Messages may name cached files; a client needs no server paths.
        return message.replace(cache_root, "<cache>")

    @app.exception_handler(BfaError)
    async def bfa_error(request: Request, err: BfaError) -> JSONResponse:
        status, code = error_status(err)
        if status >= 500:
            log.error("unexpected error on %s: %s", request.url.path, err)
            return _error(status, code, "internal error; see the server log")
        extra = {}
        for key in ("suggestions", "available"):
            if isinstance(err.context.get(key), list):
                extra[key] = err.context[key]
        return _error(status, code, clean(str(err)), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_parameter", "; ".join(parts)[:2000])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        response = _error(err.status_code, code, str(err.detail))
        for key, value in (err.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; see the server log")

    def table_response(request: Request, table: Any, version: str, fmt: Format | None, name: str):
        chosen = choose_format(fmt.value if fmt else None, request.headers.get("accept"))
        body = encode(table, chosen, version=version, max_bytes=engine.limits.max_response_bytes)
        pinned = request.query_params.get("version") == version
        headers = {
            "X-BFA-Version": version,
            "X-BFA-Rows": str(table.num_rows),
            # A pinned version never changes; the default one moves with restarts.
            "Cache-Control": "public, max-age=31536000, immutable" if pinned else "no-cache",
        }
        if chosen != "json":
            headers["Content-Disposition"] = _disposition(f"{name}.{chosen}")
        return Response(body, media_type=MEDIA_TYPES[chosen], headers=headers)

    @app.get("/health", tags=["service"], summary="Liveness and what is served")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "intake-bfa",
            "package_version": __version__,
            "repo": engine.settings.repo,
            "default_version": engine.default,
            "versions": list(engine.versions),
        }

    @app.get("/v1/versions", tags=["catalog"], summary="Served versions with coverage")
    def versions() -> dict[str, Any]:
        return {
            "default": engine.default,
            "versions": [v.describe() for v in engine.versions.values()],
        }

    @app.get("/v1/datasets", tags=["catalog"], summary="Datasets and their columns")
    def datasets() -> dict[str, Any]:
        from intake_bfa.schema import DATASETS

        out = []
        for spec in DATASETS.values():
            out.append(
                {
                    "name": spec.name,
                    "description": spec.description,
                    "kind": spec.kind,
                    "served": spec.name in engine.versions[engine.default].datasets,
                    "columns": [
                        {"name": c, "type": t, "description": d}
                        for c, (t, d) in spec.columns.items()
                    ],
                }
            )
        return {"datasets": out}

    @app.get(
        "/v1/snapshot", tags=["answers"], summary="Symbols available on a day", responses=_TABLE
    )
    def snapshot(
        request: Request,
        date: Annotated[dt.date, Query(description="UTC day, YYYY-MM-DD")],
        version: VersionParam = None,
        quote: QuoteParam = None,
        kind: Annotated[Kind | None, Query(description="contract kind")] = None,
        format: FormatParam = None,
    ) -> Response:
        with engine.query(version) as q:
            rel = q.snapshot(date, quote=quote, kind=kind.value if kind else None, as_relation=True)
            table, pinned = _arrow(rel), q.version
        return table_response(request, table, pinned, format, f"snapshot-{date}")

    @app.get(
        "/v1/timeline/{symbol}",
        tags=["answers"],
        summary="Every day of one symbol, available or not",
        responses=_TABLE,
    )
    def timeline(
        request: Request,
        symbol: Annotated[
            str,
            # Letters of any script: Binance lists symbols such as 币安人生USDT.
            Path(description="e.g. BTCUSDT or 币安人生USDT", pattern=r"^\w{1,40}$"),
        ],
        start: Annotated[dt.date | None, Query(description="first day (default: coverage)")] = None,
        end: Annotated[dt.date | None, Query(description="last day (default: coverage)")] = None,
        version: VersionParam = None,
        format: FormatParam = None,
    ) -> Response:
        with engine.query(version) as q:
            table, pinned = _arrow(q.timeline(symbol, start, end, as_relation=True)), q.version
        return table_response(request, table, pinned, format, f"timeline-{symbol}")

    @app.get(
        "/v1/universe",
        tags=["answers"],
        summary="A survivorship-free universe over a window",
        responses=_TABLE,
    )
    def universe(
        request: Request,
        start: Annotated[dt.date, Query(description="window start (inclusive)")],
        end: Annotated[dt.date, Query(description="window end (inclusive)")],
        on: Annotated[dt.date | None, Query(description="available on this day instead")] = None,
        every_day: Annotated[bool, Query(description="available on every day")] = True,
        min_volume: Annotated[
            float | None,
            Query(ge=0, le=1e18, description="minimum average daily quote volume"),
        ] = None,
        quote: QuoteParam = None,
        kind: Annotated[Kind | None, Query(description="contract kind")] = None,
        by: Annotated[
            UniverseBy,
            Query(
                description="symbol: a row per symbol; contract: also each row's ticker and "
                "the contracts before and after it under that ticker (a reused ticker's "
                "contracts stay separate rows)"
            ),
        ] = UniverseBy.symbol,
        version: VersionParam = None,
        format: FormatParam = None,
    ) -> Response:
        with engine.query(version) as q:
            rel = q.universe(
                start,
                end,
                on=on,
                every_day=every_day,
                min_volume=min_volume,
                quote=quote,
                kind=kind.value if kind else None,
                by=by.value,
                as_relation=True,
            )
            table, pinned = _arrow(rel), q.version
        return table_response(request, table, pinned, format, f"universe-{start}-{end}")

    sql_doc = (
        "One read-only SELECT over the views daily_availability, volume_rankings and "
        "symbols (and schema db with database=true, if the server has it). "
        f"Limits: {engine.limits.max_rows:,} rows, {engine.limits.timeout:g} s, "
        f"{engine.limits.max_sql_length:,} characters; no file, network or extension access."
    )

    @app.get(
        "/v1/sql", tags=["sql"], summary="Read-only SQL", description=sql_doc, responses=_TABLE
    )
    def sql_get(
        request: Request,
        q: Annotated[str, Query(description="the SELECT", min_length=1)],
        version: VersionParam = None,
        database: bool = False,
        format: FormatParam = None,
    ) -> Response:
        pinned, table = engine.sql(q, version, database=database)
        return table_response(request, table, pinned, format, "sql")

    @app.post(
        "/v1/sql", tags=["sql"], summary="Read-only SQL", description=sql_doc, responses=_TABLE
    )
    def sql_post(request: Request, body: Annotated[SqlRequest, Body()]) -> Response:
        pinned, table = engine.sql(body.sql, body.version, database=body.database)
        return table_response(request, table, pinned, body.format, "sql")

    app.add_middleware(AccessLogMiddleware)
    return app


def _disposition(filename: str) -> str:
    """``attachment`` with an ASCII name and, if needed, the UTF-8 one (RFC 6266)."""
    ascii_name = "".join(
        c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in filename
    )
    if ascii_name == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _arrow(relation: Any) -> Any:
    from intake_bfa.query.api import fetch_arrow

    return fetch_arrow(relation)
