"""``bfa://`` against fsspec's conventions, with fsspec's own LocalFileSystem as the reference.

The read-only half of fsspec's abstract test-suite (``fsspec.tests.abstract``: open, cat,
``cat_file`` with ranges, info, ls, find, glob, get, mapper) needs a writable filesystem to
build its scenarios, so it is ported here the other way round: a local folder holds the
same files under the same names (``DATASET@VERSION``, the children of ``bfa://``), and every
operation must give on ``bfa://`` what fsspec's LocalFileSystem gives on that folder. The
expected answers therefore come from fsspec's code, not ours. Glob patterns follow
``fsspec.tests.abstract.common.GLOB_EDGE_CASES_TESTS`` on a flat tree (``?``, ``[...]``,
``*``, ``**``, ``maxdepth``). Writes of every kind are refused with ``PermissionError``, and
a missing dataset or version is a ``FileNotFoundError`` (ours too).
"""

from __future__ import annotations

import os
import shutil

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

import intake_bfa
from intake_bfa.errors import (
    BfaError,
    DatasetNotFoundError,
    DatasetPathNotFoundError,
    VersionNotFoundError,
)

from .conftest import V_NEW, V_OLD

PATTERNS = [
    ("*", {}),
    ("**", {}),
    ("*", {"maxdepth": 1}),
    ("**", {"maxdepth": 1}),
    ("sym*", {}),
    ("*_availability@*", {}),
    ("s?mbols@*", {}),
    ("[sv]*", {}),
    ("[!sv]*", {}),
    ("*@" + V_NEW, {}),
    ("nothing*", {}),
    (f"symbols@{V_NEW}", {}),
]


@pytest.fixture
def pair(published, tmp_path):
    """(bfa filesystem, local reference filesystem, local root): the same files, same names."""
    fs = fsspec.filesystem("bfa", skip_instance_cache=True)
    root = tmp_path / "reference"
    root.mkdir()
    for name in fs.ls("", detail=False):
        dataset = name.split("@")[0]
        shutil.copyfile(intake_bfa.local_path(dataset), root / name)
    return fs, LocalFileSystem(), root.as_posix()


def rel(names, root: str) -> list[str]:
    """Local names relative to the reference root (bfa's root children carry no prefix).

    The root itself is left out: fsspec's ``find(withdirs=True)`` and ``glob("**")`` list
    a root directory except when it is ``""``, which ``bfa://``'s root is.
    """
    return sorted(n[len(root) + 1 :] for n in names if n.startswith(root + "/"))


def test_ls_find_walk_du_match_the_reference(pair):
    fs, local, root = pair
    assert sorted(fs.ls("", detail=False)) == rel(local.ls(root, detail=False), root)
    assert sorted(fs.find("")) == rel(local.find(root), root)
    assert sorted(fs.find("", withdirs=True)) == rel(local.find(root, withdirs=True), root)
    assert sorted(fs.find("", maxdepth=1)) == rel(local.find(root, maxdepth=1), root)
    detail = fs.find("", detail=True)
    assert set(detail) == set(fs.find("")) and all(v["type"] == "file" for v in detail.values())
    ((top, dirs, files),) = list(fs.walk(""))
    ((_, ldirs, lfiles),) = list(local.walk(root))
    assert (top, sorted(dirs), sorted(files)) == ("", sorted(ldirs), sorted(lfiles))
    assert fs.du("") == local.du(root)
    for name in fs.ls("", detail=False):
        assert fs.isfile(name) and fs.exists(name) and not fs.isdir(name)
        assert fs.size(name) == local.size(f"{root}/{name}")
    assert fs.isdir("") and fs.info("")["type"] == "directory"


@pytest.mark.parametrize(("pattern", "kwargs"), PATTERNS)
def test_glob_and_expand_path_match_the_reference(pair, pattern, kwargs):
    fs, local, root = pair
    want = rel(local.glob(f"{root}/{pattern}", **kwargs), root)
    if not any(c in pattern for c in "*?["):  # a literal: fsspec returns it stripped, which
        want = [fs._strip_protocol(n) for n in want]  # on bfa:// is canonical (pinned, repo)
    assert sorted(fs.glob(f"bfa://{pattern}", **kwargs)) == want
    assert sorted(fs.glob(pattern, **kwargs)) == want
    if want:
        expanded = rel(local.expand_path(f"{root}/{pattern}"), root)
        if not any(c in pattern for c in "*?["):
            expanded = [fs._strip_protocol(n) for n in expanded]
        assert sorted(fs.expand_path(f"bfa://{pattern}")) == expanded
    detail = fs.glob(f"bfa://{pattern}", detail=True, **kwargs)
    assert sorted(detail) == want


