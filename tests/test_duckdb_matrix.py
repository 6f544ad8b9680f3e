"""DuckDB 1.5 and 2 both work: the remote path prunes and never hangs (the slow group).

``duckdb>=1.1`` lets users keep DuckDB 1.5 (the publishing project's package pins
``duckdb<2``). A venv of its own (made once, then reused) holds DuckDB 1.5.6 and our base
dependencies; the package itself comes from this checkout (``PYTHONPATH``). The same
client (``tests/matrix/duckdb_client.py``) runs there and in this venv (DuckDB 2) against
the same local release, in the same run:

* the ``symbols=`` filter prunes row groups on both: DuckDB 1.5 read the whole file for
  the old ``list_contains(?, symbol)`` filter, and reads what 2 reads for ``symbol IN (?)``;
* a stress of 200 remote queries, each on a fresh connection, finishes on both (DuckDB 1.5
  deadlocked after about 100 with several threads: the remote path runs it on one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases, publish_dated
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROOT

pytestmark = pytest.mark.slow

DUCKDB_1 = "duckdb==1.5.6"
CLIENT = ROOT / "tests" / "matrix" / "duckdb_client.py"
QUERIES = 200
VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "intake-bfa-tests"
    / DUCKDB_1.replace("==", "-")
)


def _requirements() -> list[str]:
    """Our base dependencies with DuckDB replaced by the pinned 1.5."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.replace(" ", "").startswith("duckdb")] + [DUCKDB_1]


@pytest.fixture(scope="session")
def duckdb1_python() -> Path:
    """Python of a venv with DuckDB 1.5 (made once per requirements, then reused)."""
    from filelock import FileLock

    python, ready = VENV / "bin" / "python", VENV / ".ready"
    wanted = "\n".join(_requirements())
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(VENV) + ".lock"):
        if not ready.exists() or ready.read_text() != wanted:
            import shutil

            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            out = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", *_requirements()],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if out.returncode != 0:
                pytest.fail(f"cannot install {DUCKDB_1}: {out.stderr[-2000:]}")
            ready.write_text(wanted)
    return python


def _client(python: Path, server, tmp_path: Path, name: str) -> dict:
    env = {
        **os.environ,
        "BFA_API_URL": server.api_url,
        "BFA_REPO": SAMPLE_REPO,
        "BFA_CACHE_DIR": str(tmp_path / name),
        "PYTHONPATH": str(ROOT),
    }
    try:
        out = subprocess.run(
            [str(python), str(CLIENT), str(QUERIES)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: {QUERIES} remote queries did not finish in 300 s (a hang)")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_duckdb_1_5_and_2_prune_and_never_hang(duckdb1_python, tmp_path):
    # 200 symbols: enough row groups for pruning to show (40 fit in a few).
    folder = SampleReleases(tmp_path / "releases", n_symbols=200).dated("2021-07-01")
    with ReleaseServer() as server:
        publish_dated(server, SAMPLE_REPO, folder)
        old = _client(duckdb1_python, server, tmp_path, "duckdb1")
        new = _client(Path(sys.executable), server, tmp_path, "duckdb2")
    print(json.dumps({"duckdb1": old, "duckdb2": new}, indent=1))  # the figures (-s)
    assert old["duckdb"].startswith("1.5.") and new["duckdb"].startswith("2.")
    for result in (old, new):
        assert result["in_list"]["rows"] == result["list_contains"]["rows"] > 0
        assert result["stress"]["queries"] == QUERIES
    assert old["stress"]["rows"] == new["stress"]["rows"]
    assert old["stress"]["threads"] == 1  # DuckDB 1.x: one thread on the remote path
    # The filter we write prunes on 1.5 as on 2; the old one read the whole file on 1.5.
    assert old["in_list"]["bytes"] <= 1.1 * new["in_list"]["bytes"]
    assert old["in_list"]["bytes"] < 0.5 * old["list_contains"]["bytes"]
