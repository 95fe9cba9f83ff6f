"""Recordings in folders nested deeper than the profile's limit: each one is named, in the
session and on its own line, stays on the recorder, and opens a fault; the limit is the
profile's ``media.max_depth``. Folder recorders: a FAT32 image cannot be filled this deep by
mtools in reasonable time, and the walk is the same code on both."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agent.config import SHIPPED_PROFILES
from agent.recorder.simulated import MEDIA_DIR
from tests.recorders import make_folder_recorder, recdock


def write_config(tmp_path: Path, profiles: Path = SHIPPED_PROFILES) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(f'[store]\nreserve_bytes = 0\n[profiles]\ndirs = ["{profiles}"]\n')
    return path


def query(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "catalog.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def bury(rec: Path, depth: int, names: list[str]) -> list[str]:
    """Recordings ``depth`` folders deep (DCIM counts as one); their recorder paths."""
    folder = rec / "DCIM" / Path(*[f"D{i:02d}" for i in range(depth - 1)])
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(name.encode() * 1000)
    return [str((folder / n).relative_to(rec)) for n in names]


def test_each_recording_below_the_depth_limit_is_named_left_and_faulted(
    tmp_path: Path, home: Path
) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "DEEP01", files=2, size=10_000)
    deep = bury(rec, 20, ["RD_20261127090000_0100.MP4", "RD_20261127090000_0101.MP4"])
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # per file, not per folder
    for path, line in zip(deep, lines, strict=True):
        assert path in line and "nested deeper than 16" in line and "stays" in line, line
    assert all((rec / p).exists() for p in deep)  # left on the recorder
    assert os.listdir(rec / MEDIA_DIR) == []  # the others were offloaded and cleared
    (session,) = query(home, "SELECT * FROM sessions")
    listed = query(home, "SELECT subject, data FROM audit WHERE kind = 'file.error'")
    assert sorted(r["subject"] for r in listed) == sorted(deep)
    assert {json.loads(r["data"])["session_id"] for r in listed} == {session["id"]}
    (fault,) = query(home, "SELECT * FROM faults WHERE resolved_at IS NULL")
    assert (fault["kind"], fault["subject"]) == ("offload", "DEEP01"), fault
    assert all(p in fault["detail"] for p in deep), fault


def test_the_depth_limit_is_a_profile_setting(tmp_path: Path, home: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (SHIPPED_PROFILES / "simulated.toml").read_text()
    assert "\n[media]\n" in text
    (profiles / "simulated.toml").write_text(
        text.replace("\n[media]\n", "\n[media]\nmax_depth = 24\n")
    )
    rec = make_folder_recorder(tmp_path / "rec", "DEEP02", files=1, size=10_000)
    deep = bury(rec, 20, ["RD_20261127090000_0100.MP4"])
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path, profiles))
    assert result.returncode == 0, result.stderr
    assert not (rec / deep[0]).exists()
    assert len(query(home, "SELECT * FROM recordings")) == 2
