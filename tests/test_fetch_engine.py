"""The download engine under faults, on real sockets: retries, resume, expiry, kills, crowds.

Every fault is injected by the local release server; nothing of intake_bfa is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout, read_sidecar
from intake_bfa.config import get_settings
from intake_bfa.errors import DownloadError
from intake_bfa.resolve import get_manifest
from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.server import ReleaseServer

from .conftest import V_OLD

ASSET = "daily_availability.parquet"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def asset_gets(server, origin="objects"):
    return [r for r in server.requests if r.origin == origin and r.method == "GET"]


@pytest.fixture
def primed(published):
    """The manifest is cached, so every later request is for the data asset."""
    get_manifest(get_settings(), V_OLD)
    published.clear_requests()
    return published


def expected_bytes(samples):
    return (samples.dated(V_OLD) / ASSET).read_bytes()


def test_429_with_retry_after_is_honoured(primed, samples, caplog):
    primed.inject("web", ASSET, "status", status=429, headers={"Retry-After": "1"})
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    assert [r.status for r in asset_gets(primed, "web")] == [429, 302]
    assert "in 1.00 s" in caplog.text  # waited what the server asked, not the backoff


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried(primed, samples, status):
    primed.inject("objects", r".*", "status", status=status, times=2)
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    assert [r.status for r in asset_gets(primed)] == [status, status, 200]


def test_other_4xx_are_not_retried(primed):
    primed.inject("objects", r".*", "status", status=404, times=5)
    with pytest.raises(DownloadError) as info:
        intake_bfa.local_path("daily_availability", V_OLD)
    assert info.value.status == 404
    assert len(asset_gets(primed)) == 1


def test_attempts_are_bounded(primed, monkeypatch):
    monkeypatch.setenv("BFA_RETRIES", "3")
    primed.inject("objects", r".*", "status", status=503, times=10)
    with pytest.raises(DownloadError) as info:
        intake_bfa.local_path("daily_availability", V_OLD)
    assert info.value.status == 503
    assert len(asset_gets(primed)) == 3


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_broken_body_resumes_with_range_and_if_range(primed, samples, fault):
    primed.inject("objects", r".*", fault, after_bytes=300_000)
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    first, second = asset_gets(primed)
    assert "Range" not in first.headers
    start = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 300_000
    assert second.headers["If-Range"]  # the validator the first response carried
    assert second.status == 206


def test_slow_body_hits_the_read_timeout_then_resumes(primed, samples, monkeypatch):
    monkeypatch.setenv("BFA_TIMEOUT", "0.3")
    primed.inject("objects", r".*", "slow", after_bytes=262_144, delay=2.0)
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    gets = asset_gets(primed)
    assert len(gets) == 2 and gets[1].headers.get("Range", "").startswith("bytes=")


def test_expired_redirect_goes_back_to_the_original_url(primed, samples):
    primed.inject("objects", r".*", "expired")
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    assert [r.status for r in asset_gets(primed)] == [403, 200]
    assert len(asset_gets(primed, "web")) == 2  # a fresh signed URL for the retry


def test_server_ignoring_range_restarts_from_zero(primed, samples):
    primed.inject("objects", r".*", "reset", after_bytes=300_000)
    primed.inject("objects", r".*", "ignore_range")
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    _, second = asset_gets(primed)
    assert "Range" in second.headers and second.status == 200


def test_sidecar_records_the_verified_hash(published, samples):
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert read_sidecar(path) == (sha(path), path.stat().st_size)
    db = intake_bfa.local_path("availability_db", V_OLD)
    assert read_sidecar(db) == (sha(db), db.stat().st_size)  # decompressed output too


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()}


FETCH = (
    "import sys, intake_bfa; "
    "p = intake_bfa.local_path('daily_availability', sys.argv[1]); "
    "import hashlib; print(p, hashlib.sha256(p.read_bytes()).hexdigest(), flush=True)"
)


def test_sigkill_mid_download_then_a_new_call_completes(primed, samples):
    layout = CacheLayout(get_settings())
    final = layout.file_path(V_OLD, ASSET)
    part = final.with_name(final.name + ".part")
    primed.inject("objects", r".*", "slow", after_bytes=262_144, delay=30.0)
    child = subprocess.Popen([sys.executable, "-c", FETCH, V_OLD], env=_child_env())
    try:
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size >= 262_144):
            assert time.monotonic() < deadline, "the child never started writing"
            assert child.poll() is None
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert not final.exists()  # nothing under the final name in between
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    resumed = asset_gets(primed)[-1]
    assert resumed.headers.get("Range") == "bytes=262144-"
    assert not part.exists()


def test_eight_cold_processes_download_once(primed, samples):
    primed.inject("objects", r".*", "slow", after_bytes=65_536, delay=0.2, times=1)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH, V_OLD],
            env=_child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [c.communicate(timeout=120)[0].split() for c in children]
    assert all(c.returncode == 0 for c in children)
    expected = hashlib.sha256(expected_bytes(samples)).hexdigest()
    assert {tuple(o) for o in outputs} == {(outputs[0][0], expected)}
    assert len(asset_gets(primed)) == 1


def test_mirror_is_used_when_the_release_fails_and_never_gets_the_token(
    published, samples, tmp_path, monkeypatch
):
    token = "ghp_mirrortest000000000000"
    release = tmp_path / "release"
    shutil.copytree(samples.dated(V_OLD), release)
    manifest = json.loads((release / "manifest.json").read_text())
    manifest["version"] = "2021-07-09"
    with ReleaseServer() as mirror:
        mirror.add_release("mirror/bucket", "copy", {ASSET: release / ASSET})
        mirror_url = f"{mirror.web_url}/mirror/bucket/releases/download/copy/{ASSET}"
        manifest["datasets"]["daily_availability"]["urls"] = [mirror_url]
        (release / "manifest.json").write_text(json.dumps(manifest))
        assets = {"manifest.json": release / "manifest.json"}
        assets.update({e["asset"]: release / e["asset"] for e in manifest["datasets"].values()})
        published.add_release(SAMPLE_REPO, "data-2021-07-09", assets)
        monkeypatch.setenv("GITHUB_TOKEN", token)
        monkeypatch.setenv("BFA_RETRIES", "2")
        get_manifest(get_settings(), "2021-07-09")
        published.inject("objects", r".*", "status", status=503, times=100)
        path = intake_bfa.local_path("daily_availability", "2021-07-09")
        assert path.read_bytes() == (release / ASSET).read_bytes()
        mirror_requests = [r for r in mirror.requests if r.method == "GET"]
        assert mirror_requests
        assert not any(k.lower() == "authorization" for r in mirror_requests for k in r.headers)


def test_catalog_mirror_template_is_tried_after_the_release(
    published, samples, tmp_path, monkeypatch
):
    from intake_bfa.catalog import catalog_yaml, open_catalog

    token = "ghp_catalogmirror0000000000"
    with ReleaseServer() as mirror:
        mirror.add_release("mirror/bucket", f"data-{V_OLD}", {ASSET: samples.dated(V_OLD) / ASSET})
        template = mirror.web_url + "/mirror/bucket/releases/download/{tag}/{asset}"
        path = tmp_path / "catalog.yaml"
        path.write_text(catalog_yaml(mirrors=[template]))
        monkeypatch.setenv("GITHUB_TOKEN", token)
        monkeypatch.setenv("BFA_RETRIES", "1")
        get_manifest(get_settings(), V_OLD)
        published.inject("objects", r".*", "status", status=500, times=100)
        df = open_catalog(path).daily_availability.read(version=V_OLD)
        assert len(df) > 0
        gets = [r for r in mirror.requests if r.origin == "web"]
        assert gets and gets[0].path.endswith(f"/data-{V_OLD}/{ASSET}")
        assert not any(k.lower() == "authorization" for r in mirror.requests for k in r.headers)


def test_retry_after_as_an_http_date(primed, samples, caplog):
    import email.utils

    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits >= 1 s
    primed.inject("objects", r".*", "status", status=503, headers={"Retry-After": when})
    path = intake_bfa.local_path("daily_availability", V_OLD)
    assert path.read_bytes() == expected_bytes(samples)
    waited = [r for r in caplog.records if "retry 1/" in r.getMessage()]
    assert waited and "in 0.00 s" not in waited[0].getMessage()


def test_token_never_reaches_the_logs(primed, monkeypatch, caplog):
    import logging

    token = "ghp_neverlogged000000000000"
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("BFA_TTL", "0")
    caplog.set_level(logging.DEBUG)
    primed.inject("objects", r".*", "reset", after_bytes=1000)
    intake_bfa.local_path("daily_availability", V_OLD)
    intake_bfa.list_versions()
    assert caplog.records and token not in caplog.text
