"""User SQL in worker processes whose memory the operating system caps.

DuckDB's ``memory_limit`` bounds what its operators hold, and the result is capped while
it is fetched, but one *value* built outside DuckDB's buffer manager is not bounded:
``SELECT repeat('x', 1000000000)`` or ``SELECT range(200000000)`` (one 1.6 GB list)
would grow the server by gigabytes. So ``/v1/sql`` runs in long-lived worker processes,
each with ``RLIMIT_DATA`` set to its start-up footprint plus an allowance: a query that needs more fails inside its worker (DuckDB's
out-of-memory error, Python's ``MemoryError``, or the worker dying), never in the server.

The parent talks to a worker over its stdin and stdout: length-prefixed pickles (both
ends are this module, in the same environment). A request is
``(version, text, database, limits)``; a reply is ``("ok", pyarrow.Table, worn)`` or
``("error", BfaError, worn)``, ``worn`` true when the worker should be replaced. Workers are started with ``python -m`` (not ``fork``: the
parent runs DuckDB and uvicorn threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import queue
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intake_bfa.config import Settings
from intake_bfa.errors import BfaError, QueryError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
#: Seconds a worker may take to start (import DuckDB, open every served version).
START_TIMEOUT = 120.0
#: Headroom past DuckDB's memory limit and the result: DuckDB's allocations outside its
#: buffer manager, the deadline timer's thread stack, pyarrow's pools while fetching.
BASELINE_BYTES = 256 << 20

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1 << 10,
    "MIB": 1 << 20,
    "GIB": 1 << 30,
    "TIB": 1 << 40,
}


def parse_size(text: str | int) -> int:
    """Bytes of a size such as ``"1GB"``, ``"256MiB"`` or ``"1048576"`` (DuckDB's units).

    Raises
    ------
    ValueError
        When ``text`` is not a number with an optional unit (``KB``, ``MB``, ``GB``,
        ``TB``: powers of 1000; ``KiB``... powers of 1024).
    """
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 1GB, 512MB, 2GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def worker_memory(memory_limit: str, max_response_bytes: int) -> int:
    """The default memory one SQL worker may add to its start-up footprint, in bytes.

    DuckDB's ``memory_limit``, twice the response cap (the result, then its pickled
    copy on the way to the server) and :data:`BASELINE_BYTES`.
    """
    return parse_size(memory_limit) + 2 * max_response_bytes + BASELINE_BYTES


# --- the wire -----------------------------------------------------------------------------------


def _send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream: Any) -> Any:
    """The next message, or None at end of stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class _Silent(Exception):
    """The worker did not answer by the deadline."""


def _read_exact(fd: int, size: int, deadline: float) -> bytes | None:
    """``size`` bytes from ``fd`` by ``deadline`` (None at end of stream)."""
    parts: list[bytes] = []
    left = size
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            raise _Silent
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _recv_by(fd: int, deadline: float) -> Any:
    head = _read_exact(fd, _HEADER.size, deadline)
    if head is None:
        return None
    data = _read_exact(fd, _HEADER.unpack(head)[0], deadline)
    return None if data is None else pickle.loads(data)


# --- the parent's side --------------------------------------------------------------------------


