"""A release folder as the source (BFA_SOURCE, open_catalog(source=), --source, bfa://).

Real folders the package builds (dated and rolling layouts), read with no server: the
default API URL is a closed loopback port, so any request would fail the read. Where a
server is needed for comparison, the local release server serves the same builds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import intake_bfa
from intake_bfa.config import get_settings
from intake_bfa.errors import ConfigError, IntegrityError, ManifestError, VersionNotFoundError
from intake_bfa.resolve import list_versions, resolve_version

from .conftest import ROLLING_END, V_NEW, V_OLD, run_cli, run_cli_process


@pytest.fixture
def folder(samples, tmp_path) -> Path:
    """A folder of two dated release folders, as copied from another machine."""
    root = tmp_path / "releases on disk"
    for version in (V_OLD, V_NEW):
        shutil.copytree(samples.dated(version), root / f"data-{version}")
    return root


@pytest.fixture
def source(folder, monkeypatch) -> Path:
    monkeypatch.setenv("BFA_SOURCE", str(folder))
    return folder


def _no_leftovers(cache: Path) -> list[str]:
    return [
        p.name
        for p in cache.rglob("*")
        if p.is_file() and (p.name.startswith(".") or p.name.endswith((".tmp", ".part")))
    ]


def test_folder_of_releases_reads_like_the_release_server(source, published, monkeypatch):
    # The same builds served by the local release server: the answers must be identical.
    from_folder = intake_bfa.read("daily_availability")
    pinned = intake_bfa.read("daily_availability", V_OLD, symbols="BTCUSDT")
    assert published.requests == []  # the folder needs no server
    monkeypatch.delenv("BFA_SOURCE")
    from_server = intake_bfa.read("daily_availability")
    assert from_folder.equals(from_server)
    assert pinned.equals(intake_bfa.read("daily_availability", V_OLD, symbols="BTCUSDT"))


def test_latest_and_versions_come_from_the_folder(source):
    assert resolve_version("latest") == V_NEW
    versions = list_versions()
    assert [v.version for v in versions] == [V_NEW, V_OLD]
    assert versions[0].latest and versions[0].coverage_end == "2021-06-30"
    assert versions[0].rows and versions[0].size > 0


def test_files_are_verified_copies_in_a_cache_of_their_own(source, tmp_path):
    path = intake_bfa.local_path("symbols")
    cache = tmp_path / "cache"
    assert path.is_relative_to(cache / "v1" / "_source")
    assert path.read_bytes() == (source / f"data-{V_NEW}" / "symbols.parquet").read_bytes()
    assert path.with_name(path.name + ".sha256").is_file()
    # A GitHub repository's cache of the same version is a different folder.
    assert not (cache / "v1" / "bfa-sample").exists()


def test_one_release_folder_as_built(samples, monkeypatch):
    monkeypatch.setenv("BFA_SOURCE", str(samples.dated(V_OLD)))
    assert resolve_version("latest") == V_OLD
    assert len(intake_bfa.read("volume_rankings", V_OLD)) > 0


def test_rolling_folder(samples, monkeypatch, caplog):
    monkeypatch.setenv("BFA_SOURCE", str(samples.rolling(ROLLING_END)))
    version = resolve_version("latest")
    assert version.startswith("rolling-")
    daily = intake_bfa.read("daily_availability", columns=["date"])
    assert str(daily["date"].max()) == str(ROLLING_END)
    assert len(intake_bfa.read("volume_rankings")) > 0
    # The public layout publishes no sha256: said, not hidden.
    assert "verified its size only" in caplog.text


def test_a_corrupted_file_is_refused_and_nothing_is_cached(source, tmp_path):
    asset = source / f"data-{V_NEW}" / "daily_availability.parquet"
    data = bytearray(asset.read_bytes())
    data[len(data) // 2] ^= 0xFF
    asset.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch") as info:
        intake_bfa.read("daily_availability")
    assert str(asset) in str(info.value) and "copy it again" in str(info.value)
    settings = get_settings()
    from intake_bfa.cache.layout import CacheLayout

    assert not CacheLayout(settings).file_path(V_NEW, "daily_availability.parquet").exists()
    assert _no_leftovers(tmp_path / "cache") == []


def test_a_missing_file_names_it(source):
    (source / f"data-{V_NEW}" / "symbols.parquet").unlink()
    with pytest.raises(ManifestError, match=r"symbols\.parquet is missing"):
        intake_bfa.read("symbols")


def test_a_rebuilt_release_replaces_the_cached_copy(samples, tmp_path, monkeypatch):
    # A producer previews `bfa build` output, then rebuilds the same version with new data.
    root = tmp_path / "preview"
    shutil.copytree(samples.dated(V_OLD), root)
    monkeypatch.setenv("BFA_SOURCE", str(root))
    before = intake_bfa.read("daily_availability", V_OLD)
    import datetime as dt

    from intake_bfa.testing.releases import build_dated, sample_table

    shutil.rmtree(root)
    build_dated(sample_table(dt.date(2021, 6, 27), n_symbols=45), root, V_OLD)
    after = intake_bfa.read("daily_availability", V_OLD)
    assert after["symbol"].nunique() == 45 != before["symbol"].nunique()


def test_unknown_version_names_the_nearest(source):
    with pytest.raises(VersionNotFoundError, match=f"nearest available: {V_OLD}") as info:
        intake_bfa.read("symbols", "2021-06-29")
    assert str(source) in str(info.value)


def test_the_same_version_twice_is_refused(folder, monkeypatch):
    shutil.copytree(folder / f"data-{V_NEW}", folder / "copy")
    monkeypatch.setenv("BFA_SOURCE", str(folder))
    with pytest.raises(ManifestError, match=f"holds version {V_NEW} twice"):
        resolve_version("latest")


def test_a_damaged_release_folder_does_not_hide_the_others(folder, monkeypatch, caplog):
    (folder / f"data-{V_NEW}" / "manifest.json").write_text("{not json")
    monkeypatch.setenv("BFA_SOURCE", str(folder))
    assert resolve_version("latest") == V_OLD
    assert "skipping" in caplog.text and f"data-{V_NEW}" in caplog.text


def test_offline_does_not_block_a_local_folder(source, monkeypatch):
    monkeypatch.setenv("BFA_OFFLINE", "1")
    assert len(intake_bfa.read("symbols")) > 0


def test_source_argument_beats_the_environment(folder, samples, monkeypatch):
    monkeypatch.setenv("BFA_SOURCE", str(samples.dated(V_OLD)))
    assert get_settings(source=folder).source == folder.resolve()
    assert resolve_version("latest", settings=get_settings(source=folder)) == V_NEW


def test_open_catalog_with_source(folder):
    cat = intake_bfa.open_catalog(source=folder)
    assert len(cat.symbols.read()) > 0
    assert (
        cat.daily_availability.read(version=V_OLD, symbols="ETHUSDT")["symbol"].eq("ETHUSDT").all()
    )
    with pytest.raises(ConfigError, match="no such folder"):
        intake_bfa.open_catalog(source=folder / "nope")


def test_bfa_url_with_source_storage_option(folder):
    import fsspec
    import pandas as pd

    df = pd.read_parquet(f"bfa://symbols@{V_OLD}", storage_options={"source": str(folder)})
    assert len(df) > 0
    fs = fsspec.filesystem("bfa", source=str(folder))
    assert f"daily_availability@{V_NEW}" in fs.ls("", detail=False)
    # A slice of a file not cached yet is read from the folder, not by a range request.
    assert fs.cat_file(f"bfa://volume_rankings@{V_NEW}", start=0, end=4) == b"PAR1"


def test_remote_reads_of_a_folder_are_local(source):
    rel = intake_bfa.to_duckdb("daily_availability", remote=True)
    assert rel.aggregate("count(*)").fetchall()[0][0] > 0
    from intake_bfa.errors import QueryError
    from intake_bfa.remote.relation import remote_relation

    with pytest.raises(QueryError, match="is local"):
        remote_relation("daily_availability")


def test_cli_source_option_before_or_after_the_command(folder):
    for args in (
        ("--source", str(folder), "snapshot", "2021-03-04", "--format", "json"),
        ("snapshot", "2021-03-04", "--source", str(folder), "--format", "json"),
    ):
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
        assert "BTCUSDT" in {row["symbol"] for row in json.loads(out.stdout)}
    out = run_cli("sql", "--remote", "--source", str(folder), "SELECT count(*) AS n FROM symbols")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "missing", "no such folder"),
        (lambda tmp: tmp, "holds no release"),
    ],
)
def test_cli_bad_source_is_one_line(make, fragment, tmp_path):
    target = make(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    out = run_cli_process("versions", env={"BFA_SOURCE": str(target)})
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert os.fspath(target) in lines[0]
