"""The real ``bfa`` process: the console script, exit codes and Ctrl-C.

Everything else about the CLI is tested in-process (``run_cli`` calls ``main([...])``);
these few smoke tests run real processes because only a process has an entry point, an
exit status and signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from intake_bfa import __version__

from .conftest import ROOT, run_cli_process

BFA = Path(sys.executable).with_name("bfa")


def test_the_console_script_runs():
    out = subprocess.run([str(BFA), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"intake-bfa {__version__}"


def test_exit_codes_of_a_real_process():
    usage = run_cli_process("snapshot")  # the date is missing
    assert usage.returncode == 2 and "usage: bfa snapshot" in usage.stderr
    error = run_cli_process("fetch", "daily_availability", "--offline")
    assert error.returncode == 1
    lines = error.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bfa: error: ") and "BFA_OFFLINE" in lines[0]


def test_ctrl_c_exits_130_without_a_traceback(published):
    # Every download stalls (1 s before each chunk), so SIGINT lands mid-transfer.
    published.inject("objects", r".*", "slow", delay=1.0, after_bytes=1, times=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "intake_bfa.cli", "fetch", "daily_availability", "-q"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while published.count("objects") == 0:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "bfa: interrupted"
    assert "Traceback" not in stderr
