"""``bfa serve``: the read-only HTTP API (see :mod:`intake_bfa.serve`)."""

from __future__ import annotations

import argparse
import logging
import sys

from intake_bfa.cli.common import add_data_version, real_number, settings_from_args, whole_number

_port = whole_number(0, 65535)
_positive_int = whole_number(1)
_positive_float = real_number(0, above=True)


def _size(text: str) -> int:
    """A positive size in bytes (``2GB``, ``512MiB``, ``1073741824``) for argparse."""
    from intake_bfa.serve.sql_workers import parse_size

    try:
        size = parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return size


def _address(args: argparse.Namespace) -> tuple[str, int]:
    """--host/--port, else BFA_SERVE_HOST/BFA_SERVE_PORT (a container sets them), else defaults."""
    import os

    from intake_bfa.errors import ConfigError

    host = args.host or os.environ.get("BFA_SERVE_HOST") or "127.0.0.1"
    if args.port is not None:
        return host, args.port
    raw = os.environ.get("BFA_SERVE_PORT", "8000")
    try:
        return host, _port(raw)
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"BFA_SERVE_PORT: {err}", value=raw) from None


def _access_logging(target: str) -> None:
    """Send access records (JSON lines) to stderr (``-``), a file, or nowhere (``off``)."""
    logger = logging.getLogger("intake_bfa.serve.access")
    logger.propagate = False  # not through the CLI's "bfa: INFO:" format
    logger.handlers.clear()
    if target == "off":
        logger.disabled = True
        return
    handler = (
        logging.StreamHandler(sys.stderr)
        if target == "-"
        else logging.FileHandler(target, encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def cmd_serve(args: argparse.Namespace) -> int:
    from intake_bfa.serve.engine import Engine, Limits
    from intake_bfa.serve.runner import bind, require_server, serve

    require_server()  # before any download: without the serve extra, fail at once

    settings = settings_from_args(args)
    host, port = _address(args)
    limits = Limits(
        max_rows=args.max_rows,
        timeout=args.timeout,
        max_concurrent_sql=args.max_concurrent_sql,
        queue_timeout=args.queue_timeout,
        max_sql_length=args.max_sql_length,
        memory_limit=args.memory_limit,
        max_response_bytes=args.max_response_bytes,
        worker_memory=args.sql_worker_memory,
    )
    sock = bind(host, port)  # before fetching: a taken port fails fast
    try:
        engine = Engine(
            args.versions or ["latest"],
            settings=settings,
            limits=limits,
            pool_size=args.pool_size,
            database=args.with_database,
        ).start()
    except BaseException:
        sock.close()
        raise
    _access_logging(args.access_log)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    def ready(url: str) -> None:
        served = ", ".join(engine.versions)
        print(f"bfa: serving {served} of {settings.repo} on {url}", file=sys.stderr, flush=True)
        print(f"bfa: API docs at {url}/docs, schema at {url}/openapi.json", file=sys.stderr)
        sys.stderr.flush()

    serve(engine, sock, on_ready=ready)
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``bfa serve``."""
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve read-only answers and SQL over HTTP (JSON, CSV, Parquet)",
        description="Resolve and fetch the given versions (default: latest) into the cache, "
        "then serve them read-only over HTTP with no further network access: /health, "
        "/v1/versions, /v1/datasets, /v1/snapshot, /v1/timeline/{symbol}, /v1/universe, "
        "/v1/sql; OpenAPI at /openapi.json. With --offline, serve cached versions only. "
        "Needs the serve extra. Example: bfa serve --port 8000 --data-version latest",
    )
    p.add_argument("--host", help="address to listen on (BFA_SERVE_HOST; default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, help="port, 0 for any free one (BFA_SERVE_PORT; default 8000)"
    )
    add_data_version(
        p,
        dest="versions",
        append=True,
        help="a version to serve, repeatable; the first is the default (default: latest)",
    )
    p.add_argument(
        "--with-database",
        action="store_true",
        help="also fetch availability_db so SQL can use schema db",
    )
    p.add_argument("--max-rows", type=_positive_int, default=10_000, help="SQL row limit (10000)")
    p.add_argument(
        "--timeout", type=_positive_float, default=10.0, help="SQL time limit, seconds (10)"
    )
    p.add_argument(
        "--max-concurrent-sql",
        type=_positive_int,
        default=4,
        help="SQL queries at once; more wait, then get 429 (4)",
    )
    p.add_argument(
        "--max-sql-length",
        type=_positive_int,
        default=10_000,
        help="longest SQL text accepted, characters (10000)",
    )
    p.add_argument(
        "--queue-timeout",
        type=_positive_float,
        default=5.0,
        help="seconds a request waits for a free query before 429 (5)",
    )
    p.add_argument(
        "--memory-limit", default="1GB", help="DuckDB memory limit per SQL connection (1GB)"
    )
    p.add_argument(
        "--max-response-bytes",
        type=_positive_int,
        default=64 << 20,
        help="largest SQL result and response body, bytes; checked while the result is "
        "fetched (67108864)",
    )
    p.add_argument(
        "--sql-worker-memory",
        type=_size,
        default=None,
        metavar="SIZE",
        help="memory each SQL worker process may add to its start-up footprint, e.g. 2GB "
        "(default: --memory-limit plus twice --max-response-bytes plus 256 MiB); a query "
        "needing more gets 422",
    )
    p.add_argument(
        "--pool-size",
        type=_positive_int,
        default=8,
        help="queries of one version running at once (bounds memory); more wait "
        "--queue-timeout, then get 429 (8)",
    )
    p.add_argument(
        "--access-log",
        default="-",
        metavar="PATH",
        help="JSON-lines access log: - for stderr (default), a file, or off",
    )
    p.set_defaults(func=cmd_serve)
