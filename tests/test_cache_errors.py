"""Every cache-folder problem is one typed ``CacheError`` (issue 14): real folders, real processes.

Nothing of ours is mocked. A folder is made read-only for real: ``chmod`` for a normal
user; as root (whom permissions do not stop), a read-only bind mount (``EROFS``) or else
the immutable flag (``chattr +i``, ``EPERM``). A full disk is a small tmpfs (root with
``CAP_SYS_ADMIN``; elsewhere the end-to-end test skips, saying why) and, anywhere, a real
``ENOSPC`` from ``/dev/full``; a file-size limit is ``RLIMIT_FSIZE`` in a child process;
"not a folder" is a regular file in the way.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout, cache_write_error
from intake_bfa.config import get_settings
from intake_bfa.errors import BfaError, CacheError, OutputError
from intake_bfa.fetch import part_path
from intake_bfa.resolve import pin
from intake_bfa.testing.releases import SAMPLE_REPO

from .conftest import ROOT, V_NEW, V_OLD, run_cli, run_cli_process

IS_ROOT = os.geteuid() == 0
DAY = "2021-03-04"


def one_error_line(out) -> str:
    """The CLI's single ``bfa: error:`` line (exit 1, no traceback)."""
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bfa: error: "), out.stderr
    return lines[0]


def _ok(*cmd: str | Path) -> bool:
    return subprocess.run([str(c) for c in cmd], capture_output=True).returncode == 0


