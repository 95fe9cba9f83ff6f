"""Import rules (STYLE.md): agent/ never imports central/; the hardware seams never import sync/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEAMS = ["dock.py", "mount.py", "indicators.py", "clock.py", "sdnotify.py"]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "agent").glob("*.py")), ids=lambda p: p.name)
def test_agent_never_imports_central(path: Path) -> None:
    assert "central" not in imported_packages(path), f"{path.name} imports central/"


@pytest.mark.parametrize("name", SEAMS)
def test_hardware_seams_never_import_sync(name: str) -> None:
    path = ROOT / "agent" / name
    assert path.exists(), f"agent/{name}: the seam moved? update SEAMS"
    assert "sync" not in imported_packages(path), f"agent/{name} imports sync/"


def test_the_rule_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import central.app\nfrom sync.outbox import enqueue\n")
    assert imported_packages(probe) == {"central", "sync"}
