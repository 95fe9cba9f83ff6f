"""The shape docs/architecture.md promises a reader: SQL only behind the catalogs, small pieces.

Every SQL statement of the station lives in agent/catalog/ (one owner module per table), and
the central store's in central/catalog/; every other module calls their named functions. No
class is longer than 300 lines and no function longer than 60, so each reads in one sitting.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = sorted(p for top in ("agent", "sync", "central") for p in (ROOT / top).rglob("*.py"))
SQL_HOMES = (ROOT / "agent" / "catalog", ROOT / "central" / "catalog")
SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE\s+FROM|CREATE|ALTER|DROP|PRAGMA|BEGIN|COMMIT|ROLLBACK)\b"
    r"(\s+\S|$)",
)
MAX_CLASS = 300
MAX_FUNCTION = 60


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if SQL.match(text) and (" " in text.strip() or text.strip().upper() in ("COMMIT",)):
                found.append((node.lineno, text.strip().splitlines()[0][:60]))
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_sql_lives_only_behind_the_catalogs(path: Path) -> None:
    if any(home in path.parents for home in SQL_HOMES):
        return
    assert sql_strings(path) == [], f"{path.relative_to(ROOT)}: SQL outside the catalog layer"


def test_the_sql_finder_finds_sql(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        'a = "SELECT * FROM recordings"\nb = "DELETE"\nc = "Update the firmware"\n'
        'd = (\n    "UPDATE recordings SET x = 1"\n    " WHERE id = ?"\n)\n'
    )
    assert [line for line, _ in sql_strings(probe)] == [1, 5]


def sizes(path: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            assert node.end_lineno is not None
            found.append((kind, node.name, node.end_lineno - node.lineno + 1))
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_class_or_function_too_long_to_hold_in_ones_head(path: Path) -> None:
    too_long = [
        f"{kind} {name}: {n} lines"
        for kind, name, n in sizes(path)
        if n > (MAX_CLASS if kind == "class" else MAX_FUNCTION)
    ]
    assert too_long == [], f"{path.relative_to(ROOT)}: {too_long}"
