"""Ctrl-C ends every command promptly with exit 130, running DuckDB queries included.

A DuckDB query runs in C++ and never returns to Python on its own (DuckDB 2.0 ignores
signals while it executes): the CLI interrupts the package's connections from a thread
(:mod:`intake_bfa.interrupt`). Real processes, because only a process has signals and an
exit status. The issue asks for "within 1 s"; the bound asserted is 3 s so a loaded
2-core machine does not fail it (measured: about 0.1 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import test_duckdb_matrix
from .conftest import ROOT

#: Runs for minutes on any machine; nothing of it reaches Python until it ends.
LONG_QUERY = "SELECT count(*) FROM range(100000000000) t(x) WHERE hash(x) % 7 = 3"
#: Logged (-vv) just before the user's query runs on the locked connection.
QUERY_STARTS = "locked SQL connection over"
BOUND = 3.0

duckdb1_python = test_duckdb_matrix.duckdb1_python  # the DuckDB 1.5 venv (a fixture)


class Cli:
    """``python -m intake_bfa.cli ARGS`` with its stderr read as it comes."""

    def __init__(self, *args: str, python: Path | str = sys.executable, env=None) -> None:
        self.proc = subprocess.Popen(
            [str(python), "-m", "intake_bfa.cli", *args],
            cwd=ROOT,
            env=env or dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _read_out(self) -> None:
        self.stdout = self.proc.stdout.read()

    def wait_for(self, marker: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines[-20:])
            assert time.monotonic() < deadline, f"no {marker!r} in {self.lines[-20:]}"
            time.sleep(0.05)

    def interrupt(self) -> float:
        """Send SIGINT; seconds until the process ended (killed after 30 s)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        elapsed = time.monotonic() - start
        for reader in self._readers:
            reader.join(timeout=10)
        return elapsed

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def _assert_interrupted(cli: Cli, elapsed: float) -> None:
    assert cli.proc.returncode == 130, cli.stderr[-3000:]
    assert "Traceback" not in cli.stderr
    assert cli.lines[-1] == "bfa: interrupted"
    assert elapsed < BOUND, f"exit {elapsed:.2f} s after SIGINT"


def _interrupt_long_sql(*extra: str, python: Path | str = sys.executable, env=None) -> Cli:
    cli = Cli("sql", LONG_QUERY, "-vv", *extra, python=python, env=env)
    cli.wait_for(QUERY_STARTS)
    time.sleep(1.0)  # well into the query's execution
    elapsed = cli.interrupt()
    _assert_interrupted(cli, elapsed)
    print(f"bfa sql ended {elapsed:.3f} s after SIGINT")
    return cli


def test_ctrl_c_stops_a_running_sql_query(published):
    cli = _interrupt_long_sql()
    assert cli.stdout == ""


def test_ctrl_c_leaves_no_output_file(published, tmp_path):
    out = tmp_path / "answers"
    out.mkdir()
    _interrupt_long_sql("--output", str(out / "count.parquet"), "--format", "parquet")
    assert list(out.iterdir()) == []  # neither the file nor a temporary one


def test_ctrl_c_stops_a_query_command(published):
    """The query commands share the path of `bfa sql`: a stall in the download, then a
    SIGINT while the answer is being read, still ends at once."""
    published.inject("objects", r".*", "slow", delay=1.0, after_bytes=1, times=10)
    cli = Cli("snapshot", "2021-03-04", "-q")
    deadline = time.monotonic() + 60
    while published.count("objects") == 0:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    time.sleep(0.3)
    _assert_interrupted(cli, cli.interrupt())


def test_the_query_ran_to_completion_without_ctrl_c(published, tmp_path):
    """The watcher changes nothing when no SIGINT comes (and reaches idle connections only
    on a SIGINT): a short query answers as before."""
    cli = Cli("sql", "SELECT count(*) AS n FROM range(1000) t(x)", "--format", "csv")
    assert cli.proc.wait(timeout=120) == 0, cli.stderr
    for reader in cli._readers:
        reader.join(timeout=10)
    assert cli.stdout.split() == ['"n"', "1000"]


@pytest.mark.slow
def test_ctrl_c_stops_a_running_sql_query_with_duckdb_1_5(published, duckdb1_python):
    """DuckDB 1.5 looks at signals itself but raises RuntimeError("Query interrupted"):
    the same exit 130 and one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _interrupt_long_sql(python=duckdb1_python, env=env)
