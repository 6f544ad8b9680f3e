"""Token hygiene and GitHub rate limits, observed on the wire of the local release server."""

from __future__ import annotations

import pytest

import intake_bfa
from intake_bfa.errors import RateLimitError
from intake_bfa.resolve import resolve_version
from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.server import ReleaseServer

from .conftest import V_OLD

TOKEN = "ghp_tokenfortests0123456789"


def has_auth(request) -> bool:
    return any(k.lower() == "authorization" for k in request.headers)


def test_token_goes_to_the_api_only(published, monkeypatch, cache_dir):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    intake_bfa.read("symbols", V_OLD)
    by_origin = {
        o: [has_auth(r) for r in published.requests if r.origin == o]
        for o in ("api", "web", "objects")
    }
    assert by_origin["api"] and all(by_origin["api"])
    assert by_origin["web"] and not any(by_origin["web"])
    assert by_origin["objects"] and not any(by_origin["objects"])
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_private_repo_downloads_through_the_api_asset_url(published, monkeypatch):
    # A private repository answers 404 on browser_download_url; the asset API URL with
    # Accept: application/octet-stream and the token works.
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    published.inject("web", r"symbols\.parquet", "status", status=404, times=5)
    assert len(intake_bfa.read("symbols", V_OLD)) > 0
    api_asset = [
        r for r in published.requests if r.origin == "api" and "/releases/assets/" in r.path
    ]
    assert api_asset and all(has_auth(r) for r in api_asset)
    assert api_asset[0].headers.get("Accept") == "application/octet-stream"
    objects = [r for r in published.requests if r.origin == "objects"]
    assert objects and not any(has_auth(r) for r in objects)


def test_token_never_appears_in_errors(published, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("BFA_REPO", "ghost/repo")
    with pytest.raises(Exception) as info:
        resolve_version("latest")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.__dict__)


def test_rate_limit_is_a_typed_error_with_reset(samples, monkeypatch):
    with ReleaseServer(rate_limit=1) as server:
        samples.publish(server, SAMPLE_REPO, versions=[V_OLD])
        monkeypatch.setenv("BFA_API_URL", server.api_url)
        resolve_version("latest")  # uses the only request of the hour
        monkeypatch.setenv("BFA_TTL", "0")
        assert resolve_version("latest") == V_OLD  # rate-limited: the cached ref is served
        with pytest.raises(RateLimitError) as info:
            intake_bfa.list_versions()
        err = info.value
        assert err.status == 403 and err.reset
        assert "GITHUB_TOKEN" in str(err)


def test_rate_limit_with_nothing_cached_raises(samples, monkeypatch):
    with ReleaseServer(rate_limit=0) as server:
        samples.publish(server, SAMPLE_REPO, versions=[V_OLD])
        monkeypatch.setenv("BFA_API_URL", server.api_url)
        with pytest.raises(RateLimitError):
            resolve_version("latest")


def test_secondary_rate_limit_is_waited_out_by_resolution(published):
    """403 with Retry-After (GitHub's secondary limit, quota left) is retried after the wait."""
    published.inject(
        "api",
        r"/releases",
        "status",
        status=403,
        headers={"Retry-After": "0", "X-RateLimit-Remaining": "4999"},
        times=2,
    )
    versions = intake_bfa.list_versions()
    assert versions and published.count("api", "/releases") == 3


def test_secondary_rate_limit_that_persists_is_a_rate_limit_error(published):
    published.inject(
        "api", r"/releases", "status", status=403, headers={"Retry-After": "0"}, times=50
    )
    with pytest.raises(RateLimitError, match="secondary rate limit"):
        intake_bfa.list_versions()
