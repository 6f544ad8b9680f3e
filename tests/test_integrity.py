"""Bad releases and bad bytes: typed errors, and nothing half-written in the cache."""

from __future__ import annotations

import hashlib
import json

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import get_settings
from intake_bfa.errors import IntegrityError, ManifestError
from intake_bfa.resolve import get_manifest
from intake_bfa.testing.releases import SAMPLE_REPO

from .conftest import V_NEW, V_OLD


def cache_files(cache_dir):
    return sorted(p.name for p in cache_dir.rglob("*") if p.is_file())


def test_corrupted_download_raises_and_caches_nothing(published, cache_dir):
    get_manifest(get_settings(), V_OLD)
    published.inject("objects", r".*", "corrupt", times=10)
    with pytest.raises(IntegrityError) as info:
        intake_bfa.read("symbols", V_OLD)
    err = info.value
    assert "sha256 mismatch for symbols.parquet" in str(err) and err.expected != err.actual
    version_dir = CacheLayout(get_settings()).version_dir(V_OLD)
    assert not (version_dir / "symbols.parquet").exists()
    assert [p for p in version_dir.iterdir() if p.name != "manifest.json"] == []


def test_wrong_bytes_leave_no_partial_file(published, cache_dir):
    get_manifest(get_settings(), V_OLD)
    published.inject("objects", r".*", "corrupt", times=1)  # wrong bytes are not retried
    with pytest.raises(IntegrityError):
        intake_bfa.read("symbols", V_OLD)
    assert not [n for n in cache_files(cache_dir) if n.endswith((".part", ".tmp", ".parquet"))]
    assert len(intake_bfa.read("symbols", V_OLD)) > 0  # the next call completes


def manifest_release(server, version, manifest, extra_assets=None):
    assets = {"manifest.json": json.dumps(manifest).encode()}
    assets.update(extra_assets or {})
    server.add_release(SAMPLE_REPO, f"data-{version}", assets)


def good_manifest(samples):
    return json.loads((samples.dated(V_NEW) / "manifest.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (
            lambda m: m["datasets"]["symbols"].update(asset="../../escape.parquet"),
            "plain file name",
        ),
        (lambda m: m["datasets"]["symbols"].update(asset="sub/dir.parquet"), "plain file name"),
        (lambda m: m["datasets"]["symbols"].update(asset=".hidden"), "plain file name"),
        (lambda m: m.update(schema_version=99), "schema_version"),
        (lambda m: m.pop("datasets"), "datasets"),
        (lambda m: m["datasets"]["symbols"].update(sha256="abc"), "64 hex"),
        (lambda m: m.update(version="2000-01-01"), "expected '2021-07-09'"),
    ],
)
def test_malformed_manifests_are_refused(published, samples, cache_dir, mutate, fragment):
    manifest = good_manifest(samples)
    manifest["version"] = "2021-07-09"
    mutate(manifest)
    assets = {e["asset"]: b"x" for e in good_manifest(samples)["datasets"].values()}
    manifest_release(published, "2021-07-09", manifest, assets)
    with pytest.raises(ManifestError) as info:
        intake_bfa.read("symbols", "2021-07-09")
    assert fragment in str(info.value)
    assert not CacheLayout(get_settings()).manifest_path("2021-07-09").exists()


def test_manifest_that_is_not_json(published):
    published.add_release(SAMPLE_REPO, "data-2021-07-09", {"manifest.json": b"{not json"})
    with pytest.raises(ManifestError, match="not valid JSON"):
        intake_bfa.read("symbols", "2021-07-09")


def test_manifest_listing_an_absent_asset(published, samples):
    manifest = good_manifest(samples)
    manifest["version"] = "2021-07-09"
    manifest_release(published, "2021-07-09", manifest)  # no data assets uploaded
    with pytest.raises(ManifestError, match="lacks"):
        intake_bfa.read("symbols", "2021-07-09")


def test_manifest_digest_mismatch(published, samples):
    published.inject("objects", r".*", "corrupt", times=1)
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        get_manifest(get_settings(), V_OLD)


def test_rolling_layout_verifies_with_the_api_digest(rolling, samples, cache_dir):
    rolling.inject("objects", r".*", "corrupt", times=10)
    with pytest.raises(IntegrityError):
        intake_bfa.read("daily_availability")
    assert not [n for n in cache_files(cache_dir) if n.endswith((".duckdb", ".gz", ".parquet"))]


def test_rolling_layout_without_digest_checks_size(server, samples, monkeypatch, caplog):
    from intake_bfa.testing.releases import publish_rolling

    from .conftest import ROLLING_END, ROLLING_REPO

    publish_rolling(server, ROLLING_REPO, samples.rolling(ROLLING_END), with_digest=False)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", ROLLING_REPO)
    df = intake_bfa.read("volume_rankings")
    assert len(df) > 0
    assert "no sha256 published" in caplog.text
    expected = hashlib.sha256(
        (samples.rolling(ROLLING_END) / "volume-rankings-timeseries.parquet").read_bytes()
    ).hexdigest()
    path = intake_bfa.local_path("volume_rankings")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