def _unwritable(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make ``folder`` and everything under it unwritable; yields the mechanism used."""
    if not IS_ROOT:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if not p.is_symlink()}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            assert _unwritable(folder)
            yield "chmod a-w"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    # Root ignores permissions. A read-only bind mount is what the issue saw (Errno 30).
    if _ok("mount", "--bind", folder, folder):
        if _ok("mount", "-o", "remount,bind,ro", folder):
            assert _unwritable(folder)
            try:
                yield "read-only bind mount"
            finally:
                assert _ok("umount", folder)
            return
        _ok("umount", folder)
    if _ok("chattr", "-R", "+i", folder):
        try:
            assert _unwritable(folder)
            yield "chattr +i"
        finally:
            _ok("chattr", "-R", "-i", folder)
        return
    pytest.skip(
        "running as root without CAP_SYS_ADMIN (no read-only mount) and without chattr +i "
        "support: no real way to make a folder read-only for root here"
    )


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` at ``folder`` (root with CAP_SYS_ADMIN)."""
    folder.mkdir()
    mounted = IS_ROOT and _ok("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder)
    if not mounted:
        pytest.skip(
            "a full disk needs a small tmpfs, and mounting one needs root with CAP_SYS_ADMIN; "
            "test_a_full_disk_is_a_no_space_cache_error_with_the_space_needed covers ENOSPC"
        )
    try:
        yield
    finally:
        _ok("umount", "-l", folder)


def temp_files(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.XXXX.tmp``) anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


# --- the error itself -------------------------------------------------------------------------


def test_cache_error_is_our_error_and_an_oserror_that_pickles(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError) as info:
        os.mkdir(blocker / "cache")
    err = cache_write_error(info.value, blocker / "cache" / "v1", blocker / "cache")
    assert isinstance(err, BfaError) and isinstance(err, OSError)
    assert (err.errno, err.strerror) == (errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    assert err.kind == "not_a_folder" and err.filename == str(blocker / "cache")
    assert err.path == str(blocker / "cache" / "v1") and err.cache_dir == str(blocker / "cache")
    assert f"{blocker} is not a folder" in str(err) and "BFA_CACHE_DIR" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is CacheError and str(again) == str(err)
    assert (again.errno, again.strerror, again.kind, again.path) == (
        err.errno,
        err.strerror,
        err.kind,
        err.path,
    )
    out = pickle.loads(pickle.dumps(OutputError("x", path="/o", errno=errno.EROFS)))
    assert isinstance(out, OSError) and out.errno == errno.EROFS and out.path == "/o"


# --- not a folder, uncreatable, read-only -----------------------------------------------------


PINNED_OR_LATEST = pytest.mark.parametrize(
    "version", [["--data-version", V_OLD], []], ids=["pinned", "latest"]
)


@PINNED_OR_LATEST
@pytest.mark.parametrize("below", [False, True], ids=["file-is-the-cache", "file-above-cache"])
def test_a_file_where_the_cache_folder_should_be(published, tmp_path, below, version):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine\n")
    cache = blocker / "cache" if below else blocker
    line = one_error_line(run_cli("fetch", "symbols", *version, env={"BFA_CACHE_DIR": str(cache)}))
    assert f"{blocker} is not a folder" in line and "BFA_CACHE_DIR" in line, line
    with pytest.raises(CacheError) as info:
        intake_bfa.local_path("symbols", V_OLD, settings=get_settings(cache_dir=cache))
    assert isinstance(info.value, OSError)
    assert info.value.errno == (errno.ENOTDIR if below else errno.EEXIST)
    assert info.value.cache_dir == str(cache)
    assert blocker.read_text() == "mine\n"


@PINNED_OR_LATEST
def test_an_uncreatable_cache_folder_is_one_line(published, tmp_path, version):
    parent = tmp_path / "locked"
    parent.mkdir()
    cache = parent / "cache"
    with read_only(parent):
        out = run_cli("fetch", "symbols", *version, env={"BFA_CACHE_DIR": str(cache)})
        line = one_error_line(out)
        with pytest.raises(CacheError) as info:
            intake_bfa.local_path("symbols", V_OLD, settings=get_settings(cache_dir=cache))
    assert f"cache folder {cache} is read-only" in line and "BFA_CACHE_DIR" in line, line
    assert "Errno" in line
    assert info.value.kind == "read_only" and info.value.errno in (
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
    )
    assert list(parent.iterdir()) == []


def test_read_only_complete_cache_keeps_serving_after_the_ttl(published, cache_dir):
    assert run_cli("snapshot", DAY).returncode == 0  # caches latest (V_NEW) for queries
    fetched = run_cli("fetch", "volume_rankings")
    assert fetched.returncode == 0, fetched.stderr
    # Everything bfa serve reads, so that the engine below starts from the cache alone.
    assert run_cli("fetch", "availability_events").returncode == 0
    before = tree(cache_dir)
    stale = {"BFA_TTL": "0"}
    with read_only(cache_dir):
        published.clear_requests()
        again = run_cli("fetch", "volume_rankings", env=stale)
        # A process of its own: the warning is said once per process (this one said it).
        query = run_cli_process("snapshot", DAY, "--format", "csv", env=stale)
        refresh = run_cli("cache", "refresh")
        from intake_bfa.serve.engine import Engine

        engine = Engine(settings=get_settings(ttl=0)).start()
        try:
            assert engine.default == V_NEW
        finally:
            engine.close()
        after = tree(cache_dir)
    assert published.count("api", "/releases") >= 2  # it did ask: the TTL was over
    assert again.returncode == 0 and again.stdout == fetched.stdout, again.stderr
    (warning,) = again.stderr.strip().splitlines()
    assert "could not refresh 'latest' in read-only cache" in warning, warning
    assert str(cache_dir) in warning and f"serving version {V_NEW}" in warning
    assert query.returncode == 0 and "BTCUSDT" in query.stdout, query.stderr
    assert query.stderr.strip().splitlines() == [warning], query.stderr
    line = one_error_line(refresh)
    assert f"cache folder {cache_dir} is read-only" in line and "BFA_CACHE_DIR" in line
    assert after == before  # nothing was written, nothing was left


def test_read_only_cache_serves_what_it_has_when_a_newer_release_is_out(
    server, samples, monkeypatch, cache_dir
):
    samples.publish(server, SAMPLE_REPO, versions=[V_OLD])
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    first = run_cli("fetch", "symbols")
    assert first.returncode == 0 and V_OLD in first.stdout, first.stderr
    samples.publish(server, SAMPLE_REPO, versions=[V_NEW])
    with read_only(cache_dir):
        out = run_cli("fetch", "symbols", env={"BFA_TTL": "0"})
        missing = run_cli("fetch", "volume_rankings", "--data-version", V_OLD)
    assert out.returncode == 0 and out.stdout == first.stdout, out.stderr
    (warning,) = out.stderr.strip().splitlines()
    assert f"serving version {V_OLD}" in warning and f"newer {V_NEW}" in warning, warning
    # A file the read-only cache lacks: the cache's error, not a download or lock failure.
    line = one_error_line(missing)
    assert f"cache folder {cache_dir} is read-only" in line and "BFA_CACHE_DIR" in line, line


# --- full disk, file-size limit ---------------------------------------------------------------


def test_a_full_disk_leaves_only_a_resumable_part(published, samples, tmp_path):
    disk = tmp_path / "small"
    cache = disk / "cache"
    env = {"BFA_CACHE_DIR": str(cache)}
    with small_disk(disk, "256k"):  # the manifest fits, the 578 KiB Parquet file does not
        line = one_error_line(
            run_cli("fetch", "daily_availability", "--data-version", V_OLD, env=env)
        )
        assert f"no space left in cache folder {cache}" in line, line
        assert "need about" in line and "free:" in line and "BFA_CACHE_DIR" in line, line
        # Neither retried nor taken for a bad URL: a full disk does not heal by asking again.
        assert published.count("web", "daily_availability.parquet") == 1
        final = CacheLayout(get_settings(cache_dir=cache)).file_path(
            V_OLD, "daily_availability.parquet"
        )
        part = part_path(final)
        assert not final.exists() and part.stat().st_size > 0
        assert part.with_name(part.name + ".json").is_file()
        assert temp_files(cache) == []
        with pytest.raises(CacheError) as info:  # the same from Python, with the figures
            intake_bfa.local_path(
                "daily_availability", V_OLD, settings=get_settings(cache_dir=cache)
            )
        assert info.value.kind == "no_space" and info.value.errno == errno.ENOSPC
        entry = pin(V_OLD, get_settings(cache_dir=cache)).datasets["daily_availability"]
        assert info.value.need == entry.size - part.stat().st_size
        assert temp_files(cache) == []
        # Room again: the next run resumes the .part instead of starting over.
        assert _ok("mount", "-o", "remount,size=8m", disk)
        published.clear_requests()
        out = run_cli("fetch", "daily_availability", "--data-version", V_OLD, env=env)
        assert out.returncode == 0, out.stderr
        assert any(r.headers.get("Range") for r in published.requests if r.origin == "objects")
        expected = (samples.dated(V_OLD) / "daily_availability.parquet").read_bytes()
        assert final.read_bytes() == expected and not part.exists()


def test_a_full_disk_is_a_no_space_cache_error_with_the_space_needed(tmp_path):
    # /dev/full fails every write with ENOSPC, root or not, without a mount. Opened without
    # O_CREAT: where it is missing, nothing may be created in its place.
    if not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.fail("/dev/full is not the character device: the machine is damaged")
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"x" * 4096)
    finally:
        os.close(fd)
    part = tmp_path / "cache" / "v1" / "data.parquet.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    err = cache_write_error(info.value, part, tmp_path / "cache", size=3 << 20)
    assert err.kind == "no_space" and err.errno == errno.ENOSPC == info.value.errno
    assert err.need == (3 << 20) - 1000 and err.free is not None and err.free > 0
    assert f"no space left in cache folder {tmp_path / 'cache'}" in str(err)
    assert "need about 3.0 MiB more" in str(err) and "free:" in str(err)
    assert "BFA_CACHE_DIR" in str(err) and "Errno 28" in str(err)


def test_a_file_size_limit_is_one_line_and_resumes(published, samples, cache_dir):
    limit = 64 << 10  # the manifest (~6 KiB) fits, volume_rankings (~146 KiB) does not

    def limited() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed

    args = ["fetch", "volume_rankings", "--data-version", V_OLD]
    out = subprocess.run(
        [sys.executable, "-m", "intake_bfa.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
        timeout=120,
        preexec_fn=limited,
    )
    line = one_error_line(out)
    assert "file-size limit" in line and "Errno 27" in line and "ulimit" in line, line
    final = CacheLayout(get_settings()).file_path(V_OLD, "volume_rankings.parquet")
    assert part_path(final).stat().st_size == limit and temp_files(cache_dir) == []
    published.clear_requests()
    assert run_cli(*args).returncode == 0
    assert any(r.headers.get("Range") for r in published.requests if r.origin == "objects")
    assert final.read_bytes() == (samples.dated(V_OLD) / "volume_rankings.parquet").read_bytes()


# --- --output ---------------------------------------------------------------------------------


def test_output_that_cannot_be_written_is_one_line_and_leaves_nothing(published, tmp_path):
    assert run_cli("snapshot", DAY).returncode == 0  # cache first: only --output fails
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        line = one_error_line(run_cli("snapshot", DAY, "--output", str(locked / "day.csv")))
    assert f"cannot write {locked / 'day.csv'}" in line and "--output" in line, line
    assert "not writable" in line and list(locked.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_error_line(run_cli("snapshot", DAY, "--output", str(blocker / "day.parquet")))
    assert f"{blocker} is not a folder" in line and "--output" in line, line
    assert temp_files(tmp_path) == []