def test_root_discovery_sees_only_the_parquet_datasets(pair):
    """pyarrow's dataset discovery and DuckDB's read_parquet('bfa://*') meet Parquet only."""
    import duckdb
    import pyarrow.dataset as ds

    fs, _, root = pair
    found = ds.dataset("", filesystem=fs, format="parquet")
    assert sorted(found.files) == sorted(fs.ls("", detail=False))
    assert not any(f.startswith("availability_db") for f in found.files)
    one = ds.dataset(f"daily_availability@{V_NEW}", filesystem=fs, format="parquet")
    assert one.count_rows() == ds.dataset(f"{root}/daily_availability@{V_NEW}").count_rows()
    con = duckdb.connect()
    con.register_filesystem(fs)
    counted = con.execute(
        "SELECT filename, count(*) FROM read_parquet('bfa://*', union_by_name=true, "
        "filename=true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [f for f, _ in counted] == [f"bfa://{n}" for n in sorted(fs.ls("", detail=False))]
    with fs.open(f"availability_db@{V_NEW}") as f:  # the database: by its name
        assert f.read(12)[8:] == b"DUCK"  # the verified, decompressed DuckDB file


def test_open_files_and_cat_with_globs(pair):
    fs, local, root = pair
    files = fsspec.open_files("bfa://*")
    assert sorted(f.path for f in files) == rel(local.glob(f"{root}/*"), root)
    for f in files:
        with f as fh:
            assert fh.read() == local.cat_file(f"{root}/{f.path}")
    cats = fs.cat("bfa://s*")
    assert {k: len(v) for k, v in cats.items()} == {
        k[len(root) + 1 :]: len(v) for k, v in local.cat(f"{root}/s*").items()
    }


@pytest.mark.parametrize(
    ("start", "end"),
    [(None, None), (0, 4), (4, None), (-8, None), (-8, -4), (None, -4), (10, 10), (0, 10**7),
     (10**12, None), (-(10**12), None)],
)  # fmt: skip
def test_cat_file_ranges_match_the_reference(pair, start, end):
    fs, local, root = pair
    for name in (f"symbols@{V_NEW}", f"daily_availability@{V_NEW}"):  # in memory and on disk
        assert fs.cat_file(name, start=start, end=end) == local.cat_file(
            f"{root}/{name}", start=start, end=end
        ), (name, start, end)


def test_cat_ranges_read_block_head_tail_match_the_reference(pair):
    fs, local, root = pair
    names = [f"symbols@{V_NEW}", f"daily_availability@{V_NEW}", f"symbols@{V_NEW}"]
    starts, ends = [-8, 0, 100], [None, 4, 130]
    assert fs.cat_ranges(names, starts, ends) == local.cat_ranges(
        [f"{root}/{n}" for n in names], starts, ends
    )
    for name in names[:2]:
        lpath = f"{root}/{name}"
        for offset, length, delimiter in ((0, 10, None), (5, 100, b"\x00"), (-0, None, None)):
            assert fs.read_block(name, offset, length, delimiter) == local.read_block(
                lpath, offset, length, delimiter
            )
        assert fs.head(name, 16) == local.head(lpath, 16)
        assert fs.tail(name, 16) == local.tail(lpath, 16)
        with fs.open(name) as f, local.open(lpath) as g:
            assert f.size == g.size == local.size(lpath)
            f.seek(-4, 2), g.seek(-4, 2)
            assert f.read() == g.read() == b"PAR1"


def test_get_follows_the_abstract_get_scenarios(pair, tmp_path):
    """fsspec.tests.abstract.get scenarios 1a-1d and the glob and list forms."""
    fs, local, root = pair
    name = f"symbols@{V_NEW}"
    want = local.cat_file(f"{root}/{name}")
    target = tmp_path / "target"
    target.mkdir()
    fs.get(name, str(target))  # 1a: into an existing directory
    fs.get(f"bfa://{name}", str(target) + "/")  # ... with a trailing slash
    assert (target / name).read_bytes() == want
    fs.get(name, str(tmp_path / "newdir") + "/")  # 1b: a new directory (trailing slash)
    assert (tmp_path / "newdir" / name).read_bytes() == want
    fs.get(name, str(target / "renamed"))  # 1c: a file in an existing directory
    assert (target / "renamed").read_bytes() == want
    fs.get(name, str(tmp_path / "deep" / "renamed"))  # 1d: a file in a new directory
    assert (tmp_path / "deep" / "renamed").read_bytes() == want
    globbed = tmp_path / "globbed"
    fs.get("bfa://*", str(globbed) + "/")
    assert sorted(os.listdir(globbed)) == sorted(fs.ls("", detail=False))
    listed = tmp_path / "listed"
    fs.get([name, f"volume_rankings@{V_NEW}"], str(listed) + "/")
    assert sorted(os.listdir(listed)) == sorted([name, f"volume_rankings@{V_NEW}"])
    whole = tmp_path / "whole"
    fs.get("bfa://", str(whole), recursive=True)
    for child in fs.ls("", detail=False):
        assert (whole / child).read_bytes() == local.cat_file(f"{root}/{child}")


def test_get_mapper_reads_like_a_local_mapper(pair):
    _, _, root = pair
    mapper, reference = fsspec.get_mapper("bfa://"), fsspec.get_mapper(root)
    assert sorted(mapper) == sorted(reference) and len(mapper) == len(reference)
    for key in reference:
        assert mapper[key] == reference[key]
        assert key in mapper
    assert "nope" not in mapper
    with pytest.raises(KeyError):
        mapper["nope"]
    assert mapper.getitems([f"symbols@{V_NEW}"]) == reference.getitems([f"symbols@{V_NEW}"])


@pytest.mark.parametrize("protocol", ["simplecache", "filecache", "blockcache"])
def test_caching_filesystems_chain(pair, tmp_path, protocol):
    _, local, root = pair
    options = {protocol: {"cache_storage": str(tmp_path / protocol)}}
    name = f"daily_availability@{V_OLD}"
    with fsspec.open(f"{protocol}::bfa://{name}", **options) as f:
        head = f.read(4)
        f.seek(-8, 2)
        tail = f.read()
    want = intake_bfa.local_path("daily_availability", V_OLD).read_bytes()
    assert head == want[:4] and tail == want[-8:]
    chained = fsspec.filesystem(protocol, target_protocol="bfa", cache_storage=str(tmp_path / "x"))
    assert chained.cat_file(name, start=8, end=16) == want[8:16]
    assert chained.cat_file(f"symbols@{V_NEW}") == local.cat_file(f"{root}/symbols@{V_NEW}")
    # (a negative start on simplecache/filecache itself fails in fsspec: they hand out plain
    # local files without ``size``; on bfa:// it works, see the ranges test.)


@pytest.mark.parametrize(
    "url", ["bfa://nope", "bfa://daily_availabilty", "bfa://symbols@2020-01-01", "bfa://x@latest"]
)
def test_a_missing_path_is_a_file_not_found_error_and_ours(pair, url):
    fs, _, _ = pair
    for call in (fs.open, fs.info, fs.cat_file, fs.ls, fs.size):
        with pytest.raises(FileNotFoundError) as err:
            call(url)
        assert isinstance(err.value, BfaError)
        assert isinstance(err.value, DatasetNotFoundError | VersionNotFoundError)
    assert not fs.exists(url) and not fs.isfile(url) and not fs.isdir(url)
    with pytest.raises(FileNotFoundError):
        fsspec.open(url).open()
    if "@2020" not in url:
        with pytest.raises(DatasetPathNotFoundError):
            fs.open(url)


def test_every_write_is_refused_with_permission_error(pair, tmp_path):
    fs, _, _ = pair
    (tmp_path / "x").write_bytes(b"x")
    for target in (f"bfa://symbols@{V_NEW}", "bfa://brand_new", "bfa://x/y/z"):
        for attempt in (
            lambda t: fs.open(t, "wb"),
            lambda t: fs.open(t, "xb"),
            lambda t: fs.open(t, "ab"),
            lambda t: fs.open(t, "r+b"),
            lambda t: fs.open(t, "w"),
            lambda t: fs.pipe(t, b"x"),
            lambda t: fs.pipe_file(t, b"x"),
            lambda t: fs.put(str(tmp_path / "x"), t),
            lambda t: fs.put_file(str(tmp_path / "x"), t),
            lambda t: fs.rm(t),
            lambda t: fs.rm_file(t),
            lambda t: fs.mkdir(t),
            lambda t: fs.makedirs(t),
            lambda t: fs.touch(t),
            lambda t: fs.mv(t, "bfa://other"),
            lambda t: fs.copy(t, "bfa://other"),
            lambda t: fsspec.open(t, "wb").open(),
        ):
            with pytest.raises(PermissionError, match="read-only"):
                attempt(target)
    mapper = fsspec.get_mapper("bfa://")
    with pytest.raises(PermissionError):
        mapper["new"] = b"x"
    with pytest.raises(KeyError):  # fsspec's mapper turns any failed delete into KeyError
        del mapper[f"symbols@{V_NEW}"]
    assert f"symbols@{V_NEW}" in mapper


def test_intake_recommend_names_our_types_without_a_download(published):
    """intake reads the first MiB of a URL to recommend types: one range request, no cache."""
    from pathlib import Path

    from intake.readers.datatypes import recommend

    from intake_bfa.config import get_settings
    from intake_bfa.readers import BfaDatabase, BfaTable

    url = f"bfa://daily_availability@{V_OLD}"
    assert fsspec.filesystem("bfa").info(url)["size"]  # pins the version (its manifest)
    published.clear_requests()
    found = recommend(url)
    assert BfaTable in found and BfaDatabase not in found
    assert BfaDatabase in recommend("bfa://availability_db", head=False)
    assert list(Path(get_settings().cache_dir).rglob("daily_availability*.parquet")) == []
    objects = [r for r in published.requests if r.origin == "objects"]
    assert objects and all("range" in {k.lower() for k in r.headers} for r in objects)
    assert all(r.status == 206 for r in objects)
