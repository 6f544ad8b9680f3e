"""The first hour, for real (slow group): a fresh venv, ``pip install .``, ``bfa demo``, then
every Python snippet and ``bfa`` line of README.md and docs/quickstart.md, verbatim.

The snippets are read from the files, so the docs and this test cannot drift. Each page's
Python blocks run in order in one fresh process whose environment has nothing of ours but
the line ``bfa demo`` printed (``BFA_SOURCE``), a private HOME and ``MPLBACKEND=Agg``. The
plot blocks need the ``plot`` extra, as the quick start says: they run after that install,
and before it ``bfa plot`` fails in one line naming ``pip install 'intake-bfa[plot]'``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_docs import FENCE, NOT_RUN

pytestmark = pytest.mark.slow

PAGES = (ROOT / "README.md", ROOT / "docs" / "quickstart.md")

RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    ns = {"__name__": "__main__"}
    for label, code in json.load(open(sys.argv[1], encoding="utf-8")):
        try:
            exec(compile(code, label, "exec"), ns)
        except BaseException as err:
            traceback.print_exc()
            print("FAILED BLOCK:", label, type(err).__name__, file=sys.stderr)
            sys.exit(1)
    """
)


def _blocks(page: Path) -> list[tuple[str, str, str]]:
    """``(label, language, code)`` of each fenced block not marked ``not-run``."""
    text = page.read_text(encoding="utf-8")
    found = []
    for i, match in enumerate(FENCE.finditer(text)):
        before = text[: match.start()].rstrip().splitlines()
        if before and NOT_RUN.search(before[-1]):
            continue
        first = next((ln for ln in match.group(2).splitlines() if ln.strip()), "")
        found.append((f"{page.name} block {i} ({first[:40]})", match.group(1), match.group(2)))
    return found


def _copy_repo(dest: Path) -> Path:
    """The files a clone would hold (tracked, and new ones not ignored): no local build."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A fresh venv with ``pip install .`` from a clean copy, and a private HOME."""
    base = tmp_path_factory.mktemp("newcomer")
    repo = _copy_repo(base / "intake-bfa")
    venv = base / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "."], cwd=repo, check=True, timeout=600)
    home = base / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        # Nothing else of ours: a dead API would only show if a snippet left the demo.
        "BFA_API_URL": "http://127.0.0.1:9",
    }
    return {"repo": repo, "venv": venv, "env": env, "pip": pip, "work": base}


def _demo_line(newcomer) -> str:
    out = subprocess.run(
        ["bfa", "demo", "-q"],
        env=newcomer["env"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=newcomer["work"],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("SYNTHETIC") == 1
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("export BFA_SOURCE="), line
    return line


def _with_line(newcomer, line: str) -> dict[str, str]:
    # Apply the printed line exactly as a shell would (it may quote the folder).
    name, _, value = line.removeprefix("export ").partition("=")
    return {**newcomer["env"], name: shlex.split(value)[0]}


def _run_python(page: Path, env: dict[str, str], work: Path, only=None):
    todo = [(label, code) for label, lang, code in _blocks(page) if lang == "python"]
    if only is not None:
        todo = [t for t in todo if only(t[1])]
    assert todo, f"{page.name} has no Python snippet"
    (work / "blocks.json").write_text(json.dumps(todo), encoding="utf-8")
    (work / "runner.py").write_text(RUNNER, encoding="utf-8")
    return subprocess.run(
        ["python", str(work / "runner.py"), str(work / "blocks.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
    )


def test_a_missing_extra_names_its_install(newcomer, tmp_path):
    # Runs first (file order): the venv has only `pip install .` here.
    env = _with_line(newcomer, _demo_line(newcomer))
    code = "import intake_bfa\nintake_bfa.open_catalog().symbols.to_polars()\n"
    out = subprocess.run(
        ["python", "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1
    assert "MissingDependencyError" in out.stderr
    assert "pip install 'intake-bfa[polars]'" in out.stderr
    cli = subprocess.run(
        ["bfa", "plot", "available", "--output", str(tmp_path / "a.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'intake-bfa[plot]'" in lines[0], cli.stderr


def _needs_plot(code: str) -> bool:
    return "matplotlib" in code


def test_every_readme_and_quickstart_snippet_runs_on_the_demo(newcomer, tmp_path):
    env = _with_line(newcomer, _demo_line(newcomer))
    for page in PAGES:
        work = tmp_path / page.stem
        work.mkdir()
        # After `pip install .`: every block but the plots (the quick start installs the
        # plot extra for those, below).
        out = _run_python(page, env, work, only=lambda code: not _needs_plot(code))
        assert out.returncode == 0, f"{page.name}:\n{out.stderr[-6000:]}"
        for label, lang, code in _blocks(page):
            if lang != "bash":
                continue
            for line in code.splitlines():
                if not line.strip().startswith("bfa "):
                    continue
                proc = subprocess.run(
                    shlex.split(line, comments=True),
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    cwd=work,
                )
                assert proc.returncode == 0, f"{label}: {line}\n{proc.stderr[-3000:]}"
    # The quick start's own install line for plots, then every block of every page runs.
    subprocess.run([*newcomer["pip"], ".[plot]"], cwd=newcomer["repo"], check=True, timeout=600)
    for page in PAGES:
        work = tmp_path / f"{page.stem}-with-plot"
        work.mkdir()
        out = _run_python(page, env, work)
        assert out.returncode == 0, f"{page.name}:\n{out.stderr[-6000:]}"
