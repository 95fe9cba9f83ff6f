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
