"""The layers (docs/architecture.md, Layers): import-linter's contracts in pyproject.toml.

The wire contract depends on nothing of ours; the central store imports only it; the station's
core never imports the sync services; the services sit above the catalog; the command line is
the top; no package's modules or subpackages import each other in a cycle.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(config), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_every_import_contract_is_kept() -> None:
    result = lint(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    kept = [line for line in result.stdout.splitlines() if line.endswith(" KEPT")]
    assert len(kept) == 4, result.stdout  # every contract ran, none was skipped


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("agent/catalog/probe.py", "import sync.mqtt.link\n", "layers"),
        ("agent/seams/probe.py", "from agent.station import daemon\n", "layers"),
        ("central/probe.py", "import agent.catalog\n", "central store imports only"),
        ("sync/wire/probe.py", "import agent.errors\n", "wire contract depends"),
        ("agent/store/probe.py", "import agent.store\nimport agent.store.probe\n", None),
    ],
)
def test_the_contracts_catch_a_wrong_import(
    tmp_path: Path, module: str, line: str, broken: str | None
) -> None:
    """A copy of the tree with one import added against the rules breaks a contract."""
    tree = tmp_path / "tree"
    for name in ("agent", "sync", "central"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    if broken is None:
        # a cycle between two siblings: the store's io and a probe importing each other
        (tree / "agent/store/probe.py").write_text("import agent.store.io\n")
        io = tree / "agent/store/io.py"
        io.write_text(io.read_text() + "\nimport agent.store.probe  # noqa\n")
    else:
        (tree / module).write_text(textwrap.dedent(line))
    result = lint(tree, tree / "pyproject.toml")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    if broken:
        assert any(broken in s and "BROKEN" in s for s in result.stdout.splitlines()), result.stdout
    else:
        assert "No import cycles" in result.stdout and "agent.store" in result.stdout


def module_cycles(graph, modules: list[str]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan): each one a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for m in modules:
        if m not in index:
            visit(m)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between any two modules, packages' own __init__ included (the
    acyclic_siblings contract looks at siblings; this looks at every module)."""
    import sys

    import grimp

    sys.setrecursionlimit(10_000)
    graph = grimp.build_graph("agent", "sync", "central")
    assert module_cycles(graph, sorted(graph.modules)) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    import grimp

    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p")
    graph.add_import(importer="p", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert module_cycles(graph, sorted(graph.modules)) == [["p", "p.a", "p.b"]]
