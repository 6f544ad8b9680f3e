"""docs/quickstart.ipynb, executed for real: a Jupyter kernel (nbclient), the local release
server, and (slow group) the HTML export rendered by a headless Chromium.

The kernel is this interpreter's ipykernel: JUPYTER_PATH points at ``sys.prefix``'s kernel
specs first, so a user-level "python3" kernel for another Python cannot be picked up.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intake_bfa.schema import DATASETS

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "quickstart.ipynb"
CATALOG_TABLE_MARKER = '<div class="bfa">'


def _execute(tmp_path: Path, monkeypatch, data_home: Path):
    import nbclient
    import nbformat

    # start_demo() writes to the user data folder: the session's demo, written once.
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))

    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    work = tmp_path / "nb"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()
    return nb


def _cell(nb, starts_with: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and starts_with in c.source]
    assert len(cells) == 1, f"expected one code cell containing {starts_with!r}"
    return cells[0]


def _data(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


def test_committed_notebook_has_no_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_notebook_executes(tmp_path, monkeypatch, demo_data_home):
    _check_outputs(_execute(tmp_path, monkeypatch, demo_data_home))


def _check_outputs(nb) -> None:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors, errors

    note = "".join(o.get("text", "") for o in _cell(nb, "start_demo(").outputs)
    assert "SYNTHETIC" in note

    catalog = _data(_cell(nb, "open_catalog("), "text/html")
    assert catalog, "the catalog cell has no text/html output"
    assert CATALOG_TABLE_MARKER in catalog[0] and "<table>" in catalog[0]
    for name in DATASETS:
        assert f"<b>{name}</b>" in catalog[0], name
    # Resolved on a fresh demo, before any read: version and coverage, as the text promises.
    assert "not resolved" not in catalog[0]
    assert "2026-11-23" in catalog[0] and "2019-12-31" in catalog[0]

    versions = _data(_cell(nb, "list_versions()"), "text/html")
    assert versions and "<table>" in versions[0] and "latest" in versions[0]

    frame = _data(_cell(nb, "daily_availability.read()"), "text/html")
    assert frame and "<table" in frame[0] and "symbol" in frame[0]

    snap = _data(_cell(nb, "snap = q.snapshot("), "text/html")
    assert snap and "<table" in snap[0]

    # Point in time: the publication-lag snapshot and the upload-delay summary.
    then = _cell(nb, "Query(lag=")
    said = "".join(o.get("text", "") for o in then.outputs)
    assert "symbols known by 08:40 UTC on 2024-03-05" in said, said
    summary = _data(then, "text/html")
    assert summary and "p95_by" in summary[0] and "D+1 08:" in summary[0]

    plot = _cell(nb, "available_symbols(")
    assert _data(plot, "image/png"), "the plot cell has no image/png output"


class _CatalogTables(html.parser.HTMLParser):
    """Text of every ``<td>`` of a ``<table>`` inside ``<div class="bfa">``."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.cells: list[str] = []
        self._td: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        self.stack.append((tag, dict(attrs).get("class") or ""))
        if tag == "td" and self._in_table():
            self._td = []

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self.cells.append("".join(self._td).strip())
            self._td = None
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._td is not None:
            self._td.append(data)

    def _in_table(self) -> bool:
        tags = [t for t, _ in self.stack]
        bfa = [i for i, (t, c) in enumerate(self.stack) if t == "div" and "bfa" in c.split()]
        return bool(bfa) and "table" in tags[bfa[0] :]


@pytest.mark.slow
def test_quickstart_html_renders_in_chromium(tmp_path, monkeypatch, demo_data_home):
    from nbconvert import HTMLExporter

    chromium = shutil.which("chromium")
    assert chromium, (
        "chromium not found on PATH: install Debian's package "
        "(apt-get install -y chromium); .ci/run does this for the slow group"
    )
    nb = _execute(tmp_path, monkeypatch, demo_data_home)
    _check_outputs(nb)
    body, _ = HTMLExporter().from_notebook_node(nb)
    page = tmp_path / "quickstart.html"
    page.write_text(body, encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<html" in dom.lower(), f"no DOM dumped; stderr: {proc.stderr[-2000:]}"
    parser = _CatalogTables()
    parser.feed(dom)
    for name in DATASETS:
        assert name in parser.cells, f"{name} not in a catalog table cell of the rendered page"
