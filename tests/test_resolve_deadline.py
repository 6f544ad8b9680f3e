"""A deadline for "latest": a silent or stalled API costs BFA_RESOLVE_TIMEOUT, not minutes.

Before it, an API that accepted the connection and never answered held a caller for
5 attempts x 30 s (~155 s) before the error, or before the cached version was served.
The servers here are real sockets on 127.0.0.1; nothing of intake_bfa is mocked. Elapsed
times are checked against the budget plus a generous margin: behaviour, not speed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

import intake_bfa
import intake_bfa.resolve
from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import get_settings
from intake_bfa.errors import ConfigError, DownloadError, NotCachedError, RateLimitError
from intake_bfa.http import api_get_json, is_network_failure, is_retryable
from intake_bfa.resolve import resolve_version

from .conftest import V_NEW, run_cli

BUDGET = 1.0  # BFA_RESOLVE_TIMEOUT in these tests
MARGIN = 3.0  # slack for a loaded 2-core machine; the old behaviour took 150 s


class StalledServer:
    """A TCP server on 127.0.0.1 that accepts connections, then stalls.

    Parameters
    ----------
    head
        Sent once the request has arrived (say, a status line and headers); empty: the
        server never says a word.
    trickle
        Seconds between single body bytes sent after ``head``; None: nothing more.
    """

    def __init__(self, head: bytes = b"", trickle: float | None = None) -> None:
        self._head, self._trickle = head, trickle
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self.accepted = 0
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> StalledServer:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._listener.close()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._conns.append(conn)
            if self._head:
                self._spawn(self._answer, conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        request = b""
        try:
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            conn.sendall(self._head)
            while self._trickle is not None and not self._stop.wait(self._trickle):
                conn.sendall(b" ")
        except OSError:
            pass  # the client gave up and closed: what these tests expect


HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\nConnection: close\r\n\r\n"
)


@pytest.fixture
def budget(monkeypatch):
    monkeypatch.setenv("BFA_RESOLVE_TIMEOUT", str(BUDGET))


@pytest.fixture
def cached(published, budget, monkeypatch):
    """V_NEW resolved once against the good server; then the pointer is always stale."""
    assert resolve_version("latest") == V_NEW
    monkeypatch.setenv("BFA_TTL", "0")
    return V_NEW


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as err:
        return err, time.monotonic() - started


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- a silent API ------------------------------------------------------------------------------


def test_silent_api_serves_the_cached_version_within_the_budget(cached, monkeypatch, caplog):
    with StalledServer() as silent:
        monkeypatch.setenv("BFA_API_URL", silent.url)
        with caplog.at_level(logging.WARNING, logger="intake_bfa"):
            version, elapsed = timed(lambda: resolve_version("latest"))
    assert version == cached
    assert silent.accepted == 1  # one attempt, cut at the deadline: no retry after it
    assert BUDGET - 0.5 < elapsed < BUDGET + MARGIN
    (warning,) = warnings_of(caplog)
    assert f"using cached latest version {cached}" in warning
    assert "timed out after 1 s" in warning and "BFA_RESOLVE_TIMEOUT" in warning


def test_silent_api_with_nothing_cached_fails_naming_the_timeout(budget, monkeypatch):
    with StalledServer() as silent:
        monkeypatch.setenv("BFA_API_URL", silent.url)
        err, elapsed = timed(lambda: resolve_version("latest"))
    assert isinstance(err, NotCachedError) and isinstance(err, FileNotFoundError)
    assert elapsed < BUDGET + MARGIN
    message = str(err)
    assert "timed out after 1 s" in message and "BFA_RESOLVE_TIMEOUT" in message
    assert "no version of" in message
    assert "BFA_OFFLINE=1 to use cached data" not in message  # nothing is cached to use


def test_silent_api_on_the_command_line_is_one_line_and_exit_1(budget):
    with StalledServer() as silent:
        out, elapsed = timed(lambda: run_cli("fetch", "symbols", env={"BFA_API_URL": silent.url}))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("bfa: error: ") and "BFA_RESOLVE_TIMEOUT" in lines[0]
    assert "Traceback" not in out.stderr
    assert elapsed < BUDGET + MARGIN


def test_the_deadline_error_is_a_network_failure_not_worth_retrying(monkeypatch):
    monkeypatch.setenv("BFA_RESOLVE_TIMEOUT", "1")
    with StalledServer() as silent:
        monkeypatch.setenv("BFA_API_URL", silent.url)
        settings = get_settings()
        deadline = time.monotonic() + settings.resolve_timeout
        err, elapsed = timed(lambda: api_get_json(settings, "/repos/o/r", deadline=deadline))
    assert isinstance(err, DownloadError)
    assert is_network_failure(err) and not is_retryable(err)
    assert err.context["status"] is None and err.context["timed_out"]
    assert "resolution timed out after 1 s" in str(err) and "BFA_RESOLVE_TIMEOUT" in str(err)
    assert elapsed < 1 + MARGIN


# --- an API that answers, then stalls ------------------------------------------------------------


def test_headers_then_a_stalled_body_serves_the_cache(published, cached, caplog):
    # The release server's "slow" fault sends the status line and headers, then sleeps 30 s
    # before the body: with BFA_TIMEOUT (30 s) alone, 5 attempts would take 150 s.
    published.inject("api", r"/releases", "slow", times=10, delay=30.0)
    # Forget the list's ETag: an unchanged list would be a bodiless 304, nothing to stall.
    CacheLayout(get_settings()).releases_path.unlink()
    with caplog.at_level(logging.WARNING, logger="intake_bfa"):
        version, elapsed = timed(lambda: resolve_version("latest"))
    assert version == cached
    assert elapsed < BUDGET + MARGIN
    (warning,) = warnings_of(caplog)
    assert "BFA_RESOLVE_TIMEOUT" in warning


def test_a_trickling_body_is_cut_at_the_deadline(cached, monkeypatch):
    # A byte every 0.2 s never trips a per-read timeout; only the total budget stops it.
    with StalledServer(head=HEAD, trickle=0.2) as trickling:
        monkeypatch.setenv("BFA_API_URL", trickling.url)
        version, elapsed = timed(lambda: resolve_version("latest"))
    assert version == cached
    assert BUDGET - 0.5 < elapsed < BUDGET + MARGIN


def test_no_backoff_waits_past_the_deadline(published, cached, caplog):
    # Without the deadline, a 503 asking for a minute's patience would be waited for.
    published.inject("api", r"/releases", "status", status=503, headers={"Retry-After": "60"})
    with caplog.at_level(logging.WARNING, logger="intake_bfa"):
        version, elapsed = timed(lambda: resolve_version("latest"))
    assert version == cached
    assert elapsed < 1.0  # gave up at once: the retry could only start after the deadline
    (warning,) = warnings_of(caplog)
    assert "would time out before retrying" in warning and "BFA_RESOLVE_TIMEOUT" in warning


def test_a_rate_limit_is_reported_as_itself_not_as_a_timeout(published, budget):
    reset = str(int(time.time()) + 3600)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    published.inject("api", r"/releases", "status", status=403, headers=headers)
    err, elapsed = timed(lambda: resolve_version("latest"))
    assert isinstance(err, RateLimitError), err
    assert "rate limit exhausted" in str(err) and "BFA_RESOLVE_TIMEOUT" not in str(err)
    assert elapsed < 1.0


def test_a_quick_retry_still_happens_within_the_budget(published, cached):
    published.clear_requests()
    published.inject("api", r"/releases", "status", status=503)
    assert resolve_version("latest") == cached
    gets = [r for r in published.requests if r.origin == "api" and "/releases" in r.path]
    assert [r.status for r in gets] == [503, 304]  # retried, then "unchanged"


# --- downloads: a per-read timeout, no total limit -----------------------------------------------


def _asset_size(name: str) -> int:
    manifest = intake_bfa.resolve.pin("latest")
    return next(e.size for e in manifest.datasets.values() if e.asset == name)


def test_a_download_may_stall_longer_than_the_resolution_budget(published, monkeypatch):
    monkeypatch.setenv("BFA_RESOLVE_TIMEOUT", "0.5")
    monkeypatch.setenv("BFA_TIMEOUT", "10")
    size = _asset_size("daily_availability.parquet")
    # One pause of 2 s before the last piece of the body: past the resolution budget,
    # within the per-read timeout.
    published.inject("objects", r".*", "slow", after_bytes=size - 1000, delay=2.0)
    published.clear_requests()
    path, elapsed = timed(lambda: intake_bfa.local_path("daily_availability"))
    assert not isinstance(path, Exception), path
    assert path.stat().st_size == size
    assert elapsed >= 2.0
    gets = [r for r in published.requests if r.origin == "objects" and r.method == "GET"]
    assert len(gets) == 1  # not cut off and retried


def test_a_stalled_download_still_fails_by_the_per_read_timeout(published, monkeypatch):
    monkeypatch.setenv("BFA_TIMEOUT", "0.5")
    monkeypatch.setenv("BFA_RETRIES", "1")
    size = _asset_size("daily_availability.parquet")
    published.inject("objects", r".*", "slow", after_bytes=size // 2, delay=5.0)
    err, elapsed = timed(lambda: intake_bfa.local_path("daily_availability"))
    assert isinstance(err, DownloadError), err
    assert "TimeoutError" in str(err) or "timed out" in str(err)
    assert elapsed < 0.5 + MARGIN


# --- configuration ----------------------------------------------------------------------------


def test_defaults():
    settings = get_settings()
    assert (settings.timeout, settings.connect_timeout, settings.resolve_timeout) == (30, 10, 15)


@pytest.mark.parametrize("variable", ["BFA_CONNECT_TIMEOUT", "BFA_RESOLVE_TIMEOUT"])
@pytest.mark.parametrize(
    ("value", "fragment"),
    [("0", "must be positive"), ("-1", "not a duration"), ("abc", "not a duration")],
)
def test_invalid_timeouts_are_config_errors(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert variable in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("variable", ["BFA_CONNECT_TIMEOUT", "BFA_RESOLVE_TIMEOUT"])
def test_timeouts_take_units_like_every_duration(monkeypatch, variable):
    field = variable.removeprefix("BFA_").lower()
    monkeypatch.setenv(variable, "2s")
    assert getattr(get_settings(), field) == 2.0
    monkeypatch.setenv(variable, "1.5")
    assert getattr(get_settings(), field) == 1.5
    monkeypatch.setenv(variable, "1m")
    assert getattr(get_settings(), field) == 60.0
