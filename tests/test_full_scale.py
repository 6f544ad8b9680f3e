"""Full-scale sample (1000 symbols, 2019-12-31..2026-11-22, ~2.5 M rows): the slow group.

Run by .ci/run as `pytest -m slow`; excluded from the default run to keep it fast.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

import intake_bfa
from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases

from .conftest import run_benchmark

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 22)
VERSION = "2026-11-23"


def test_full_scale_release_round_trip(server, tmp_path, monkeypatch):
    samples = SampleReleases(tmp_path / "releases", n_symbols=1000)
    samples.publish(server, SAMPLE_REPO, versions=[VERSION])
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    cat = intake_bfa.open_catalog()
    df = cat.daily_availability.read(columns=["date", "symbol", "available"])
    days = (END - dt.date(2019, 12, 31)).days + 1
    assert len(df) == days * 1000
    assert 2_400_000 < len(df) < 2_600_000
    con = cat.availability_db.read()
    assert con.sql("SELECT count(*) FROM daily_availability").fetchall()[0][0] == len(df)
    snapshot = cat.daily_availability.read(start="2021-03-04", end="2021-03-04")
    assert len(snapshot) == 1000
    timeline = cat.daily_availability.read(symbols="BTCUSDT")
    assert len(timeline) == days and timeline["available"].all()
    live_now = cat.symbols.read(columns=["listed_now"])["listed_now"].sum()
    assert 500 < live_now < 800


def test_benchmark_script_runs(tmp_path):
    stdout = run_benchmark("bench_foundation.py")
    assert "ratio" in stdout and "heavy modules imported: []" in stdout


def test_download_benchmark_script_runs():
    stdout = run_benchmark("bench_download.py")
    assert "throughput ratio" in stdout and "network requests: 0" in stdout


def test_previous_duckdb_minor_opens_the_database_and_reads_the_parquet(tmp_path):
    """The database is written with STORAGE_VERSION so DuckDB 1.5 (previous minor) opens it."""
    import gzip
    import shutil

    from intake_bfa.producer.build import build_release
    from intake_bfa.testing.synthetic import generate_daily_availability

    release = tmp_path / "release"
    build_release(
        generate_daily_availability(n_symbols=40, end=END.replace(year=2020)), release, "x"
    )
    db = tmp_path / "availability.duckdb"
    with gzip.open(release / "availability.duckdb.gz") as src, open(db, "wb") as out:
        shutil.copyfileobj(src, out)
    venv = tmp_path / "duckdb15"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "duckdb==1.5.6"], check=True, timeout=600
    )
    probe = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "n = con.sql('SELECT count(*) FROM daily_availability').fetchall()[0][0]\n"
        "m = con.sql('SELECT count(*) FROM read_parquet(?)', params=[sys.argv[2]]).fetchall()[0][0]\n"
        "s = con.sql('SELECT sum(quote_volume_usdt) FROM read_parquet(?)', params=[sys.argv[2]])\n"
        "print(duckdb.__version__, n, m, s.fetchall()[0][0] > 0)\n"
    )
    out = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            probe,
            str(db),
            str(release / "daily_availability.parquet"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith("1.5.") and out[1] == out[2] and out[3] == "True"


def test_build_benchmark_script_runs():
    stdout = run_benchmark("bench_build.py")
    assert "tiled (chosen)" in stdout and "ratio" in stdout
