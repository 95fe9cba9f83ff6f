"""A recorder whose FAT is damaged: corruption is named as corruption, once, with the file, and
opens a storage fault; nothing is written to a recorder whose file system check fails or whose
offload did not complete. Real FAT32 images, damaged in their FAT the way a failing card or a
pulled recorder leaves them (tests/fat_tools.py), read through fusefat."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from agent.recorder.simulated import MEDIA_DIR
from tests.conftest import needs_fusefat
from tests.fat_tools import cut_chain, fsck_clean, orphan_chain, set_dirty, sha256_of
from tests.recorders import fat_mount, make_fat_recorder, recdock
from tests.test_station import Station, media_on, start_station, stop_station

pytestmark = needs_fusefat

SIZE = 200_000
MiB = 1024 * 1024


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
    evidence = json.loads(fault["evidence"])  # the I/O error's evidence: the file, by name
    assert evidence["count"] == 1 and victim in evidence["unreadable"][0], evidence
    assert len(query(home, "SELECT * FROM recordings")) == 2


# -- at the station: nothing is written to a damaged or incompletely offloaded recorder --------


def stored(station: Station, serial: str) -> list[dict[str, Any]]:
    return station.query("SELECT * FROM recordings WHERE device_serial = ?", (serial,))


def open_faults(station: Station, serial: str) -> list[dict[str, Any]]:
    return station.query(
        "SELECT * FROM faults WHERE subject = ? AND resolved_at IS NULL", (serial,)
    )


def docked_and_pulled(station: Station, image: Path) -> dict[str, Any]:
    """Dock ``image`` at bay 1 until its verdict, then pull it out; the bay at the verdict."""
    station.plug(1, image)
    bay = station.wait_state(1, "ready", "not_ready", timeout=120)
    station.unplug(1)
    station.wait_state(1, "idle")
    return bay


def test_a_recorder_whose_file_system_check_fails_is_never_written(tmp_path: Path) -> None:
    image = make_fat_recorder(tmp_path / "r.img", "FSCK01", files=3, size=MiB)
    orphan_chain(image)  # clusters allocated to no file: every recording still reads right
    assert not fsck_clean(image)
    before = sha256_of(image)
    station = start_station(tmp_path)
    try:
        bay = docked_and_pulled(station, image)
        assert bay["state"] == "not_ready", bay
        assert "filesystem" in bay["reason"] and "nothing was written" in bay["reason"], bay
        assert sha256_of(image) == before  # not a byte written: no clearing, no clock
        assert len(stored(station, "FSCK01")) == 3  # the recordings are safe in the store
        (fault,) = open_faults(station, "FSCK01")
        assert fault["kind"] == "storage" and "fsck.fat" in fault["detail"], fault
        evidence = json.loads(fault["evidence"])
        assert evidence["check"] == "fsck.fat -n" and evidence["found"] in fault["detail"]
        # repaired (on a copy of the card, as docs/operations.md says): docked again, ready
        subprocess.run(["fsck.fat", "-a", str(image)], capture_output=True, check=False)
        assert fsck_clean(image)
        bay = docked_and_pulled(station, image)
        assert bay["state"] == "ready", bay
        assert media_on(image) == [] and open_faults(station, "FSCK01") == []
    finally:
        assert stop_station(station) == 0, station.log.read_text()


def test_a_damaged_fat_with_nothing_offloaded_is_never_written(tmp_path: Path) -> None:
    image = make_fat_recorder(tmp_path / "r.img", "FSCK02", files=3, size=MiB)
    for name in names_on(image, tmp_path):
        cut_chain(image, f"{MEDIA_DIR}/{name}", keep=1)
    before = sha256_of(image)
    station = start_station(tmp_path)
    try:
        bay = docked_and_pulled(station, image)
        assert bay["state"] == "not_ready", bay
        assert "0 of 3" in bay["reason"] and "filesystem" in bay["reason"], bay
        assert sha256_of(image) == before
        assert stored(station, "FSCK02") == []
        (fault,) = open_faults(station, "FSCK02")
        assert fault["kind"] == "storage", fault
    finally:
        assert stop_station(station) == 0, station.log.read_text()


def test_a_recorder_whose_offload_did_not_complete_is_never_written(tmp_path: Path) -> None:
    image = make_fat_recorder(tmp_path / "r.img", "FSCK03", files=3, size=MiB)
    deep = tmp_path / "deep"
    folder = deep.joinpath(*[f"D{i:02d}" for i in range(18)])
    folder.mkdir(parents=True)
    (folder / "RD_20261127090000_0100.MP4").write_bytes(b"deep" * 1000)
    subprocess.run(
        ["mcopy", "-s", "-i", str(image), str(deep / "D00"), "::/DCIM/"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    assert fsck_clean(image)
    before = sha256_of(image)
    station = start_station(tmp_path)
    try:
        bay = docked_and_pulled(station, image)
        assert bay["state"] == "not_ready" and "3 of 4" in bay["reason"], bay
        assert sha256_of(image) == before
        assert len(stored(station, "FSCK03")) == 3
        (fault,) = open_faults(station, "FSCK03")
        assert fault["kind"] == "offload", fault
    finally:
        assert stop_station(station) == 0, station.log.read_text()


def test_a_recorder_pulled_out_while_writable_is_checked_clean_and_cleared(tmp_path: Path):
    """The dirty flag alone is no damage: every recorder pulled out of a read-write mount has
    it, and the station itself mounts recorders read-write to clear them."""
    image = make_fat_recorder(tmp_path / "r.img", "FSCK04", files=2, size=MiB)
    set_dirty(image)
    assert not fsck_clean(image)  # fsck.fat exits 1 for it
    station = start_station(tmp_path)
    try:
        bay = docked_and_pulled(station, image)
        assert bay["state"] == "ready", bay
        assert media_on(image) == []
        # no damage, but reported: it was pulled out while writable
        (fault,) = open_faults(station, "FSCK04")
        assert fault["kind"] == "recorder.filesystem_dirty" and fault["severity"] == "warning"
        assert json.loads(fault["evidence"])["found"] == "Dirty bit is set"
    finally:
        assert stop_station(station) == 0, station.log.read_text()
