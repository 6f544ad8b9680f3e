"""One resolution per operation: a ``bfa://`` open, ``info`` or read pins the version once.

Counted in a fresh process (nothing memoised yet) on a warm disk cache, from the package's
own debug log: ``read ref`` is one read of the cached "latest" pointer, ``parsed manifest``
one parse of a manifest file. Before the memo, one ``pd.read_parquet("bfa://...")`` read
the pointer 7 times and parsed the manifest 9 times.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from intake_bfa.datasets import local_path

from .conftest import V_NEW, V_OLD, run_benchmark

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import fsspec
    import pandas as pd

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("intake_bfa").setLevel(logging.DEBUG)

    def step(title):
        print("== " + title, file=sys.stderr, flush=True)

    step("read latest")
    pd.read_parquet("bfa://symbols")
    step("read latest again")
    pd.read_parquet("bfa://symbols")
    step("info and open pinned")
    fs = fsspec.filesystem("bfa")
    fs.info("bfa://daily_availability@{old}")
    with fs.open("bfa://daily_availability@{old}") as fh:
        assert fh.read(4) == b"PAR1"
    step("end")
    """
)


def _counts(stderr: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    section = None
    for line in stderr.splitlines():
        if line.startswith("== "):
            section = line[3:]
            counts[section] = {"read ref": 0, "parsed manifest": 0}
        elif section:
            for what in counts[section]:
                counts[section][what] += line.startswith(what)
    return counts


def test_a_bfa_operation_reads_the_pointer_and_parses_the_manifest_once(published):
    for version in (V_NEW, V_OLD):  # a warm disk cache: manifests and files are local
        local_path("daily_availability", version)
        local_path("symbols", version)
    local_path("symbols")  # writes the "latest" pointer (fresh for BFA_TTL)
    published.clear_requests()

    script = SCRIPT.format(old=V_OLD)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = _counts(out.stderr)
    assert counts["read latest"] == {"read ref": 1, "parsed manifest": 1}, out.stderr
    assert counts["read latest again"] == {"read ref": 0, "parsed manifest": 0}
    assert counts["info and open pinned"] == {"read ref": 0, "parsed manifest": 1}
    assert published.requests == []  # all of it from the cache, within BFA_TTL


def test_a_replaced_manifest_is_parsed_again(published, cache_dir):
    """The memo follows the file: an atomic replace (new inode/mtime) means a new parse."""
    import os

    from intake_bfa.cache.layout import CacheLayout, atomic_write_bytes
    from intake_bfa.config import get_settings
    from intake_bfa.resolve import pin

    first = pin(V_OLD)
    assert pin(V_OLD) is first  # memoised: the same object, no parse
    path = CacheLayout(get_settings()).manifest_path(V_OLD)
    atomic_write_bytes(path, path.read_bytes())
    os.utime(path, ns=(1, 1))  # a different identity even on a coarse-mtime filesystem
    second = pin(V_OLD)
    assert second is not first and second == first


@pytest.mark.slow
def test_bfa_url_benchmark_script_runs():
    stdout = run_benchmark("bench_bfa_url.py")
    assert "| symbols |" in stdout and "network requests during warm reads: 0" in stdout


def test_offline_hints_fit_the_situation(tmp_path, monkeypatch):
    """Nothing cached: offline on purpose says to unset it; a dead server never says to set it."""
    from intake_bfa.config import get_settings
    from intake_bfa.errors import NotCachedError
    from intake_bfa.resolve import resolve_version

    monkeypatch.setenv("BFA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BFA_API_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("BFA_RETRIES", "1")
    with pytest.raises(NotCachedError) as err:
        resolve_version("latest", settings=get_settings())
    text = str(err.value)
    assert "BFA_OFFLINE" not in text and "run again" in text, text
    with pytest.raises(NotCachedError) as err:
        resolve_version("latest", settings=get_settings(offline=True))
    text = str(err.value)
    assert "unset BFA_OFFLINE" in text and "set BFA_OFFLINE=1" not in text, text
