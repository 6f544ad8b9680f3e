"""Version resolution, layouts, list_versions: against the real local release server."""

from __future__ import annotations

import json

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout, read_ref
from intake_bfa.config import get_settings
from intake_bfa.errors import NotCachedError, RepoNotFoundError, VersionNotFoundError
from intake_bfa.resolve import get_manifest, resolve_version
from intake_bfa.testing.releases import SAMPLE_REPO, publish_dated

from .conftest import V_NEW, V_OLD


def api_requests(server):
    return [r for r in server.requests if r.origin == "api"]


def test_latest_resolves_with_one_request_then_none(published):
    assert resolve_version("latest") == V_NEW
    assert len(api_requests(published)) == 1
    published.clear_requests()
    assert resolve_version("latest") == V_NEW  # within the TTL: the cached ref answers
    assert published.requests == []
    ref = read_ref(CacheLayout(get_settings()))
    assert ref["version"] == V_NEW and ref["tag"] == f"data-{V_NEW}"


def test_expired_ttl_revalidates_with_etag(published, monkeypatch):
    resolve_version("latest")
    monkeypatch.setenv("BFA_TTL", "0")
    published.clear_requests()
    assert resolve_version("latest") == V_NEW
    (request,) = api_requests(published)
    assert request.headers.get("If-None-Match")
    assert request.status == 304


def test_new_release_is_seen_after_ttl(published, samples, monkeypatch):
    resolve_version("latest")
    publish_dated(published, SAMPLE_REPO, samples.dated("2021-07-05"))
    assert resolve_version("latest") == V_NEW  # still inside the TTL
    monkeypatch.setenv("BFA_TTL", "0")
    assert resolve_version("latest") == "2021-07-05"


def test_pinned_version_with_cached_manifest_needs_no_request(published):
    settings = get_settings()
    get_manifest(settings, V_OLD)
    published.clear_requests()
    manifest = get_manifest(settings, V_OLD)
    assert manifest.version == V_OLD
    assert published.requests == []


def test_pinned_accepts_tag_name_and_validates(published):
    assert resolve_version(f"data-{V_OLD}") == V_OLD
    with pytest.raises(VersionNotFoundError, match="not a valid date"):
        resolve_version("2021-02-30")
    with pytest.raises(VersionNotFoundError, match="not a dataset version"):
        resolve_version("../../etc")
    assert published.requests == []


def test_unknown_version_lists_nearest(published):
    with pytest.raises(VersionNotFoundError) as info:
        get_manifest(get_settings(), "2021-06-30")
    err = info.value
    assert err.nearest[0] in (V_OLD, V_NEW)
    assert V_OLD in str(err) and V_NEW in str(err)
    assert "bfa versions" in str(err)


def test_repo_not_found(published, monkeypatch):
    monkeypatch.setenv("BFA_REPO", "nobody/nothing")
    with pytest.raises(RepoNotFoundError) as info:
        resolve_version("latest")
    assert "nobody/nothing" in str(info.value) and "BFA_REPO" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_repo_without_dataset_releases(server, monkeypatch):
    server.add_release("someone/other", "v1.0", {"notes.txt": b"hello"})
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", "someone/other")
    with pytest.raises(VersionNotFoundError, match="no dataset releases"):
        resolve_version("latest")


def test_drafts_and_incomplete_releases_are_ignored(published, samples):
    publish_dated(published, SAMPLE_REPO, samples.dated("2021-07-03"), draft=True)
    published.add_release(SAMPLE_REPO, "data-2021-07-04", {"daily_availability.parquet": b"x"})
    versions = [v.version for v in intake_bfa.list_versions()]
    assert versions == [V_NEW, V_OLD]


def test_list_versions_reports_coverage_size_and_cache_state(published):
    intake_bfa.read("symbols", V_OLD)
    rows = intake_bfa.list_versions()
    assert [r.version for r in rows] == [V_NEW, V_OLD]
    new, old = rows
    assert new.latest and not old.latest
    assert (new.coverage_start, new.coverage_end) == ("2019-12-31", "2021-06-30")
    assert old.coverage_end == "2021-06-27"
    assert new.rows > 0 and new.size > 0
    assert old.cached and not new.cached


def test_list_versions_offline_uses_cache(published, monkeypatch):
    intake_bfa.read("symbols", V_OLD)
    monkeypatch.setenv("BFA_OFFLINE", "1")
    published.clear_requests()
    rows = intake_bfa.list_versions()
    assert [r.version for r in rows] == [V_OLD]
    assert published.requests == []


def test_offline_latest_falls_back_to_last_resolved(published, monkeypatch, caplog):
    intake_bfa.read("symbols")
    monkeypatch.setenv("BFA_OFFLINE", "1")
    monkeypatch.setenv("BFA_TTL", "0")
    published.clear_requests()
    assert resolve_version("latest") == V_NEW
    assert "offline" in caplog.text and "resolved" in caplog.text
    assert published.requests == []


def test_offline_without_cache_raises_not_cached(monkeypatch, cache_dir):
    monkeypatch.setenv("BFA_OFFLINE", "1")
    with pytest.raises(NotCachedError) as info:
        intake_bfa.read("daily_availability")
    assert str(cache_dir) in str(info.value)
    with pytest.raises(NotCachedError) as info:
        intake_bfa.read("daily_availability", V_OLD)
    assert info.value.version == V_OLD


def test_unreachable_server_falls_back_to_cache(published, monkeypatch):
    intake_bfa.read("symbols")
    monkeypatch.setenv("BFA_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BFA_TTL", "0")
    assert len(intake_bfa.read("symbols")) > 0


def test_rolling_layout_is_detected(rolling):
    (info,) = intake_bfa.list_versions()
    assert info.layout == "rolling" and info.tag == "latest"
    assert info.version.startswith("rolling-")
    manifest = get_manifest(get_settings(), resolve_version("latest"))
    assert manifest.layout == "rolling"
    assert manifest.datasets["daily_availability"].derived_from == "availability_db"
    assert manifest.datasets["availability_db"].sha256  # from the API's digest field


def test_dated_layout_wins_over_rolling(rolling, samples):
    from .conftest import ROLLING_REPO

    publish_dated(rolling, ROLLING_REPO, samples.dated(V_OLD))
    assert resolve_version("latest") == V_OLD
    versions = intake_bfa.list_versions()
    assert [v.layout for v in versions] == ["dated", "rolling"]


def test_cached_release_list_is_reused_with_etag(published):
    intake_bfa.list_versions()
    layout = CacheLayout(get_settings())
    cached = json.loads(layout.releases_path.read_text())
    assert cached["etag"]
    published.clear_requests()
    intake_bfa.list_versions()
    assert [r.status for r in api_requests(published)] == [304]
