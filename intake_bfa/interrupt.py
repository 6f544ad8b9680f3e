"""Ctrl-C for running DuckDB queries: the package's connections are tracked, SIGINT stops them.

A DuckDB query runs in C++ without the GIL, and Python's SIGINT handler (the one that
raises ``KeyboardInterrupt``) only runs once control returns to Python, i.e. when the
query ends: DuckDB 2.0 never looks at signals while it executes (measured: still running
20 s after Ctrl-C), DuckDB 1.5 does but then raises ``RuntimeError("Query interrupted")``.

So every connection the package opens comes from :func:`connect` (or is passed to
:func:`track`), which remembers it weakly, and :func:`interrupting_queries` (the ``bfa``
entry point runs every command inside it) watches for SIGINT from a thread: the
interpreter's C-level handler writes the signal number to :func:`signal.set_wakeup_fd`'s
file at once, the thread reads it and calls ``interrupt()`` on every tracked connection,
so the running query stops with ``duckdb.InterruptException`` within milliseconds, and
then Python's handler raises ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

__all__ = ["Sigint", "connect", "interrupt_all", "interrupting_queries", "track"]

_tracked: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
#: Written to the wakeup file by :func:`interrupting_queries` itself: the watcher stops.
_STOP = 0


def connect(database: str = ":memory:", **kwargs: Any) -> Any:
    """``duckdb.connect(database, **kwargs)``, tracked (see :func:`track`)."""
    import duckdb

    return track(duckdb.connect(database, **kwargs))


def track(con: Any) -> Any:
    """Remember ``con`` (weakly) so that :func:`interrupt_all` reaches it; returns ``con``."""
    with _lock:
        _tracked.add(con)
    return con


def interrupt_all() -> int:
    """Interrupt the running query of every tracked connection; how many were reached.

    Harmless on an idle connection (its next query runs normally) and on a closed one.
    """
    with _lock:
        connections = list(_tracked)
    reached = 0
    for con in connections:
        try:
            con.interrupt()
        except Exception:  # closed meanwhile: nothing runs there
            continue
        reached += 1
    return reached


class Sigint:
    """What :func:`interrupting_queries` saw: ``seen`` is True once a SIGINT arrived."""

    def __init__(self) -> None:
        self.seen = False


@contextmanager
def interrupting_queries() -> Iterator[Sigint]:
    """While inside, SIGINT also interrupts every tracked DuckDB connection's query.

    Yields a :class:`Sigint` whose ``seen`` tells the caller that an exception raised
    meanwhile (``duckdb.InterruptException`` turned into a ``QueryError``, DuckDB 1.5's
    ``RuntimeError``) is the consequence of Ctrl-C. Python's own SIGINT handling is kept
    (``KeyboardInterrupt`` is raised in the main thread); while code inside installs a
    SIGINT handler of its own (uvicorn's graceful shutdown), queries are left to it.
    Outside the main thread, or when SIGINT has no Python handler (ignored, or a custom
    one of the host), nothing is watched.
    """
    sigint = Sigint()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield sigint
        return

    def handler(signum: int, frame: Any) -> None:
        # Also here: DuckDB 1.5 runs this handler from inside its query and raises
        # RuntimeError, but the query goes on, and closing its connection would wait for
        # it if the watcher has not interrupted it yet.
        sigint.seen = True
        interrupt_all()
        signal.default_int_handler(signum, frame)

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous_handler = signal.signal(signal.SIGINT, handler)
    watcher = threading.Thread(
        target=_watch, args=(read_fd, sigint, handler), name="bfa-sigint", daemon=True
    )
    watcher.start()
    try:
        yield sigint
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        current = signal.set_wakeup_fd(previous_fd)
        if current not in (write_fd, -1):  # replaced meanwhile (and kept): leave it
            signal.set_wakeup_fd(current)
        with suppress(OSError):  # the pipe is full of signal numbers: the watcher reads them
            os.write(write_fd, bytes([_STOP]))
        watcher.join(timeout=5)
        os.close(write_fd)
        if not watcher.is_alive():
            os.close(read_fd)


def _watch(fd: int, sigint: Sigint, handler: Any) -> None:
    """Read signal numbers from the wakeup file; on SIGINT interrupt every query.

    Only while ``handler`` handles SIGINT: code that installs its own (uvicorn, under
    ``bfa serve``: a graceful shutdown that lets running requests finish) keeps its meaning.
    """
    while True:
        try:
            data = os.read(fd, 512)
        except OSError:
            return
        if signal.SIGINT in data and signal.getsignal(signal.SIGINT) is handler:
            sigint.seen = True
            interrupt_all()
        if not data or _STOP in data:
            return
