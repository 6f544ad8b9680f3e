"""Progress reporting: fsspec callbacks for library users, a bar on a terminal, silence otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

from fsspec.callbacks import Callback

import intake_bfa

from .conftest import ROOT, V_OLD, run_cli


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.sizes: list = []
        self.total = 0

    def set_size(self, size):
        self.sizes.append(size)

    def relative_update(self, inc=1):
        self.total += inc


def test_library_callback_sees_every_byte(published, samples):
    rec = Recorder()
    path = intake_bfa.local_path("daily_availability", V_OLD, callback=rec)
    size = path.stat().st_size
    assert rec.sizes == [size]
    assert rec.total == size


def test_callback_covers_download_and_decompression(published):
    rec = Recorder()
    intake_bfa.local_path("availability_db", V_OLD, callback=rec)
    # Two phases report: the .gz download, then decompression (by compressed bytes read).
    assert len(rec.sizes) == 2 and rec.sizes[0] == rec.sizes[1]
    assert rec.total == 2 * rec.sizes[0]


def _run_on_pty(*args: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "intake_bfa.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
        env=dict(os.environ),
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_cli_draws_a_bar_on_a_terminal_only(published):
    code, terminal = _run_on_pty("fetch", "daily_availability", "--data-version", V_OLD)
    assert code == 0
    assert "100%" in terminal and "B/s" in terminal
    quiet = run_cli("fetch", "volume_rankings", "--data-version", V_OLD)  # stderr is a pipe
    assert quiet.returncode == 0 and quiet.stderr == ""
    code, terminal = _run_on_pty("fetch", "symbols", "--data-version", V_OLD, "--quiet")
    assert code == 0 and "%" not in terminal
