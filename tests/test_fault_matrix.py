"""One fault matrix over the real local release server: every fault, one invariant.

For each fault (injected once by the server, or a server that never answers), a cold read
either returns exactly the published bytes or raises a typed :class:`BfaError`, within a
time bound; the cache never holds a wrong file under its final name, and a ``.part`` never
grows past the published size. tests/test_fetch_engine.py tests each recovery in depth;
this table makes sure no fault is left out.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import get_settings
from intake_bfa.errors import BfaError, IntegrityError, NotCachedError
from intake_bfa.resolve import get_manifest

from .conftest import V_OLD

ASSET = "daily_availability.parquet"

#: (origin, path regex, fault, options, expected: "ok" or the typed error it must raise).
MATRIX = {
    "429 with Retry-After": ("web", ASSET, "status", {"status": 429, "headers": {"Retry-After": "1"}}, "ok"),
    "5xx twice": ("objects", ".*", "status", {"status": 503, "times": 2}, "ok"),
    "connection reset": ("objects", ".*", "reset", {"after_bytes": 300_000}, "ok"),
    "truncated body": ("objects", ".*", "truncate", {"after_bytes": 300_000}, "ok"),
    "slow body": ("objects", ".*", "slow", {"after_bytes": 262_144, "delay": 0.3}, "ok"),
    "no Range support": ("objects", ".*", "ignore_range", {"times": 3}, "ok"),
    "expired redirect": ("objects", ".*", "expired", {}, "ok"),
    "corrupted in transit": ("objects", ".*", "corrupt", {"times": 10}, IntegrityError),
    "over-long body": ("objects", ".*", "long_body", {"after_bytes": 1_000_000}, IntegrityError),
    "endless body": ("objects", ".*", "long_body", {"after_bytes": 0, "times": 10}, IntegrityError),
}  # fmt: skip


@pytest.fixture
def primed(published):
    """The manifest is cached, so the fault hits the data download."""
    get_manifest(get_settings(), V_OLD)
    published.clear_requests()
    return published


def _largest_part(layout: CacheLayout) -> int:
    parts = list(layout.repo_dir.rglob("*.part"))
    return max((p.stat().st_size for p in parts), default=0)


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault_matrix(case, primed, samples):
    origin, regex, kind, options, expected = MATRIX[case]
    primed.inject(origin, regex, kind, **options)
    published = (samples.dated(V_OLD) / ASSET).read_bytes()
    layout = CacheLayout(get_settings())
    final = layout.file_path(V_OLD, ASSET)
    started = time.monotonic()
    if expected == "ok":
        path = intake_bfa.local_path("daily_availability", V_OLD)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(published).digest()
    else:
        with pytest.raises(expected) as info:
            intake_bfa.local_path("daily_availability", V_OLD)
        assert isinstance(info.value, BfaError)
        assert not final.exists()  # nothing wrong under the final name
    assert time.monotonic() - started < 60
    assert _largest_part(layout) <= len(published)


def test_a_server_that_never_answers(published, monkeypatch):
    """Accepts connections and says nothing: resolution gives up within its budget."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        monkeypatch.setenv("BFA_API_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("BFA_RESOLVE_TIMEOUT", "1")
        started = time.monotonic()
        with pytest.raises(NotCachedError, match="BFA_RESOLVE_TIMEOUT"):
            intake_bfa.read("symbols")
        assert time.monotonic() - started < 10
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_an_endless_api_answer_is_cut_at_the_body_limit(published):
    """A runaway API answer is refused once past MAX_BODY_BYTES, never read to its end."""
    from intake_bfa.errors import DownloadError
    from intake_bfa.http import MAX_BODY_BYTES

    published.inject("api", r"/releases", "long_body", after_bytes=0, times=10)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=f"more than {MAX_BODY_BYTES} bytes"):
        intake_bfa.list_versions()
    assert time.monotonic() - started < 60
