"""Remote queries: DuckDB over a release's Parquet by HTTP range requests (intake_bfa.remote.relation).

Everything runs against the local release server over real sockets, with a sample large
enough (300 symbols, 4.3 MB of Parquet) that "reads few bytes" means something.
"""

from __future__ import annotations

import logging
import re
import shutil

import duckdb
import pandas as pd
import pytest

import intake_bfa
from intake_bfa import datasets
from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import get_settings
from intake_bfa.errors import IntegrityError, NotCachedError, QueryError
from intake_bfa.remote import RemoteFileSystem, filesystem_of, remote_connection
from intake_bfa.remote import relation as remote
from intake_bfa.resolve import get_manifest
from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases, publish_dated
from intake_bfa.testing.server import ReleaseServer

from .conftest import V_NEW, run_benchmark

ASSET = "daily_availability.parquet"
TIMELINE = {"symbols": "BTCUSDT"}
SNAPSHOT = {"start": "2021-05-17", "end": "2021-05-17"}


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> SampleReleases:
    return SampleReleases(tmp_path_factory.mktemp("remote-releases"), n_symbols=300)


@pytest.fixture
def served(server, big, monkeypatch):
    big.publish(server, SAMPLE_REPO, versions=[V_NEW])
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    server.clear_requests()
    return server


def _size(big: SampleReleases) -> int:
    return (big.dated(V_NEW) / ASSET).stat().st_size


def _objects_path(name: str = ASSET) -> str:
    """Regex for the object-store path of an asset (its id comes from the manifest)."""
    info = get_manifest(get_settings(), V_NEW).raw["release"]["assets"][name]
    return rf"/assets/{info['api_url'].rsplit('/', 1)[1]}\?"


def _frame(rel) -> pd.DataFrame:
    df = rel.df()
    return df.sort_values(list(df.columns[:2])).reset_index(drop=True)


def _local(**query) -> pd.DataFrame:
    """The same question answered from the downloaded, verified file."""
    return _frame(intake_bfa.to_duckdb("daily_availability", V_NEW, **query))


def _remote(con=None, fs=None, engine="fsspec", **kwargs):
    """A remote relation and its filesystem (our fsspec route, even where httpfs exists)."""
    con = con if con is not None else duckdb.connect()
    rel = remote.remote_relation(
        "daily_availability", V_NEW, con=con, filesystem=fs, engine=engine, **kwargs
    )
    return rel, filesystem_of(con)


@pytest.mark.parametrize(
    ("query", "limit"),
    [(TIMELINE, 0.20), (SNAPSHOT, 0.70), ({**TIMELINE, "columns": ["date", "available"]}, 0.05)],
    ids=["timeline", "snapshot", "timeline-2-columns"],
)
def test_remote_results_equal_local_and_read_few_bytes(served, big, query, limit):
    con = duckdb.connect()
    con.execute("SET threads = 4")  # several DuckDB threads share one file object
    rel, fs = _remote(con, **query)
    got = _frame(rel)
    assert fs.bytes_transferred < limit * _size(big)
    assert fs.range_reads >= 1 and fs.retries == 0
    assert served.count("web", ASSET) == 1  # the signed redirect target was reused
    want = _local(**query)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, want)


def test_whole_table_count_and_views(served, big):
    con = remote_connection(V_NEW, engine="fsspec")
    fs = filesystem_of(con)
    listed = con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    views = {name for (name,) in listed}
    assert views == {"daily_availability", "volume_rankings", "symbols", "availability_events"}
    manifest = get_manifest(get_settings(), V_NEW)
    for name in views:
        (count,) = con.sql(f"SELECT count(*) FROM {name}").fetchall()[0]
        assert count == manifest.datasets[name].rows
    # Counting needs only footers, which the setup already fetched (their last 64 KiB).
    assert fs.bytes_transferred < 0.1 * _size(big)
    sql = "SELECT symbol, count(*) FROM daily_availability WHERE date >= ? GROUP BY 1 ORDER BY 1"
    got = con.execute(sql, ["2021-06-01"]).fetchall()
    local = duckdb.connect()
    local.execute(f"CREATE VIEW daily_availability AS SELECT * FROM '{big.dated(V_NEW) / ASSET}'")
    assert got == local.execute(sql, ["2021-06-01"]).fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("INSERT INTO daily_availability SELECT * FROM daily_availability LIMIT 1")


def test_catalog_passes_remote_through(served):
    cat = intake_bfa.open_catalog()
    rel = cat.daily_availability.to_duckdb(version=V_NEW, remote=True, symbols="BTCUSDT")
    assert len(rel.fetchall()) == 548
    layout = CacheLayout(get_settings())
    assert not layout.file_path(V_NEW, ASSET).exists()  # nothing was downloaded


def test_token_goes_only_to_the_api_origin(big, monkeypatch):
    with ReleaseServer(token="s3cret-token") as srv:
        big.publish(srv, SAMPLE_REPO, versions=[V_NEW])
        monkeypatch.setenv("BFA_API_URL", srv.api_url)
        monkeypatch.setenv("GITHUB_TOKEN", "s3cret-token")
        # A private repository: the browser URL answers 404, the API asset URL works.
        srv.inject("web", ASSET, "status", status=404, times=100)
        rel, _ = _remote(**TIMELINE)
        assert len(rel.fetchall()) == 548
        asset_reads = [r for r in srv.requests if "/releases/assets/" in r.path]
        assert asset_reads and all(
            r.headers.get("Authorization") == "Bearer s3cret-token"
            and r.headers.get("Accept") == "application/octet-stream"
            for r in asset_reads
        )
        for r in srv.requests:
            if r.origin in ("web", "objects"):
                assert "Authorization" not in r.headers
                assert "s3cret-token" not in str(r.headers) + r.path


