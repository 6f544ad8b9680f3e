"""Run the API with uvicorn on a socket bound before start (so port 0 works)."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable

from intake_bfa.errors import ConfigError
from intake_bfa.extras import require
from intake_bfa.serve.engine import Engine

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 if ``host`` has a colon).

    Raises
    ------
    ConfigError
        When the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only
    # for sockets that say so; without it, Nagle + delayed ACK add ~40 ms to every
    # keep-alive response (measured: 44 ms vs 1.7 ms per /health).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port "
            "or --host",
            host=host,
            port=port,
        ) from None
    sock.listen(2048)
    return sock


def require_server() -> None:
    """Raise :class:`MissingDependencyError` unless FastAPI and uvicorn are installed."""
    require("fastapi", "uvicorn", extra="serve", feature="bfa serve")


def serve(
    engine: Engine,
    sock: socket.socket,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``engine`` on ``sock`` until SIGINT/SIGTERM; then close the engine.

    ``on_ready`` receives the base URL once the socket listens (connections made
    before uvicorn accepts wait in the backlog, they are not refused).
    """
    require_server()
    import uvicorn

    from intake_bfa.serve.app import create_app

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        create_app(engine),
        log_config=None,  # keep the CLI's logging; access records come from our middleware
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=10,
        # Longer than common clients' pool idle time (aiohttp: 15 s), so a reused
        # connection is not closed under a request.
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{port}")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler
    # that was installed before it ran: make that one a no-op, so a stopped server
    # (docker stop, systemd) exits with status 0 instead of dying by the signal.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped) if main else None
    try:
        server.run(sockets=[sock])
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        engine.close()
        sock.close()
    log.info("server stopped")


def _stopped(signum: int, frame: object) -> None:
    log.info("stopping on signal %d", signum)
