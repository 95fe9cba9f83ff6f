"""A recorder whose FAT is damaged: corruption is named as corruption, once, with the file, and
opens a storage fault; nothing is written to a recorder whose file system check fails or whose
offload did not complete. Real FAT32 images, damaged in their FAT the way a failing card or a
pulled recorder leaves them (tests/fat_tools.py), read through fusefat."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agent.recorder.simulated import MEDIA_DIR
from tests.conftest import needs_fusefat
from tests.fat_tools import cut_chain
from tests.recorders import fat_mount, make_fat_recorder, recdock

pytestmark = needs_fusefat

SIZE = 200_000


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text("[store]\nreserve_bytes = 0\n")
    return path


def query(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "catalog.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def names_on(image: Path, tmp_path: Path) -> list[str]:
    with fat_mount(image, tmp_path / "probe") as m:
        return sorted(os.listdir(m.mountpoint / MEDIA_DIR))


def test_a_lost_cluster_chain_is_named_corruption_once_with_a_storage_fault(
    tmp_path: Path, home: Path
) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "LOST01", files=3, size=SIZE)
    victim = names_on(image, tmp_path)[1]
    held = cut_chain(image, f"{MEDIA_DIR}/{victim}", keep=50)  # the rest of its chain is lost
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        assert (m.mountpoint / MEDIA_DIR / victim).stat().st_size == SIZE
        result = recdock("offload", str(m.mountpoint), home=home, config=write_config(tmp_path))
        assert sorted(os.listdir(m.mountpoint / MEDIA_DIR)) == [victim]  # it stays
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert line.count(victim) == 1, line
    assert "damaged" in line and f"{SIZE} bytes" in line and f"only {held}" in line, line
    assert "changed" not in line and "next docking" not in line, line
    errors = query(home, "SELECT data FROM audit WHERE kind = 'file.error'")
    assert len(errors) == 1 and "damaged" in json.loads(errors[0]["data"])["error"]
    (fault,) = query(home, "SELECT * FROM faults WHERE resolved_at IS NULL")
    assert (fault["kind"], fault["subject"]) == ("storage", "LOST01"), fault
    assert victim in fault["detail"], fault
    assert len(query(home, "SELECT * FROM recordings")) == 2
