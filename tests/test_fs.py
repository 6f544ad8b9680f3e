"""The ``bfa://`` fsspec protocol, end to end against the local release server.

Real parts only: the release server over loopback sockets, real cache folders, real
pandas/pyarrow/Dask/simplecache, and real child processes killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from fsspec.callbacks import Callback

import intake_bfa
from intake_bfa.errors import (
    ConfigError,
    DatasetNotFoundError,
    NotCachedError,
    QueryError,
    VersionNotFoundError,
)
from intake_bfa.testing.releases import SAMPLE_REPO

from .conftest import V_NEW, V_OLD

MOVING_REPO = "moving/binance-futures-availability"


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


def bfa() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("bfa")


def simplecache(storage: Path) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("simplecache", target_protocol="bfa", cache_storage=str(storage))


def cache_hits(storage: Path) -> list[Path]:
    """Files simplecache would serve as hits (its temp files start with a dot)."""
    if not storage.exists():
        return []
    return sorted(p for p in storage.iterdir() if not p.name.startswith("."))


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def run_child(code: str, *args: str) -> subprocess.Popen:
    # The BFA_* variables the fixtures set (server URL, repo, cache dir) go with os.environ.
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_entry_point_registers_the_protocol_lightly():
    code = """
        import sys, fsspec
        assert "intake_bfa.fs" not in sys.modules
        fs = fsspec.filesystem("bfa")
        assert type(fs).__module__ == "intake_bfa.fs", type(fs)
        heavy = sorted({"pandas", "pyarrow", "duckdb", "dask"} & set(sys.modules))
        assert not heavy, heavy
        print("ok")
    """
    child = run_child(code)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() == "ok"


@pytest.mark.parametrize(
    ("url", "dataset", "version"),
    [
        ("bfa://daily_availability", "daily_availability", V_NEW),
        ("bfa://daily_availability@latest", "daily_availability", V_NEW),
        (f"bfa://daily_availability@{V_OLD}", "daily_availability", V_OLD),
        (f"bfa://symbols@data-{V_OLD}", "symbols", V_OLD),
        (f"bfa://{SAMPLE_REPO}/volume_rankings", "volume_rankings", V_NEW),
        (f"bfa://{SAMPLE_REPO}/volume_rankings@{V_OLD}/", "volume_rankings", V_OLD),
    ],
)
def test_url_grammar_serves_the_package_files(published, url, dataset, version):
    fs = bfa()
    assert fs._strip_protocol(url) == f"{SAMPLE_REPO}/{dataset}@{version}"
    expected = intake_bfa.local_path(dataset, version)
    assert fs.cat_file(url) == expected.read_bytes()
    info = fs.info(url)
    assert (info["type"], info["size"], info["version"]) == (
        "file",
        expected.stat().st_size,
        version,
    )
    assert fsspec.open_local(url) == str(expected)  # the verified cache file itself


def test_ls_lists_datasets_at_root_and_under_owner_repo(published):
    fs = bfa()
    tables = sorted(n for n, spec in intake_bfa.DATASETS.items() if spec.kind == "table")
    names = [f"{d}@{V_NEW}" for d in tables]
    # Children of the listed directory (fsspec's convention), each a valid path itself;
    # the Parquet tables only (the database is opened by name).
    assert sorted(fs.ls("bfa://", detail=False)) == names
    assert sorted(fs.ls(f"bfa://{SAMPLE_REPO}", detail=False)) == [
        f"{SAMPLE_REPO}/{n}" for n in names
    ]
    assert fs.isdir(f"bfa://{SAMPLE_REPO}") and fs.isfile("bfa://symbols")
    assert fs.isfile("bfa://availability_db") and fs.exists(f"bfa://availability_db@{V_OLD}")
    assert fs.ls(f"bfa://symbols@{V_OLD}", detail=False) == [f"{SAMPLE_REPO}/symbols@{V_OLD}"]


def test_storage_options_override_the_environment(published, monkeypatch, tmp_path):
    monkeypatch.setenv("BFA_REPO", "nobody/nothing")
    options = {"repo": SAMPLE_REPO, "cache_dir": str(tmp_path / "opts")}
    df = pd.read_parquet(f"bfa://symbols@{V_OLD}", storage_options=options)
    settings = intake_bfa.get_settings(**options)
    pd.testing.assert_frame_equal(df, intake_bfa.read("symbols", V_OLD, settings=settings))
    assert (tmp_path / "opts" / "v1" / SAMPLE_REPO / V_OLD / "symbols.parquet").is_file()
    assert not fsspec.filesystem("bfa", **options, offline=True).exists("bfa://nothing")
    with pytest.raises(NotCachedError, match="BFA_OFFLINE"):
        fsspec.filesystem("bfa", **options, offline=True).cat_file(f"bfa://volume_rankings@{V_OLD}")
    with pytest.raises(ConfigError, match="rep"):
        fsspec.filesystem("bfa", rep=SAMPLE_REPO)
    with pytest.raises(ConfigError, match="ttl"):
        fsspec.filesystem("bfa", ttl="soon")


def test_pandas_pyarrow_and_dask_read_bfa_urls(published):
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    url = f"bfa://daily_availability@{V_OLD}"
    # pandas' own reader (float64 for integers with nulls, where read() keeps Int64).
    expected = intake_bfa.to_arrow("daily_availability", V_OLD).to_pandas()
    pd.testing.assert_frame_equal(pd.read_parquet(url), expected)
    pd.testing.assert_frame_equal(
        pd.read_parquet("bfa://daily_availability"),
        intake_bfa.to_arrow("daily_availability").to_pandas(),
    )
    arrow = intake_bfa.to_arrow("daily_availability", V_OLD)
    assert pq.read_table(url, filesystem=bfa()).equals(arrow)
    assert pq.read_table(f"daily_availability@{V_OLD}", filesystem=bfa()).equals(arrow)
    with fsspec.open(url) as fh:
        assert pq.read_table(fh).equals(arrow)
    got = dd.read_parquet(url).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_no_request_after_the_first_read(published, tmp_path):
    fs = bfa()
    sc_opts = {"simplecache": {"cache_storage": str(tmp_path / "sc")}}
    pd.read_parquet("simplecache::bfa://daily_availability", storage_options=sc_opts)
    fs.cat_file(f"bfa://daily_availability@{V_OLD}")
    published.clear_requests()
    urls = ["bfa://daily_availability", f"bfa://daily_availability@{V_OLD}", "bfa://symbols"]
    for url in urls:
        for call in (fs.info, fs.size, fs.exists, fs.ukey, fs.ls, fs.isfile):
            call(url)
    for url in ("bfa://", f"bfa://{SAMPLE_REPO}"):
        for call in (fs.ls, fs.info, fs.exists, fs.isdir):
            call(url)
    fs.cat_file("bfa://daily_availability")
    fs.get_file(f"bfa://daily_availability@{V_OLD}", str(tmp_path / "copy.parquet"))
    pd.read_parquet(f"bfa://daily_availability@{V_OLD}")
    pd.read_parquet("simplecache::bfa://daily_availability", storage_options=sc_opts)
    assert published.requests == []


def test_bfa_is_read_only(published, tmp_path):
    fs = bfa()
    url = f"bfa://symbols@{V_OLD}"
    (tmp_path / "x").write_bytes(b"x")
    attempts = [
        lambda: fs.open(url, "wb"),
        lambda: fs.open(url, "w"),
        lambda: fs.open(url, "ab"),
        lambda: fs.pipe(url, b"x"),
        lambda: fs.put(str(tmp_path / "x"), url),
        lambda: fs.rm(url),
        lambda: fs.mv(url, "bfa://symbols@2021-06-29"),
        lambda: fs.mkdir("bfa://new"),
        lambda: fs.touch(url),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError, match="read-only"):
            attempt()
    assert fs.cat_file(url) == intake_bfa.local_path("symbols", V_OLD).read_bytes()


def test_unknown_dataset_and_version_raise_typed_errors(published, tmp_path):
    sc_opts = {"simplecache": {"cache_storage": str(tmp_path / "sc")}}
    for url in ("bfa://daily_availabilty", f"bfa://{SAMPLE_REPO}/nope@{V_OLD}"):
        with pytest.raises(DatasetNotFoundError, match="Did you mean") as err:
            fsspec.open(url).open()
        assert isinstance(err.value, KeyError) and isinstance(err.value, FileNotFoundError)
        # pyarrow (under pandas) asks info() and reports any FileNotFoundError as its own.
        with pytest.raises(FileNotFoundError):
            pd.read_parquet(url)
        assert not bfa().exists(url)
    for url in ("bfa://daily_availability@2020-01-01", "bfa://daily_availability@yesterday"):
        with pytest.raises(VersionNotFoundError) as err:
            bfa().open(url)
        assert isinstance(err.value, LookupError) and isinstance(err.value, FileNotFoundError)
        with pytest.raises(FileNotFoundError):
            pd.read_parquet(url)
        assert not bfa().exists(url)
        with pytest.raises(FileNotFoundError):
            pd.read_parquet("simplecache::" + url, storage_options=sc_opts)


@pytest.mark.parametrize(
    "url",
    [
        "bfa://a/b/c/daily_availability",
        "bfa://daily_availability@",
        "bfa://@2021-06-28",
        "bfa://daily_availability@2021-06-28@x",
        "bfa://owner//daily_availability",
        "bfa://bad owner!/repo/daily_availability",
    ],
)
def test_malformed_paths_raise_query_error(published, url):
    with pytest.raises(QueryError, match="not a dataset URL"):
        bfa().open(url)
    with pytest.raises(ValueError, match="OWNER/REPO/DATASET"):
        pd.read_parquet(url)
    assert not bfa().exists(url)


class _StopAfterFirstChunk(Callback):
    def call(self, *args, **kwargs):
        if self.value:
            raise KeyboardInterrupt("interrupted mid-copy")


def test_get_file_is_atomic(published, tmp_path):
    fs = bfa()
    url = f"bfa://daily_availability@{V_OLD}"
    target = tmp_path / "out" / "copy.parquet"
    fs.get_file(url, str(target))  # first get downloads
    expected = intake_bfa.local_path("daily_availability", V_OLD).read_bytes()
    assert target.read_bytes() == expected
    target.write_bytes(b"previous content")
    with pytest.raises(KeyboardInterrupt):
        fs.get_file(url, str(target), callback=_StopAfterFirstChunk())
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.parquet"]
    fs.get(url, str(tmp_path / "dir") + "/")
    assert (tmp_path / "dir" / f"daily_availability@{V_OLD}").read_bytes() == expected


def test_simplecache_keys_by_pinned_version(published, tmp_path):
    storage = tmp_path / "sc"
    sc = simplecache(storage)
    assert (
        sc._strip_protocol("bfa://daily_availability")
        == f"{SAMPLE_REPO}/daily_availability@{V_NEW}"
    )
    for url in (
        "bfa://daily_availability",
        f"bfa://daily_availability@{V_NEW}",
        f"bfa://{SAMPLE_REPO}/daily_availability",
    ):
        with fsspec.open("simplecache::" + url, simplecache={"cache_storage": str(storage)}) as fh:
            assert fh.read() == intake_bfa.local_path("daily_availability", V_NEW).read_bytes()
    with fsspec.open(
        f"simplecache::bfa://daily_availability@{V_OLD}",
        simplecache={"cache_storage": str(storage)},
    ) as fh:
        assert fh.read() == intake_bfa.local_path("daily_availability", V_OLD).read_bytes()
    assert (
        sc.cat("bfa://daily_availability")
        == intake_bfa.local_path("daily_availability", V_NEW).read_bytes()
    )
    hits = cache_hits(storage)
    assert [p.name for p in hits] == sorted(
        sc.hash_name(f"{SAMPLE_REPO}/daily_availability@{v}") for v in (V_OLD, V_NEW)
    )
    bfa_fs = bfa()
    assert bfa_fs.ukey("bfa://daily_availability") == bfa_fs.ukey(
        f"bfa://daily_availability@{V_NEW}"
    )
    assert bfa_fs.ukey("bfa://daily_availability") != bfa_fs.ukey(
        f"bfa://daily_availability@{V_OLD}"
    )


def test_simplecache_latest_follows_a_new_release(published, samples, monkeypatch, tmp_path):
    samples.publish(published, MOVING_REPO, versions=[V_OLD])
    url = f"simplecache::bfa://{MOVING_REPO}/daily_availability"
    options = {"simplecache": {"cache_storage": str(tmp_path / "sc")}}
    old = samples.dated(V_OLD) / "daily_availability.parquet"
    new = samples.dated(V_NEW) / "daily_availability.parquet"
    with fsspec.open(url, **options) as fh:
        assert sha256(fh.read()) == sha256(old)
    key_before = bfa().ukey(f"bfa://{MOVING_REPO}/daily_availability")
    samples.publish(published, MOVING_REPO, versions=[V_NEW])
    with fsspec.open(url, **options) as fh:  # "latest" is cached for BFA_TTL: by design
        assert sha256(fh.read()) == sha256(old)
    monkeypatch.setenv("BFA_TTL", "0")
    with fsspec.open(url, **options) as fh:
        assert sha256(fh.read()) == sha256(new)
    pd.testing.assert_frame_equal(
        pd.read_parquet(url, storage_options=options), pd.read_parquet(new)
    )
    assert bfa().ukey(f"bfa://{MOVING_REPO}/daily_availability") != key_before


def test_sigkill_mid_download_leaves_no_truncated_simplecache_hit(published, samples, tmp_path):
    storage = tmp_path / "sc"
    url = f"simplecache::bfa://daily_availability@{V_OLD}"
    source = samples.dated(V_OLD) / "daily_availability.parquet"
    # 64 KiB at once, then a 2 s pause before each further chunk: the child is mid-body.
    published.inject("objects", r".*", "slow", after_bytes=64 * 1024, delay=2.0)
    code = """
        import sys, fsspec
        with fsspec.open(sys.argv[1], simplecache={"cache_storage": sys.argv[2]}) as fh:
            fh.read()
        print("finished")
    """
    child = run_child(code, url, str(storage))
    try:
        wait_until(lambda: published.count("objects") or child.poll() is not None)
        assert child.poll() is None, child.communicate()
        child.kill()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert cache_hits(storage) == []
    with fsspec.open(url, simplecache={"cache_storage": str(storage)}) as fh:
        assert sha256(fh.read()) == sha256(source)
    [hit] = cache_hits(storage)
    assert sha256(hit) == sha256(source)


def test_sigkill_mid_copy_into_the_simplecache_file(published, tmp_path):
    storage = tmp_path / "sc"
    url = f"bfa://availability_db@{V_OLD}"
    source = intake_bfa.local_path("availability_db", V_OLD)
    assert source.stat().st_size > 1 << 20  # more than one copy chunk: the kill is mid-copy
    final = storage / simplecache(storage).hash_name(f"{SAMPLE_REPO}/availability_db@{V_OLD}")
    # The call simplecache makes on a miss, with a callback that SIGKILLs the process after
    # the first chunk has been written.
    code = """
        import os, signal, sys, fsspec
        from fsspec.callbacks import Callback

        class KillMidCopy(Callback):
            def call(self, *args, **kwargs):
                if self.value:
                    os.kill(os.getpid(), signal.SIGKILL)

        fsspec.filesystem("bfa").get_file(sys.argv[1], sys.argv[2], callback=KillMidCopy())
    """
    child = run_child(code, url, str(final))
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not final.exists()
    leftovers = [p for p in storage.iterdir()]
    assert leftovers and all(p.name.startswith(".") for p in leftovers)
    assert all(0 < p.stat().st_size < source.stat().st_size for p in leftovers)
    with fsspec.open("simplecache::" + url, simplecache={"cache_storage": str(storage)}) as fh:
        assert sha256(fh.read()) == sha256(source)
    assert sha256(final) == sha256(source)
