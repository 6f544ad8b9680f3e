"""The producer end to end with the real CLI: collect (moto S3) -> build -> publish -> consumers."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa.testing.server import ReleaseServer

from .conftest import run_cli
from .test_collect import SYMBOLS, Vision, base_objects

TOKEN = "ghp_producertoken0000000000"
REPO = "bfa/producer-e2e"


@pytest.mark.slow  # collect, build, publish and read through the CLI: ~15 s
def test_collect_build_publish_then_read(moto_endpoint, tmp_path, monkeypatch):
    bucket = Vision(moto_endpoint, "vision-e2e")
    bucket.put(base_objects())
    s3 = {"BFA_S3_ENDPOINT": moto_endpoint, "BFA_S3_BUCKET": bucket.name,
          "BFA_DATA_URL": bucket.data_url}  # fmt: skip
    state, release = tmp_path / "state", tmp_path / "release"

    out = run_cli("collect", "--state", str(state), "--volume", "--json", env=s3)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["symbols_listed"] == len(SYMBOLS) and not report["symbols_failed"]

    with ReleaseServer(token=TOKEN) as server:
        server.add_repo(REPO)
        github = {"BFA_API_URL": server.api_url, "BFA_REPO": REPO, "GITHUB_TOKEN": TOKEN}
        out = run_cli("build", "--state", str(state), "--out", str(release),
                      "--data-version", "2024-03-14", env=github)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "built 2024-03-14" in out.stdout and "consistency" in out.stdout

        out = run_cli("publish", str(release), env=github)
        assert out.returncode == 0, out.stderr
        assert "data-2024-03-14 published" in out.stdout

        again = run_cli("publish", str(release), env=github)
        assert again.returncode == 0 and "unchanged" in again.stdout

        for key, value in github.items():
            monkeypatch.setenv(key, value)
        (info,) = intake_bfa.list_versions()
        assert info.version == "2024-03-14" and info.layout == "dated"
        df = intake_bfa.read("daily_availability")
        built = pq.read_table(release / "daily_availability.parquet")
        assert len(df) == built.num_rows
        assert int(df["available"].sum()) == pc.sum(built["available"]).as_py()
        assert set(df["symbol"]) == set(SYMBOLS)
        assert intake_bfa.read("symbols").set_index("symbol").loc["BTCUSDT", "contract_kind"] == (
            "perpetual"
        )
        # The release carries a catalog pinned to its version, and it reads that version.
        from intake_bfa.catalog import open_catalog
        from intake_bfa.config import get_settings
        from intake_bfa.resolve import get_manifest

        assets = get_manifest(get_settings(), "2024-03-14").raw["release"]["assets"]
        assert "catalog.yaml" in assets
        pinned = open_catalog(release / "catalog.yaml")
        assert pinned.metadata["pinned_version"] == "2024-03-14"
        assert len(pinned.symbols.read()) == len(intake_bfa.read("symbols"))


def test_build_fails_on_an_empty_state(tmp_path):
    out = run_cli("build", "--state", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert out.returncode == 1 and "run `bfa collect` first" in out.stderr


def test_publish_without_token_is_a_clear_error(tmp_path, samples):
    out = run_cli("publish", str(samples.dated("2021-06-28")))
    assert out.returncode == 1 and "GITHUB_TOKEN" in out.stderr
