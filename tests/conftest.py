"""Shared fixtures: a real local release server, sample releases built once, isolated config.

No test may reach the internet: every test starts with BFA_API_URL pointing at a
closed loopback port and a private cache dir, and only the local release
server (127.0.0.1) is ever contacted.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases, publish_rolling
from intake_bfa.testing.server import ReleaseServer

V_OLD = "2021-06-28"
V_NEW = "2021-07-01"
ROLLING_REPO = "legacy/binance-futures-availability"
ROLLING_END = dt.date(2021, 6, 30)
ROOT = Path(__file__).resolve().parent.parent
#: The upstream project's own package, the oracle of tests/test_upstream_oracle.py.
UPSTREAM_PACKAGE = "binance-futures-availability==1.5.0"
# Read now, before _isolated_env clears XDG_CACHE_HOME: the upstream venv outlives a run.
UPSTREAM_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "intake-bfa-tests"
    / UPSTREAM_PACKAGE.replace("==", "-")
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Private cache dir and a dead API URL unless a test points it at the local server."""
    for name in list(os.environ):
        if name.startswith("BFA_") or name in ("GITHUB_TOKEN", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BFA_CACHE_DIR", str(tmp_path / "cache"))
    # `bfa demo` and start_demo() write to the user data folder: a private one per test.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # Port 9 (discard) on loopback: refused at once, so a test that forgets to
    # configure the server fails fast instead of reaching GitHub.
    monkeypatch.setenv("BFA_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BFA_REPO", SAMPLE_REPO)
    # Retries are exercised for real, with a short backoff so the suite stays fast.
    monkeypatch.setenv("BFA_RETRY_BACKOFF", "0.01")


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server on 127.0.0.1 (a free port), one per test module."""
    import logging

    # moto and boto3 come with the dev extra: a missing install must fail, never skip.
    import moto.server as moto_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> SampleReleases:
    """Synthetic releases, each built at most once per test session."""
    return SampleReleases(tmp_path_factory.mktemp("releases"), n_symbols=40)


@pytest.fixture(scope="session")
def demo_data_home(tmp_path_factory) -> Path:
    """An XDG_DATA_HOME whose demo folder holds the default demo, written once per session."""
    from intake_bfa.demo import write_demo_releases

    home = tmp_path_factory.mktemp("xdg-data")
    write_demo_releases(home / "intake-bfa" / "demo")
    return home


@pytest.fixture
def server():
    """A fresh local release server (API, download and object-store origins)."""
    with ReleaseServer() as srv:
        yield srv


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def published(server, samples, monkeypatch):
    """Two dated releases of SAMPLE_REPO on the server; BFA_* point at it."""
    samples.publish(server, SAMPLE_REPO, versions=[V_OLD, V_NEW])
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    server.clear_requests()
    return server


@pytest.fixture
def rolling(server, samples, monkeypatch):
    """The public project's rolling layout on the server; BFA_REPO points at it."""
    publish_rolling(server, ROLLING_REPO, samples.rolling(ROLLING_END))
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    monkeypatch.setenv("BFA_REPO", ROLLING_REPO)
    server.clear_requests()
    return server


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """Python of a venv holding the upstream package from the index (made once, then reused).

    It cannot share ours (it pins duckdb<2 and pyarrow<24). Beside it, ``source/`` holds the
    package's sdist unpacked: the scripts its workflow runs (the rankings generator) ship only
    there. Failing to make either fails the tests that need it: they are never skipped.
    """
    from filelock import FileLock

    python = UPSTREAM_VENV / "bin" / "python"
    ready = UPSTREAM_VENV / ".ready"
    UPSTREAM_VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(UPSTREAM_VENV) + ".lock"):
        if not ready.exists() or ready.read_text() != f"{UPSTREAM_PACKAGE} + sdist":
            import shutil
            import tarfile

            shutil.rmtree(UPSTREAM_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
            pip = [str(python), "-m", "pip", "-q"]
            for args in (
                ["install", UPSTREAM_PACKAGE],
                ["download", "--no-binary", ":all:", "--no-deps", "-d", str(UPSTREAM_VENV / "dl"),
                 UPSTREAM_PACKAGE],
            ):  # fmt: skip
                out = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    pytest.fail(f"pip {args[0]} {UPSTREAM_PACKAGE} failed: {out.stderr[-2000:]}")
            (sdist,) = (UPSTREAM_VENV / "dl").glob("*.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(UPSTREAM_VENV / "dl", filter="data")
            (unpacked,) = (p for p in (UPSTREAM_VENV / "dl").iterdir() if p.is_dir())
            unpacked.rename(UPSTREAM_VENV / "source")
            ready.write_text(f"{UPSTREAM_PACKAGE} + sdist")
    return python


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``bfa`` in this process (``main([...])``), as a subprocess would see it.

    ``env`` is applied for the call only; stdout and stderr (log lines included) are
    captured; the exit status is ``main``'s return value or argparse's ``SystemExit``.
    An unexpected exception becomes exit 1 with its traceback on stderr, as in a real
    process. ``timeout`` is accepted for :func:`run_cli_process` compatibility.
    """
    import contextlib
    import io
    import traceback

    from intake_bfa.cli import main

    # Text streams over bytes, like a process's: the CLI writes CSV/Parquet to stdout.buffer.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    os.environ.update(env or {})
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8", errors="replace"))
    return subprocess.CompletedProcess(["bfa", *args], code, *texts)


def run_cli_process(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run the real ``bfa`` CLI in a subprocess (console-script, signal and exit-code tests)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "intake_bfa.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


def run_benchmark(script: str) -> str:
    """Run ``benchmarks/<script> --quick`` (the slow group's smoke run); return its stdout."""
    out = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# --- bfa serve ---------------------------------------------------------------------------------

#: The GITHUB_TOKEN given to the served process: no endpoint or log may show it.
SERVE_SECRET = "ghp_serveTokenMustNeverLeak0123456789"


def base_env(**extra: str) -> dict[str, str]:
    """This environment without BFA_*/GITHUB_TOKEN, plus ``extra`` (for subprocesses)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BFA_") and k not in ("GITHUB_TOKEN", "XDG_CACHE_HOME")
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def serve_release(samples):
    """A release server with both sample versions, for one module's ``bfa serve``."""
    with ReleaseServer() as srv:
        samples.publish(srv, SAMPLE_REPO, versions=[V_OLD, V_NEW])
        yield srv


@pytest.fixture(scope="module")
def api(serve_release, tmp_path_factory):
    """The real ``bfa serve`` (subprocess, port 0) serving V_NEW (default) and V_OLD.

    Fetched at start with a GITHUB_TOKEN; limits: 1000 rows, 1 s, 2 SQL queries at once.
    """
    from intake_bfa.testing.serve_process import ServeProcess

    cache = tmp_path_factory.mktemp("serve-cache")
    env = base_env(
        BFA_API_URL=serve_release.api_url,
        BFA_REPO=SAMPLE_REPO,
        BFA_CACHE_DIR=str(cache),
        GITHUB_TOKEN=SERVE_SECRET,
    )
    args = [
        "--data-version",
        "latest",
        "--data-version",
        V_OLD,
        "--max-rows",
        "1000",
        "--timeout",
        "1",
    ]
    args += ["--max-concurrent-sql", "2"]
    with ServeProcess(args, env=env) as proc:
        proc.cache = cache
        yield proc
    assert proc.returncode == 0, "\n".join(proc.lines[-20:])
