"""Fault injection: the queue of pending faults and how each kind bends a response.

``"status"``, ``"expired"`` and ``"body"`` replace the response outright and ``"lost_response"`` replaces it
after the request took effect (:meth:`FaultQueue.middleware`), ``"ignore_range"`` is honoured by
the object store (:func:`ignores_range`), and ``"reset"``, ``"truncate"``, ``"slow"``,
``"corrupt"`` and ``"long_body"`` act on the body while it streams (:func:`send`), or, on the
uploads origin, on the request body while it is received (:func:`current_fault`, :func:`cut`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from intake_bfa.testing.server.errors import JSON_TYPE, api_error, expired

log = logging.getLogger(__package__)

# fmt: off
KINDS = ("status", "reset", "truncate", "slow", "ignore_range", "expired", "corrupt",
         "lost_response", "body", "long_body")
# fmt: on


@dataclass
class Fault:
    regex: re.Pattern[str]
    kind: str
    times: int
    status: int
    headers: dict[str, str]
    after_bytes: int
    delay: float
    body: bytes = b""


# The fault picked for the request being handled: aiohttp runs each request in its own task
# (and so its own context), and the middleware sets it before every handler.
_FAULT: ContextVar[Fault | None] = ContextVar("_FAULT", default=None)


def current_fault() -> Fault | None:
    """The fault picked for the request being handled, if any."""
    return _FAULT.get()


def ignores_range() -> bool:
    """True if the request being handled must be answered 200 despite its Range header."""
    fault = _FAULT.get()
    return fault is not None and fault.kind == "ignore_range"


class FaultQueue:
    """Faults queued per origin, each consumed by the next requests whose path matches.

    Parameters
    ----------
    origins : tuple of str
        The origins faults may be injected into.
    """

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[Fault]] = {o: [] for o in origins}

    def add(
        self,
        origin: str,
        path_regex: str,
        kind: str,
        *,
        times: int,
        status: int,
        headers: Mapping[str, str] | None,
        after_bytes: int,
        delay: float,
        body: bytes = b"",
    ) -> None:
        """Queue a fault; see :meth:`~.ReleaseServer.inject` for the parameters."""
        if origin not in self._queues or kind not in KINDS or times < 1:
            raise ValueError(f"bad fault {kind!r} on origin {origin!r} (times={times})")
        f = Fault(
            re.compile(path_regex),
            kind,
            times,
            status,
            dict(headers or {}),
            after_bytes,
            delay,
            bytes(body),
        )
        with self._lock:
            self._queues[origin].append(f)

    def take(self, origin: str, path: str) -> Fault | None:
        """Consume one use of the first fault on ``origin`` matching ``path``, if any."""
        with self._lock:
            for fault in self._queues[origin]:
                if fault.regex.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._queues[origin].remove(fault)
                    log.debug("injecting %s fault into %s %s", fault.kind, origin, path)
                    return fault
        return None

    def middleware(self, origin: str) -> Any:
        """aiohttp middleware picking the fault for each request on ``origin``."""

        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            fault = self.take(origin, request.raw_path)
            _FAULT.set(fault)
            if fault is not None and fault.kind == "status":
                if origin in ("api", "uploads"):
                    resp = api_error(fault.status, "Injected fault")
                else:
                    resp = web.Response(status=fault.status, text="Injected fault")
                resp.headers.update(fault.headers)
                return resp
            if fault is not None and fault.kind == "expired":
                return expired()
            if fault is not None and fault.kind == "body":
                # Any bytes as the answer: a hostile or broken server (odd JSON, say).
                ctype = JSON_TYPE if origin in ("api", "uploads") else "application/octet-stream"
                resp = web.Response(status=fault.status, body=fault.body)
                resp.headers.update({"Content-Type": ctype, **fault.headers})
                return resp
            resp = await handler(request)
            if fault is not None and fault.kind == "lost_response" and not resp.prepared:
                # The write happened, but the client hears an error (a proxy timing out):
                # a retried POST then meets its own earlier success.
                lost = api_error(fault.status, "Injected fault: response lost")
                lost.headers.update(fault.headers)
                return lost
            return resp

        return middleware


async def send(
    request: web.Request,
    status: int,
    headers: dict[str, str],
    source: bytes | Path,
    start: int = 0,
    size: int | None = None,
    *,
    chunk_size: int,
) -> tuple[web.StreamResponse, bool]:
    """Stream ``size`` bytes of ``source`` from ``start``; True if all were sent.

    The body-level fault of the request being handled, if any, is applied on the way.
    """
    size = len(source) - start if isinstance(source, bytes) and size is None else size
    fault = _FAULT.get()
    kind, after = (fault.kind, fault.after_bytes) if fault else ("", 0)
    # "long_body": junk after the body, ``after_bytes`` of it (announced in Content-Length),
    # or, for 0, without end and without a length (chunked), like a runaway mirror.
    extra, after = (after, 0) if kind == "long_body" else (0, after)
    resp = web.StreamResponse(status=status, headers=headers)
    endless = kind == "long_body" and not extra
    resp.content_length = None if endless or size is None else size + extra
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp, False
    end = min(after, size) if kind in ("reset", "truncate") else size
    fh = None
    try:
        if isinstance(source, Path):  # file I/O in a thread so big files can't stall the loop
            fh = await asyncio.to_thread(source.open, "rb")
            await asyncio.to_thread(fh.seek, start)
        off = 0
        while off < end:
            # Never let a chunk straddle after_bytes, so "slow" starts exactly there.
            n = min(end - off, chunk_size, *([after - off] if off < after else []))
            pos = start + off
            chunk = source[pos : pos + n] if fh is None else await asyncio.to_thread(fh.read, n)
            if not chunk:
                raise OSError(f"{source} shrank while being served")
            if kind == "slow" and off >= after:
                await asyncio.sleep(fault.delay)  # type: ignore[union-attr]
            if kind == "corrupt":
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            await resp.write(chunk)
            off += len(chunk)
        if kind == "long_body":
            await _junk(resp, extra, chunk_size)
            return resp, False
        if kind not in ("reset", "truncate"):
            return resp, True
        await cut(request, kind)
    except ConnectionError:
        log.debug("client went away during %s", request.raw_path)
    finally:
        if fh is not None:
            fh.close()
    return resp, False


async def _junk(resp: web.StreamResponse, extra: int, chunk_size: int) -> None:
    """Write ``extra`` bytes past the body; 0: write until the client goes away."""
    junk = b"\xa5" * chunk_size
    sent = 0
    while not extra or sent < extra:
        n = chunk_size if not extra else min(chunk_size, extra - sent)
        await resp.write(junk[:n])
        sent += n


async def cut(request: web.Request, kind: str) -> None:
    """End the connection mid-body: a clean close for "truncate", an RST for "reset"."""
    transport = request.transport
    assert transport is not None
    # Flush what was written first, so the client sees exactly after_bytes of body.
    for _ in range(400):
        if not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.005)
    if kind == "truncate":
        transport.close()
        return
    await asyncio.sleep(0.01)  # let loopback deliver the bytes before the RST
    # Linger 0 turns close() into an RST: the client gets "connection reset by peer".
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