def test_retries_503_and_reset_mid_range(served):
    remote.remote_url("daily_availability", V_NEW)  # caches the manifest
    objects = _objects_path()
    served.inject("objects", objects, "status", status=503, times=2)
    served.inject("objects", objects, "reset", after_bytes=1000)
    rel, fs = _remote(**TIMELINE)
    got = _frame(rel)
    assert fs.retries == 3
    statuses = [r.status for r in served.requests if re.search(objects, r.path)]
    assert statuses[:3] == [503, 503, 206]  # the reset came after the 206 status line
    pd.testing.assert_frame_equal(got, _local(**TIMELINE))


@pytest.mark.parametrize(
    "cache_redirects", [True, False], ids=["reuse-signed-url", "always-original"]
)
def test_expired_signed_url_is_recovered(served, cache_redirects):
    fs = RemoteFileSystem(cache_redirects=cache_redirects)
    rel, _ = _remote(fs=fs, **TIMELINE)  # setup: resolves and fetches the footer
    web_before, reads_before = served.count("web", ASSET), fs.range_reads
    served.inject("objects", _objects_path(), "expired")
    assert len(rel.fetchall()) == 548
    statuses = [r.status for r in served.requests if r.origin == "objects"]
    assert 403 in statuses and statuses[-1] == 206
    renewed, reads = served.count("web", ASSET) - web_before, fs.range_reads - reads_before
    if cache_redirects:
        # Renewed after the 403 (by each DuckDB thread that met the dead URL), then reused.
        assert 1 <= renewed < reads and fs.retries == 0
    else:  # every read, and the retry after the 403, went through the original URL
        assert renewed == reads + 1 and fs.retries == 1


def test_server_ignoring_range_still_gives_correct_results(served, big, caplog):
    served.inject("objects", _objects_path(), "ignore_range", times=1000)
    with caplog.at_level(logging.WARNING, logger="intake_bfa.remote.relation"):
        rel, fs = _remote(**TIMELINE)
        got = _frame(rel)
    assert "ignores Range" in caplog.text
    assert {r.status for r in served.requests if r.origin == "objects"} == {200}
    assert fs.bytes_transferred > _size(big)  # correct, but costly: hence the warning
    pd.testing.assert_frame_equal(got, _local(**TIMELINE))


@pytest.mark.parametrize("damage", ["longer", "last-byte"])
def test_wrong_remote_file_raises_integrity_error(server, big, tmp_path, monkeypatch, damage):
    release = tmp_path / "release"
    shutil.copytree(big.dated(V_NEW), release)
    with open(release / ASSET, "r+b") as fh:
        if damage == "longer":  # the manifest keeps the published size
            fh.seek(0, 2)
            fh.write(b"\0")
        else:  # same size, no Parquet magic at the end
            fh.seek(-1, 2)
            fh.write(b"X")
    publish_dated(server, SAMPLE_REPO, release)
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    with pytest.raises(IntegrityError, match="not the published file") as err:
        _remote(**TIMELINE)
    assert ("serves" in str(err.value)) == (damage == "longer")


def test_offline_needs_the_network(served, monkeypatch):
    remote.remote_url("daily_availability", V_NEW)  # the manifest is cached
    monkeypatch.setenv("BFA_OFFLINE", "1")
    for call in (lambda: _remote(**TIMELINE), lambda: remote_connection(V_NEW)):
        with pytest.raises(NotCachedError, match="needs the network"):
            call()
    with pytest.raises(NotCachedError):
        datasets.to_duckdb("daily_availability", V_NEW, remote=True)


def test_clear_errors_and_fallbacks(served):
    with pytest.raises(QueryError, match="cannot be queried remotely"):
        datasets.to_duckdb("availability_db", V_NEW, remote=True)
    with pytest.raises(QueryError, match="no column"):
        _remote(columns=["date", "nope"])
    # httpfs cannot be installed here and is not: the fsspec route serves the query.
    con = duckdb.connect()
    assert not remote.httpfs_available(con)
    rel, fs = _remote(con, engine="auto", **TIMELINE)
    assert fs is not None and len(rel.fetchall()) == 548
    with pytest.raises(QueryError, match="another"):
        remote.attach(con, filesystem=RemoteFileSystem())


def test_filesystem_serves_other_readers(served, big):
    import pyarrow.parquet as pq

    fs = RemoteFileSystem()
    path = remote.remote_url("daily_availability", V_NEW)
    info = fs.info(path)
    assert info["size"] == _size(big) and info["type"] == "file"
    assert fs.ukey(path) == info["sha256"]
    table = pq.read_table(
        fs._strip_protocol(path), filesystem=fs, filters=[("symbol", "==", "BTCUSDT")]
    )
    assert table.num_rows == 548
    assert fs.bytes_transferred < 0.2 * _size(big)
    with pytest.raises(PermissionError):
        fs.open(path, "wb")


@pytest.mark.slow
def test_remote_benchmark_script_runs():
    stdout = run_benchmark("bench_remote.py")
    assert "| timeline |" in stdout and "readahead 64 KiB" in stdout


def test_duckdb_before_2_reads_remote_files_with_one_thread():
    """DuckDB 1.x deadlocks on Python filesystems with threads (tests/test_duckdb_matrix.py)."""
    from intake_bfa.remote import duckdb_needs_one_thread

    assert duckdb_needs_one_thread("1.5.6") and duckdb_needs_one_thread("1.1.0")
    assert not duckdb_needs_one_thread("2.0.1") and not duckdb_needs_one_thread("2.1.0-dev12")
    assert duckdb_needs_one_thread("nightly")  # unknown: the safe side