class SqlWorker:
    """One worker process, restarted when it dies or is killed.

    Parameters
    ----------
    init
        What the worker needs to start: offline ``settings`` (no token), ``versions``,
        ``database``, ``sql_limits`` and ``memory`` (bytes it may add to its start-up
        footprint).
    """

    def __init__(self, init: dict[str, Any]) -> None:
        self.init = init
        self.proc: subprocess.Popen | None = None

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Start the process and send it ``init`` (without waiting for it to be ready)."""
        # The worker needs no credentials: it reads verified cached files only.
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
        # The same code as the server's: its package root first, and -P so that an
        # intake_bfa folder in the working directory does not shadow it.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "intake_bfa.serve.sql_workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        _send(self.proc.stdin, self.init)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for the worker's "ready" message.

        Raises
        ------
        BfaError
            The error the worker met while starting.
        RuntimeError
            When it exits or stays silent.
        """
        assert self.proc is not None and self.proc.stdout is not None
        try:
            reply = _recv_by(self.proc.stdout.fileno(), time.monotonic() + timeout)
        except _Silent:
            reply = None
        if isinstance(reply, tuple) and reply[0] == "ready":
            return
        self.kill()
        if isinstance(reply, tuple) and reply[0] == "error":
            raise reply[1]
        raise RuntimeError(f"a SQL worker did not start (exit status {self.proc.returncode})")

    def start(self) -> None:
        """:meth:`spawn` and :meth:`wait_ready`."""
        self.spawn()
        self.wait_ready()

    def run(self, request: tuple, wait: float) -> Any:
        """Send ``request``; return the reply, or raise when the worker fails.

        Raises
        ------
        TimeoutError
            No reply within ``wait`` seconds (the worker is killed).
        ChildProcessError
            The worker died (its exit status in the message).
        """
        assert self.proc is not None and self.proc.stdin is not None
        try:
            _send(self.proc.stdin, request)
            reply = _recv_by(self.proc.stdout.fileno(), time.monotonic() + wait)
        except _Silent:
            self.kill()
            raise TimeoutError from None
        except (BrokenPipeError, OSError, pickle.UnpicklingError, EOFError):
            reply = None
        if reply is None:
            self.kill()
            raise ChildProcessError(f"the SQL worker exited (status {self.proc.returncode})")
        return reply

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                # A broken pipe's buffered bytes have nowhere to go.
                with contextlib.suppress(OSError):
                    pipe.close()

    def stop(self, timeout: float = 2.0) -> None:
        """End the process: close its stdin (it exits), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.proc.stdin.close()
                self.proc.wait(timeout)
        self.kill()


class SqlWorkers:
    """A pool of :class:`SqlWorker`; a failed one is restarted in the background.

    Parameters
    ----------
    count
        Workers (the SQL queries that may run at once).
    settings
        The server's settings; workers get an offline copy without the token.
    versions
        Versions each worker opens.
    database
        Whether ``availability_db`` is served.
    sql_limits
        DuckDB settings of each user-SQL connection (``memory_limit``, ``threads``).
    memory
        Bytes each worker may add to its start-up footprint (``RLIMIT_DATA`` is set to
        that footprint plus ``memory`` once the served versions are open).
    """

    def __init__(
        self,
        count: int,
        *,
        settings: Settings,
        versions: Sequence[str],
        database: bool,
        sql_limits: dict[str, Any],
        memory: int,
    ) -> None:
        self.memory = memory
        init = {
            "settings": dataclasses.replace(settings, offline=True, token=None),
            "versions": list(versions),
            "database": database,
            "sql_limits": dict(sql_limits),
            "memory": memory,
        }
        self.workers = [SqlWorker(init) for _ in range(count)]
        self._idle: queue.Queue[SqlWorker] = queue.Queue()
        self._closed = False

    def start(self) -> SqlWorkers:
        """Start every worker (in parallel) and wait until all are ready."""
        try:
            for worker in self.workers:
                worker.spawn()
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        for worker in self.workers:
            self._idle.put(worker)
        return self

    def run(self, request: tuple, *, wait: float, queue_timeout: float) -> Any:
        """Run ``request`` on an idle worker; ``(status, value)`` of its reply.

        Raises
        ------
        QueryError
            ``reason="busy"`` when no worker frees up within ``queue_timeout``.
        """
        try:
            worker = self._idle.get(timeout=queue_timeout)
        except queue.Empty:
            raise QueryError(
                "every SQL worker is busy or restarting; retry shortly", reason="busy"
            ) from None
        failed = True
        try:
            if not worker.alive():  # a restart that failed in the background: try again
                worker.kill()
                worker.start()
            status, value, worn = worker.run(request, wait)
            failed = worn  # answered, but restarted before its next query
            return status, value
        finally:
            if failed:
                threading.Thread(target=self._restart, args=(worker,), daemon=True).start()
            else:
                self._idle.put(worker)

    def _restart(self, worker: SqlWorker) -> None:
        # The failed request answers at once; the next one finds a fresh worker.
        try:
            worker.kill()
            if not self._closed:
                worker.start()
        except Exception:
            log.exception("a SQL worker could not be restarted; retrying on its next use")
        self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        for worker in self.workers:
            worker.stop()


# --- the worker's side --------------------------------------------------------------------------


def _too_large(memory: int) -> QueryError:
    return QueryError(
        f"the query needs more memory than a SQL worker may use ({memory >> 20:,} MiB); "
        "narrow it or aggregate",
        reason="too_large",
        memory=memory,
    )


def _vm_data() -> int:
    """This process's ``VmData`` (what ``RLIMIT_DATA`` counts), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) << 10
    raise RuntimeError("no VmData in /proc/self/status")


def _serve(inp: Any, out: Any) -> None:
    init = _recv(inp)
    if init is None:
        return
    memory = init["memory"]
    try:
        from intake_bfa.query import Query

        queries = {}
        for version in init["versions"]:
            q = Query(version, settings=init["settings"])
            q.sql_limits = init["sql_limits"]
            q.sql("SELECT 1", database=init["database"])  # opens the views (and db) now
            queries[version] = q
        # The cap is what queries may add to the start-up footprint: that footprint is
        # mostly reserved, untouched address space (8 MiB stacks of DuckDB's and
        # pyarrow's threads: ~1.4 GB of VmData for ~170 MB resident), which varies
        # with the machine's cores, so a fixed total would be wrong on some machines.
        footprint = _vm_data()
        cap = footprint + memory
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    except BfaError as err:
        _send(out, ("error", err))
        return
    _send(out, ("ready", os.getpid()))
    while True:
        request = _recv(inp)
        if request is None:
            return
        version, text, database, limits = request
        try:
            table = queries[version].sql(text, database=database, arrow=True, **limits)
            reply: tuple = ("ok", table)
        except QueryError as err:
            if err.context.get("duckdb_error") == "OutOfMemoryException":
                err = _too_large(memory)
            reply = ("error", err)
        except BfaError as err:
            reply = ("error", err)
        except MemoryError:
            reply = ("error", _too_large(memory))
        except RuntimeError as err:
            # Python's word for a thread whose stack the cap refuses; anything else is a bug.
            if "can't start new thread" not in str(err):
                raise
            reply = ("error", _too_large(memory))
        table = None  # free the result before the next request arrives
        # DuckDB's allocator keeps what a big query mapped (measured: +1.3 GB of VmData,
        # 500 MB resident, after a refused 1 GB string): past half the allowance the
        # worker asks to be replaced, or the next query would meet a cap already spent.
        reply = (*reply, _vm_data() - footprint > memory // 2)
        try:
            _send(out, reply)
        except MemoryError:
            _send(out, ("error", _too_large(memory), True))
        reply = None


def main() -> None:
    """Entry point of a worker: serve requests from stdin until it closes."""
    # The server stops its workers itself; Ctrl-C in a terminal reaches the whole group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Replies own the real stdout: a stray print must not corrupt the stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
