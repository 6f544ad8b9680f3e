"""Run the real ``bfa serve`` in a subprocess for tests and benchmarks.

:class:`ServeProcess` starts the CLI with ``--port 0``, reads its stderr on a
thread (the "serving ... on URL" line, then the JSON access records), waits until
``/health`` answers, and stops it with SIGTERM (a clean exit is status 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

_READY = re.compile(r"^bfa: serving .* on (http://\S+)$")


class ServeProcess:
    """``bfa serve ARGS`` in a subprocess, as a context manager.

    Parameters
    ----------
    args
        Extra CLI arguments after ``serve`` (``--port 0`` is added unless given, when
        ``command`` is not).
    env
        The subprocess environment (default: this one).
    command
        The command line to run instead of ``python -m intake_bfa.cli serve`` (e.g. a
        Dockerfile's entry point); ``args`` are appended.
    startup_timeout
        Seconds to wait for the server to answer ``/health``.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        base = list(command) if command else [sys.executable, "-m", "intake_bfa.cli", "serve"]
        extra = list(args)
        if command is None and "--port" not in extra:
            extra += ["--port", "0"]
        self.argv = base + extra
        self.env = dict(env if env is not None else os.environ)
        self.startup_timeout = startup_timeout
        self.url: str | None = None
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._ready = threading.Event()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            match = _READY.match(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting

    def start(self) -> ServeProcess:
        """Start and wait until ``/health`` answers 200.

        Raises
        ------
        RuntimeError
            When the process exits or does not answer in time (its stderr included).
        """
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        self._ready.wait(self.startup_timeout)
        while self.url is not None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"bfa serve did not start (exit {self.returncode}):\n" + "\n".join(self.lines[-30:])
        )

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, and return the exit status (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    def access_records(self) -> list[dict[str, Any]]:
        """The JSON access records written so far."""
        records = []
        for line in list(self.lines):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def get(self, path: str, headers: Mapping[str, str] | None = None, data: bytes | None = None):
        """``(status, headers, body)`` of one request (errors included, no exception)."""
        import urllib.error

        request = urllib.request.Request(self.url + path, data=data, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
