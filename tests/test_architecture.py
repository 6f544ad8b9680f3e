"""The layout's rules, checked over the source (``ast``), imports inside functions included.

1. No import cycle among the package's modules.
2. The consumer path never imports ``producer/``, ``serve/``, ``testing/`` or the CLI.
3. Formatting (``display/``) imports no data access: only other display modules, the
   static dataset registry (``schema``) and ``errors``.
4. No module imports another module's ``_private`` names.
5. Every module has a docstring (saying its one concern).

Imports under ``if TYPE_CHECKING:`` never run, so they do not count. The checker itself is
tested on a small synthetic package, so a rule that stopped finding anything would fail.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "intake_bfa"

#: Applications built on the consumer path; everything else is the consumer path.
APPLICATIONS = ("cli", "serve", "producer", "testing", "demo")
#: What formatting code may import.
DISPLAY_MAY_IMPORT = ("display", "schema", "errors")


@dataclass
class ImportGraph:
    """Modules of one package and what each imports (module -> {module: [names]})."""

    root: str
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: list[tuple[str, str, str]] = field(default_factory=list)


def _module_name(path: Path, base: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(base).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def build_graph(package_dir: Path) -> ImportGraph:
    """Every import of every module under ``package_dir``, function-level ones included."""
    base = package_dir.parent
    graph = ImportGraph(package_dir.name)
    trees = {}
    for path in sorted(package_dir.rglob("*.py")):
        name, is_package = _module_name(path, base)
        graph.modules[name] = path
        trees[name] = (ast.parse(path.read_text(encoding="utf-8")), is_package)
    for name, (tree, is_package) in trees.items():
        targets: set[str] = set()
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == graph.root)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    module = ".".join(package + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.split(".")[0] != graph.root:
                    continue
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    if submodule in graph.modules:
                        targets.add(submodule)
                        continue
                    targets.add(module)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        graph.private.append((name, module, alias.name))
        graph.edges[name] = {t for t in targets if t in graph.modules and t != name}
    return graph


def find_cycles(graph: ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in graph.modules:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _area(module: str, root: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def forbidden_imports(graph: ImportGraph) -> list[str]:
    """Consumer modules importing an application, and display modules importing data access."""
    found = []
    for module, targets in graph.edges.items():
        area = _area(module, graph.root)
        for target in sorted(targets):
            target_area = _area(target, graph.root)
            if area not in APPLICATIONS and module != graph.root and target_area in APPLICATIONS:
                found.append(f"{module} (consumer path) imports {target}")
            if area == "display" and target_area not in DISPLAY_MAY_IMPORT:
                found.append(f"{module} (formatting) imports {target} (data access)")
    return found


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_graph(PACKAGE_DIR)


def test_no_import_cycles(graph):
    assert graph.modules, "no modules found"
    assert find_cycles(graph) == []


def test_consumer_path_and_display_import_only_what_they_may(graph):
    assert forbidden_imports(graph) == []


def test_no_module_imports_another_modules_private_names(graph):
    assert graph.private == []


def test_every_module_says_its_concern(graph):
    missing = [
        name
        for name, path in graph.modules.items()
        if not (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert missing == []


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    pkg = tmp_path / "pkg"
    for folder in ("", "display", "producer"):
        (pkg / folder).mkdir(parents=True, exist_ok=True)
        (pkg / folder / "__init__.py").write_text('"""p."""\n')
    (pkg / "a.py").write_text('"""a."""\ndef f():\n    from pkg import b\n')
    (pkg / "b.py").write_text('"""b."""\nfrom pkg.a import _helper\n')
    (pkg / "c.py").write_text('"""c."""\nfrom .producer import build\n')
    (pkg / "producer" / "build.py").write_text('"""build."""\n')
    (pkg / "display" / "table.py").write_text('"""table."""\nfrom pkg import c\n')
    (pkg / "d.py").write_text(
        '"""d."""\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n'
    )
    g = build_graph(pkg)
    assert find_cycles(g) == [["pkg.a", "pkg.b"]]
    assert g.private == [("pkg.b", "pkg.a", "_helper")]
    assert forbidden_imports(g) == [
        "pkg.c (consumer path) imports pkg.producer.build",
        "pkg.display.table (formatting) imports pkg.c (data access)",
    ]
    assert g.edges["pkg.d"] == set()


def test_importing_the_package_loads_no_heavy_library():
    import subprocess

    code = (
        "import sys, intake_bfa; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'fsspec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_public_names_are_never_shadowed_by_a_submodule():
    """``intake_bfa.browse`` stays the function even after ``import intake_bfa.<module>``.

    Importing a submodule binds its name on the package, so a public function must not share
    its name with the module it lives in (``errors`` is the module itself, on purpose).
    """
    import subprocess

    import intake_bfa

    for name, module in intake_bfa._LAZY.items():
        if module != "intake_bfa.errors":
            assert module.rsplit(".", 1)[1] != name, (name, module)
    code = (
        "import intake_bfa.browser, intake_bfa.audit, intake_bfa; "
        "print(callable(intake_bfa.browse), callable(intake_bfa.diff))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
