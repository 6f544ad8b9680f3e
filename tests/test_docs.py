"""The documentation runs: every example of docs/*.md executes against the sample release.

* Every fenced ```python block of a page runs, in order, in one namespace, in a fresh
  subprocess (fresh cache dir, the ``published`` local release server); a block that
  raises fails the test, naming the page and the block.
* Every line starting with ``bfa `` of a ```bash block runs through the real CLI and
  must exit 0.
* A block preceded by ``<!-- not-run: REASON -->`` is skipped (and listed in
  :data:`NOT_RUN_EXPECTED`, so a new skip is a deliberate change).
* ``docs/cli.md`` must equal ``python -m intake_bfa.cli.docs``.

``docs/recipes.md`` is written for the real data (version ``2026-11-20``); it runs with
that version and its example dates mapped onto the sample (:data:`RECIPES_MAP`); its Spark
block (needs pyspark and Java) and its curl block are skipped (:data:`RECIPES_SKIP`).
``docs/benchmarks.md`` is not run (measurements, not examples).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from .conftest import ROOT, V_OLD, run_cli

DOCS = ROOT / "docs"
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name not in ("benchmarks.md",))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->\s*$")

#: Blocks marked not-run in the pages: (page, first line of the block) -> reason prefix.
NOT_RUN_EXPECTED = {
    ("producer.md", "bfa collect --state state --base latest --volume"): "needs Binance",
    ("producer.md", "bfa build --state state --out release --previous latest"): "needs a",
    ("producer.md", "bfa publish release --keep-daily 30 --rolling"): "needs a GITHUB_TOKEN",
    ("versions-and-cache.md", "export GITHUB_TOKEN=ghp_..."): "needs a GITHUB_TOKEN",
    ("mirror.md", "bfa build --state state --out release --previous latest"): "needs an S3",
    ("mirror.md", "export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=..."): "needs an S3",
    (
        "mirror.md",
        "bfa mirror sync --data-version latest --bucket s3://my-bucket/bfa --public-url "
        "https://cdn.example.com/bfa",
    ): "needs an S3",
    (
        "serving.md",
        "bfa serve --port 8000                            # latest, resolved and fetched now, "
        "then pinned",
    ): "starts a long-running server",
    ("serving.md", "docker build -t intake-bfa ."): "needs a Docker engine",
    (
        "monitoring.md",
        "bfa stats --history stats/downloads.csv --append --plot stats/downloads.png",
    ): "writes stats/downloads.csv",
}
#: recipes.md cannot carry markers (it is maintained separately): blocks skipped there.
RECIPES_SKIP = {
    "from pyspark.sql import SparkSession": "needs pyspark and Java",
    # Worker processes take seconds to start: run by tests/test_clients.py (slow group).
    "from dask.distributed import": "a LocalCluster (slow group: tests/test_clients.py)",
    "curl -sLO https://github.com": "needs the internet (github.com)",
}
#: recipes.md names the real data's version and dates; the sample has others.
RECIPES_MAP = {"2026-11-20": V_OLD, "2023-05-17": "2021-03-04"}
#: Pages that run on the demo releases `bfa demo` writes (BFA_SOURCE), exactly as a reader
#: runs them after the demo: their versions and dates are the demo's.
DEMO_PAGES = ("quickstart.md",)
#: recipes.md's offline fsspec example assumes ``symbols`` was read before: do that first.
PRELUDE = {"recipes.md": "import intake_bfa\nintake_bfa.local_path('symbols')\n"}


@dataclass
class Block:
    page: str
    index: int
    lang: str
    code: str
    skip: str | None

    @property
    def first_line(self) -> str:
        return next((line for line in self.code.splitlines() if line.strip()), "")


def blocks(page: str) -> list[Block]:
    """The fenced blocks of one page, with their not-run reason (if any)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    if page == "recipes.md":
        for old, new in RECIPES_MAP.items():
            text = text.replace(old, new)
    found = []
    for i, m in enumerate(FENCE.finditer(text)):
        before = text[: m.start()].rstrip().splitlines()
        marker = NOT_RUN.search(before[-1]) if before else None
        block = Block(page, i, m.group(1), m.group(2), marker.group(1) if marker else None)
        if page == "recipes.md":
            for start, reason in RECIPES_SKIP.items():
                if block.first_line.startswith(start):
                    block.skip = reason
        found.append(block)
    return found


RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    ns = {"__name__": "__docs__"}
    for label, code in blocks:
        try:
            exec(compile(code, label, "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print("FAILED BLOCK:", label, file=sys.stderr)
            sys.exit(1)
    """
)


def _bfa_lines(block: Block) -> list[str]:
    return [line.strip() for line in block.code.splitlines() if line.strip().startswith("bfa ")]


def _pages_with(kind: str) -> list[str]:
    # Only pages that have runnable blocks of this kind: no empty (skipped) cases.
    if kind == "python":
        return [p for p in PAGES if any(b.lang == "python" and not b.skip for b in blocks(p))]
    return [
        p
        for p in PAGES
        if any(b.lang == "bash" and not b.skip and _bfa_lines(b) for b in blocks(p))
    ]


def _page_env(page: str, demo_data_home) -> dict[str, str]:
    if page in DEMO_PAGES:
        return {"BFA_SOURCE": str(demo_data_home / "intake-bfa" / "demo")}
    return {}


@pytest.mark.parametrize("page", _pages_with("python"))
def test_python_blocks_run(page, published, tmp_path, demo_data_home):
    import json

    todo = [
        (f"docs/{b.page} block {b.index} ({b.first_line[:40]})", b.code)
        for b in blocks(page)
        if b.lang == "python" and not b.skip
    ]
    if page in PRELUDE:
        todo.insert(0, (f"docs/{page} prelude", PRELUDE[page]))
    (tmp_path / "blocks.json").write_text(json.dumps(todo), encoding="utf-8")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=120,
        env={**__import__("os").environ, "MPLBACKEND": "Agg", **_page_env(page, demo_data_home)},
    )
    assert proc.returncode == 0, f"{page}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.mark.parametrize("page", _pages_with("bash"))
def test_bash_blocks_run(page, published, demo_data_home):
    commands = [
        line for b in blocks(page) if b.lang == "bash" and not b.skip for line in _bfa_lines(b)
    ]
    for line in commands:
        args = shlex.split(line, comments=True)[1:]
        proc = run_cli(*args, env={"MPLBACKEND": "Agg", **_page_env(page, demo_data_home)})
        assert proc.returncode == 0, f"{page}: {line}\n{proc.stdout[-2000:]}\n{proc.stderr}"


def test_not_run_markers_are_the_listed_ones():
    marked = {
        (b.page, b.first_line.strip()): b.skip
        for page in PAGES
        if page != "recipes.md"
        for b in blocks(page)
        if b.skip
    }
    assert set(marked) == set(NOT_RUN_EXPECTED), marked
    for key, reason in marked.items():
        assert reason.startswith(NOT_RUN_EXPECTED[key]), (key, reason)


def test_every_page_has_runnable_examples():
    for page in ("quickstart.md", "datasets.md", "versions-and-cache.md"):
        runnable = [b for b in blocks(page) if b.lang == "python" and not b.skip]
        assert runnable, page


def test_cli_reference_is_generated():
    generated = subprocess.run(
        [sys.executable, "-m", "intake_bfa.cli.docs"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**__import__("os").environ, "COLUMNS": "40"},
    ).stdout
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == generated, (
        "docs/cli.md is stale: python -m intake_bfa.cli.docs > docs/cli.md"
    )


def test_cli_reference_covers_every_command():
    from intake_bfa.cli import build_parser
    from intake_bfa.cli.docs import _commands

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command, _, parser in _commands(build_parser()):
        assert f"## {command}\n" in text
        for action in parser._actions:
            if isinstance(action, __import__("argparse")._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in text, (command, flag)


def test_datasets_page_documents_every_column():
    from intake_bfa.schema import DATASETS

    text = (DOCS / "datasets.md").read_text(encoding="utf-8")
    for spec in DATASETS.values():
        assert f"`{spec.name}`" in text
        for column, (_, meaning) in spec.columns.items():
            assert f"| `{column}` |" in text, (spec.name, column)
            assert meaning.replace("|", "\\|") in text, (spec.name, column)
