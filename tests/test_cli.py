"""The real ``bfa`` CLI in a subprocess, against the local release server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import V_NEW, V_OLD, run_cli, run_cli_process


def test_versions_table_and_json(published):
    out = run_cli("versions")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["version", "layout", "coverage"]
    assert V_NEW in lines[1] and "(latest)" in lines[1]
    assert "2019-12-31 .. 2021-06-30" in lines[1]
    assert V_OLD in lines[2]
    rows = json.loads(run_cli("versions", "--json").stdout)
    assert [r["version"] for r in rows] == [V_NEW, V_OLD]
    assert rows[0]["coverage_end"] == "2021-06-30" and rows[0]["size"] > 0


def test_fetch_prints_a_verified_local_path(published, samples):
    out = run_cli("fetch", "symbols", "--data-version", V_OLD)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.read_bytes() == (samples.dated(V_OLD) / "symbols.parquet").read_bytes()
    published.clear_requests()
    again = run_cli("fetch", "symbols", "--data-version", V_OLD, "--offline")
    assert again.returncode == 0 and again.stdout == out.stdout
    assert published.requests == []


def test_datasets_command():
    out = run_cli("datasets", "--json")
    assert [d["dataset"] for d in json.loads(out.stdout)] == [
        "daily_availability",
        "availability_db",
        "volume_rankings",
        "symbols",
        "availability_events",
    ]


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["fetch", "nope"], {}, "unknown dataset 'nope'"),
        (["fetch", "symbols", "--data-version", "1999-01-01"], {}, "nearest available"),
        (["fetch", "symbols", "--data-version", "yesterday"], {}, "not a dataset version"),
        (["versions"], {"BFA_REPO": "not-a-repo"}, "BFA_REPO='not-a-repo'"),
        (["versions"], {"BFA_REPO": "ghost/repo"}, "not found"),
        (["versions"], {"BFA_OFFLINE": "perhaps"}, "BFA_OFFLINE"),
        (["fetch", "symbols", "--offline"], {}, "no version of"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(published, args, env, fragment):
    out = run_cli(*args, env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("bfa: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in out.stderr


def test_usage_error_exits_2():
    out = run_cli("fetch")
    assert out.returncode == 2
    assert "usage:" in out.stderr
    out = run_cli("demo", "--symbols", "5")
    assert out.returncode == 2 and "outside 40..2000" in out.stderr


def test_unreachable_server_is_a_clear_error(monkeypatch):
    out = run_cli("versions")  # conftest points BFA_API_URL at a closed loopback port
    assert out.returncode == 1
    assert "could not reach http://127.0.0.1:9" in out.stderr


def test_every_command_has_an_example_in_help():
    from intake_bfa.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert "Example: bfa" in command.description, name


@pytest.mark.slow  # builds a demo: ~4 s
def test_demo_leaves_a_working_source_and_says_it_is_synthetic(tmp_path):
    folder = tmp_path / "my demo"
    out = run_cli("demo", "--symbols", "40", "--dir", str(folder), env={"BFA_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.count("SYNTHETIC") == 1, text  # said plainly, once
    assert "2021-03-04" in text and "[6] DuckDB" in text
    # The last line is the one line to set; quoted for a shell (the folder has a space).
    last = text.strip().splitlines()[-1]
    assert last == f"export BFA_SOURCE='{folder}'", last
    # With only that line set, a fresh process reads the demo (no server, no network).
    env = {"BFA_SOURCE": str(folder)}
    snap = run_cli_process("snapshot", "2021-03-04", "--format", "csv", env=env)
    assert snap.returncode == 0, snap.stderr
    assert "BTCUSDT" in snap.stdout
    versions = run_cli_process("versions", "--format", "json", env=env)
    assert [v["version"] for v in json.loads(versions.stdout)] == ["2026-11-23", "2026-11-20"]
    # A second run reuses the releases it wrote.
    again = run_cli("demo", "--symbols", "40", "--dir", str(folder))
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == last


def test_demo_default_folder_is_the_user_data_dir(demo_data_home, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(demo_data_home))
    out = run_cli("demo", "-q")
    assert out.returncode == 0, out.stderr
    folder = demo_data_home / "intake-bfa" / "demo"
    assert out.stdout.strip().splitlines()[-1] == f"export BFA_SOURCE={folder}"
    assert (folder / "data-2026-11-20" / "manifest.json").is_file()


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name), child
                yield from _subcommands(child, (*prefix, name))


def test_one_output_convention_on_every_command():
    """``--format`` on every command that prints data, ``--json`` its alias everywhere."""
    from intake_bfa.cli import build_parser

    with_json = 0
    for command, parser in _subcommands(build_parser()):
        options = {o: a for a in parser._actions for o in a.option_strings}
        if "--json" in options or "--format" in options:
            assert "--json" in options and "--format" in options, command
            assert options["--json"].dest == options["--format"].dest == "format", command
            assert "json" in options["--format"].choices, command
            assert options["--json"].const == "json" and options["--json"].nargs == 0, command
            with_json += 1
    assert with_json >= 20


def test_data_version_never_collides_with_the_programs_version(published):
    """``--data-version`` picks the dataset; ``--version`` is the program's, after a command too."""
    import intake_bfa

    for command in (["sql"], ["snapshot"], ["fetch", "symbols"], ["serve"], ["check"]):
        res = run_cli(*command, "--version")
        assert res.returncode == 0 and res.stdout.strip() == f"intake-bfa {intake_bfa.__version__}"
    new = run_cli("fetch", "symbols", "--data-version", V_OLD)
    assert new.returncode == 0 and new.stderr == "", new.stderr
    # The old spelling with a value still works, and says what to write instead.
    old = run_cli("fetch", "symbols", "--version", V_OLD)
    assert old.returncode == 0 and old.stdout == new.stdout
    assert f"write --data-version {V_OLD}" in old.stderr


@pytest.mark.slow  # builds and serves a demo: ~4 s
def test_demo_serve_serves_the_folder_like_github_until_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    folder = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "intake_bfa.cli", "demo", "--serve", "--symbols", "40",
         "--dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        exports = None
        deadline = time.monotonic() + 120
        while exports is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("export BFA_API_URL="):
                exports = dict(kv.split("=", 1) for kv in line.split()[1:])
        assert exports is not None, proc.stderr.read() if proc.poll() is not None else ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BFA_")}
        env.update(exports, BFA_CACHE_DIR=str(tmp_path / "cache"))
        out = subprocess.run(
            [sys.executable, "-m", "intake_bfa.cli", "versions", "--format", "json"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert [v["version"] for v in json.loads(out.stdout)] == ["2026-11-23", "2026-11-20"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0
