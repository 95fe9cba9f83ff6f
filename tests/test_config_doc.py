"""docs/configuration.md lists every setting with its default, as the code has it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("config_doc", ROOT / "scripts" / "config-doc.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_settings_table_in_the_doc_is_what_the_code_says():
    gen = _generator()
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert gen.table() in doc, (
        "docs/configuration.md's settings table is out of date: "
        "run .venv/bin/python scripts/config-doc.py --write"
    )


def test_every_setting_has_a_description():
    gen = _generator()
    missing = [key for key, _t, _d, desc in gen.rows(gen.Config) if not desc.strip()]
    assert not missing, f"settings without a description: {missing}"
