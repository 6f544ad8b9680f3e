"""`bfa cache ...`: the library functions and the real CLI, against the local release server."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

import intake_bfa
from intake_bfa.cache.admin import (
    TEMP_MIN_AGE,
    RefreshResult,
    cache_status,
    clear,
    prune,
    refresh,
    verify,
)
from intake_bfa.cache.layout import CacheLayout, read_ref, sidecar_path, write_sidecar
from intake_bfa.config import get_settings
from intake_bfa.errors import ConfigError, DownloadError, VersionNotFoundError
from intake_bfa.resolve import resolve_version
from intake_bfa.testing.releases import SAMPLE_REPO, publish_dated

from .conftest import V_NEW, V_OLD, run_cli

V_NEWER = "2021-07-05"
OTHER_REPO = "someone-else/binance-futures-availability"


def repo_dir(cache_dir):
    return cache_dir / "v1" / SAMPLE_REPO


def disk_size(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cached_versions(cache_dir):
    return sorted(p.name for p in repo_dir(cache_dir).iterdir() if not p.name.startswith("_"))


def one_error_line(out):
    assert out.returncode == 1, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bfa: error: "), out.stderr
    return lines[0]


def test_status_of_an_empty_cache(cache_dir):
    status = cache_status(get_settings())
    assert not status.exists and status.total_size == 0 and status.leftovers == []
    (repo,) = status.repos
    assert repo.repo == SAMPLE_REPO and repo.configured and repo.versions == []
    assert (repo.hits, repo.misses, repo.hit_rate, repo.latest) == (0, 0, None, None)


def test_status_after_reading_two_versions(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    intake_bfa.read("symbols")  # latest: V_NEW
    status = cache_status(get_settings())
    (repo,) = status.repos
    assert [(v.version, v.latest) for v in repo.versions] == [(V_NEW, True), (V_OLD, False)]
    assert repo.latest == V_NEW and 0 <= repo.latest_age < 3600
    for v in repo.versions:
        folder = repo_dir(cache_dir) / v.version
        assert v.has_manifest and {"manifest.json", "symbols.parquet"} <= {f.name for f in v.files}
        assert all(f.size == (folder / f.name).stat().st_size for f in v.files)
        assert v.size == disk_size(folder)  # hash sidecars included
    assert status.total_size == disk_size(cache_dir)
    assert (repo.hits, repo.misses) == (0, 2)

    intake_bfa.read("symbols", V_OLD)  # cached now: a hit
    repo = cache_status(get_settings()).repos[0]
    assert (repo.hits, repo.misses) == (1, 2) and repo.hit_rate == pytest.approx(1 / 3)


def test_status_cli_lists_every_repo_and_leftovers(published, samples, cache_dir):
    samples.publish(published, OTHER_REPO, versions=[V_OLD])
    intake_bfa.read("symbols", V_OLD, settings=get_settings(repo=OTHER_REPO))
    intake_bfa.read("symbols")
    folder = repo_dir(cache_dir) / V_NEW
    (folder / "daily_availability.parquet.part").write_bytes(b"0123456789")  # to resume
    (folder / "daily_availability.parquet.part.json").write_bytes(b"{}")

    out = run_cli("cache", "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"cache_dir", "exists", "total_size", "repos", "leftovers", "leftover_size"}
    assert data["cache_dir"] == str(cache_dir) and data["total_size"] == disk_size(cache_dir)
    assert [(r["repo"], r["configured"]) for r in data["repos"]] == [
        (SAMPLE_REPO, True),
        (OTHER_REPO, False),
    ]
    mine = data["repos"][0]
    assert mine["latest"] == V_NEW and (mine["hits"], mine["misses"]) == (0, 1)
    (version,) = mine["versions"]
    assert version["version"] == V_NEW and version["latest"]
    assert set(version["files"][0]) == {"name", "size", "age"}
    prefix = f"v1/{SAMPLE_REPO}/{V_NEW}/daily_availability.parquet"
    assert [(e["name"], e["size"]) for e in data["leftovers"]] == [
        (prefix + ".part", 10),
        (prefix + ".part.json", 2),
    ]
    assert data["leftover_size"] == 12
    assert [f["name"] for f in version["files"]] == ["manifest.json", "symbols.parquet"]

    table = run_cli("cache", "status")
    assert table.returncode == 0, table.stderr
    assert f"{V_NEW} (latest)" in table.stdout and OTHER_REPO in table.stdout
    assert "hit rate" in table.stdout and "leftover temporary files: 2" in table.stdout


def test_clear_one_version_then_it_downloads_again(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    intake_bfa.read("symbols")
    out = run_cli("cache", "clear", "--data-version", V_OLD)
    assert out.returncode == 0, out.stderr
    assert f"removed {V_OLD}" in out.stdout
    assert cached_versions(cache_dir) == [V_NEW]
    assert (cache_dir / "CACHEDIR.TAG").is_file()
    assert read_ref(CacheLayout(get_settings()))["version"] == V_NEW  # points elsewhere: kept
    assert not list(cache_dir.glob(".removing-*"))
    published.clear_requests()
    assert len(intake_bfa.read("symbols", V_OLD)) > 0
    assert published.requests


def test_clearing_the_latest_version_drops_the_ref(published):
    intake_bfa.read("symbols")
    result = clear(get_settings(), version=f"data-{V_NEW}")  # the tag name works too
    assert result.removed == [V_NEW] and result.latest_ref_removed and result.bytes_freed > 0
    assert read_ref(CacheLayout(get_settings())) is None


def test_clear_all_keeps_only_the_cachedir_tag(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    intake_bfa.read("symbols")
    out = run_cli("cache", "clear", "--all")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in cache_dir.iterdir()) == ["CACHEDIR.TAG"]
    repo = cache_status(get_settings()).repos[0]
    assert (repo.versions, repo.hits, repo.misses, repo.latest) == ([], 0, 0, None)
    published.clear_requests()
    intake_bfa.read("symbols", V_OLD)
    assert published.requests


def test_clear_says_what_is_cached_when_asked_for_something_else(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    line = one_error_line(run_cli("cache", "clear", "--data-version", "2020-01-01"))
    assert "2020-01-01 is not cached" in line and V_OLD in line
    line = one_error_line(run_cli("cache", "clear"))  # destructive: never a default
    assert "--data-version V" in line and "--all" in line and V_OLD in line
    with pytest.raises(VersionNotFoundError):
        clear(get_settings(), version="../..")
    with pytest.raises(ConfigError):
        clear(get_settings(), version=V_OLD, all=True)
    assert cached_versions(cache_dir) == [V_OLD]


def test_clear_temp_removes_only_stale_leftovers(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    folder = repo_dir(cache_dir) / V_OLD
    stale = [folder / ".manifest.json.ab.tmp", folder / "a.parquet.part"]
    # A download still writing its .part keeps its old resume metadata alive too.
    fresh = [folder / "b.parquet.part", folder / "b.parquet.part.json"]
    for path in stale + fresh:
        path.write_bytes(b"12345")
    long_ago = time.time() - 2 * TEMP_MIN_AGE
    for path in [*stale, fresh[1]]:
        os.utime(path, (long_ago, long_ago))
    result = clear(get_settings(), temporary=True)
    prefix = f"v1/{SAMPLE_REPO}/{V_OLD}/"
    assert result.removed == [prefix + p.name for p in stale]
    assert result.kept == [prefix + p.name for p in fresh]
    assert result.bytes_freed == 10
    assert not any(p.exists() for p in stale) and all(p.exists() for p in fresh)
    assert (folder / "symbols.parquet").exists()


def test_refresh_sees_a_new_release_within_the_ttl(published, samples):
    assert resolve_version("latest") == V_NEW
    publish_dated(published, SAMPLE_REPO, samples.dated(V_NEWER))
    assert resolve_version("latest") == V_NEW  # the cached ref is young: no request
    out = run_cli("cache", "refresh")
    assert out.returncode == 0, out.stderr
    assert f"latest: {V_NEWER} (was {V_NEW})" in out.stdout
    published.clear_requests()
    assert resolve_version("latest") == V_NEWER
    assert published.requests == []
    assert refresh(get_settings()) == RefreshResult(V_NEWER, V_NEWER, changed=False)


def test_refresh_fails_loudly_without_the_server(published, monkeypatch):
    resolve_version("latest")
    with pytest.raises(ConfigError, match="offline"):
        refresh(get_settings(offline=True))
    monkeypatch.setenv("BFA_API_URL", "http://127.0.0.1:9")  # closed port
    with pytest.raises(DownloadError, match="could not refresh"):
        refresh(get_settings())
    assert read_ref(CacheLayout(get_settings()))["version"] == V_NEW


def test_verify_removes_a_corrupt_file_and_the_next_read_repairs_it(published, samples, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    intake_bfa.read("symbols")
    clean = run_cli("cache", "verify")
    assert clean.returncode == 0, clean.stderr
    assert "0 corrupt" in clean.stdout

    path = repo_dir(cache_dir) / V_OLD / "symbols.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = run_cli("cache", "verify")
    line = one_error_line(out)
    assert "1 corrupt file(s) found and removed" in line
    assert f"{SAMPLE_REPO}/{V_OLD}/symbols.parquet" in out.stdout and "CORRUPT" in out.stdout
    assert not path.exists() and not sidecar_path(path).exists()
    assert (repo_dir(cache_dir) / V_NEW / "symbols.parquet").exists()

    published.clear_requests()
    assert len(intake_bfa.read("symbols", V_OLD)) > 0
    assert published.requests
    assert path.read_bytes() == (samples.dated(V_OLD) / "symbols.parquet").read_bytes()


def test_verify_uses_sidecars_and_reports_files_it_cannot_check(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    folder = repo_dir(cache_dir) / V_OLD
    derived = folder / "derived.parquet"  # stands for a decompressed or derived file
    derived.write_bytes(b"derived bytes")
    write_sidecar(derived, hashlib.sha256(b"derived bytes").hexdigest(), 13)
    (folder / "notes.bin").write_bytes(b"?")  # no sidecar, not a release asset
    prefix = f"{SAMPLE_REPO}/{V_OLD}/"

    report = verify(get_settings())
    assert sorted(report.ok) == [
        prefix + n for n in ("derived.parquet", "manifest.json", "symbols.parquet")
    ]
    assert report.unverified == [prefix + "notes.bin"] and report.corrupt == []
    assert report.bytes_hashed > 0

    derived.write_bytes(b"derived bytez")  # same size, other bytes
    (folder / "symbols.parquet").write_bytes(b"short")
    report = verify(get_settings())
    assert sorted(report.corrupt) == [prefix + "derived.parquet", prefix + "symbols.parquet"]
    assert "sidecar" in report.details[prefix + "derived.parquet"]
    assert not derived.exists() and not sidecar_path(derived).exists()
    assert (folder / "notes.bin").exists()


def test_verify_removes_a_corrupt_manifest(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    manifest = repo_dir(cache_dir) / V_OLD / "manifest.json"
    manifest.write_text("{not json")
    report = verify(get_settings())
    assert report.corrupt == [f"{SAMPLE_REPO}/{V_OLD}/manifest.json"]
    assert not manifest.exists()
    published.clear_requests()
    assert len(intake_bfa.read("symbols", V_OLD)) > 0  # the manifest is fetched again
    assert manifest.exists() and published.requests


def test_prune_keeps_the_newest_and_the_latest(published, samples, cache_dir):
    assert resolve_version("latest") == V_NEW
    publish_dated(published, SAMPLE_REPO, samples.dated(V_NEWER))  # newer than "latest"
    for version in (V_OLD, V_NEW, V_NEWER):
        intake_bfa.read("symbols", version)
    out = run_cli("cache", "prune", "--keep", "1")
    assert out.returncode == 0, out.stderr
    assert f"removed {V_OLD}" in out.stdout
    assert cached_versions(cache_dir) == [V_NEW, V_NEWER]
    assert read_ref(CacheLayout(get_settings()))["version"] == V_NEW
    result = prune(get_settings(), keep=1)
    assert (result.removed, result.kept, result.bytes_freed) == ([], [V_NEWER, V_NEW], 0)


def test_prune_must_keep_at_least_one(published, cache_dir):
    intake_bfa.read("symbols", V_OLD)
    with pytest.raises(ConfigError, match="at least 1"):
        prune(get_settings(), keep=0)
    assert "keep=0" in one_error_line(run_cli("cache", "prune", "--keep", "0"))
    assert cached_versions(cache_dir) == [V_OLD]


def test_every_cache_action_has_an_example():
    from intake_bfa.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    cache = commands.choices["cache"]
    actions = next(a for a in cache._actions if a.dest == "cache_command")
    assert set(actions.choices) == {"status", "clear", "refresh", "verify", "prune"}
    for name, parser in actions.choices.items():
        assert "Example: bfa cache" in parser.description, name
