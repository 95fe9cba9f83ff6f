"""Rule 8 (docs/architecture.md) against recorders that lie about who they are: a recording is
filed under the identity the USB descriptor, the status file and the register agree on; a
disagreement is a conflict, shown and reported, never silently resolved, and nothing is lost.
The recorders are real FAT32 images (the station) or folders (the command line)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.config import DeviceEntry
from agent.recorder.identity import agree
from agent.recorder.status import RecorderInfo
from tests.conftest import needs_fusefat
from tests.recorders import make_fat_recorder, make_folder_recorder, recdock, wait_for
from tests.test_station import CONFIG, Station, media_on, start_station, stop_station

MiB = 1024 * 1024
REGISTER = {
    "REC-A": DeviceEntry(serial="REC-A", profile="simulated", officer="100001", unit="patrol-1"),
    "REC-B": DeviceEntry(serial="REC-B", profile="simulated", officer="200002", unit="patrol-2"),
}
DEVICES = """
[[devices]]
serial = "REC-A"
profile = "simulated"
officer = "100001"
unit = "patrol-1"

[[devices]]
serial = "REC-B"
profile = "simulated"
officer = "200002"
unit = "patrol-2"
"""


def lying(info_serial: str, officer: str | None = "200002") -> RecorderInfo:
    """What read_info makes of a status file naming ``info_serial``."""
    return RecorderInfo(
        serial=info_serial, profile="simulated", officer=officer, status_serial=info_serial
    )


# -- the rule itself --------------------------------------------------------------------------


def test_a_status_file_naming_another_registered_serial_is_a_conflict_filed_under_usb():
    info = lying("REC-B")
    agree(info, "REC-A", REGISTER)
    assert info.serial == "REC-A"
    assert (info.officer, info.unit) == ("100001", "patrol-1")  # the register's, for REC-A
    assert "REC-A" in info.identity_conflict and "REC-B" in info.identity_conflict
    assert "200002" in info.identity_conflict  # the officer it tried to pass for


def test_an_officer_the_register_does_not_give_the_recorder_is_a_conflict():
    info = lying("REC-A", officer="999999")
    agree(info, "REC-A", REGISTER)
    assert info.serial == "REC-A" and info.officer == "100001"
    assert "999999" in info.identity_conflict and "100001" in info.identity_conflict


@pytest.mark.parametrize("usb", ["REC-A", None])
def test_agreement_is_no_conflict_and_the_register_fills_in(usb: str | None):
    info = lying("REC-A", officer=None)
    agree(info, usb, REGISTER)
    assert info.identity_conflict is None
    assert (info.serial, info.officer, info.unit) == ("REC-A", "100001", "patrol-1")


# -- by hand: recdock offload ------------------------------------------------------------------


def query(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "catalog.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def test_an_offload_under_a_disputed_identity_is_kept_marked_and_faulted(
    tmp_path: Path, home: Path
) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "REC-B", officer="200002", files=2, size=10_000)
    config = tmp_path / "recdock.toml"
    config.write_text("[store]\nreserve_bytes = 0\n" + DEVICES)
    result = recdock("offload", str(rec), "--serial", "REC-A", home=home, config=config)
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "identity conflict" in line and "REC-A" in line and "REC-B" in line, line
    rows = query(home, "SELECT device_serial, officer_id FROM recordings")
    assert rows == [{"device_serial": "REC-A", "officer_id": "100001"}] * 2  # nothing lost
    (session,) = query(home, "SELECT * FROM sessions")
    (conflict,) = query(home, "SELECT * FROM identity_conflicts")
    assert conflict["session_id"] == session["id"] and conflict["claimed_serial"] == "REC-B"
    record = next((home / "store").rglob("session.json"))
    assert "REC-B" in json.loads(record.read_text())["device"]["identity_conflict"]
    (fault,) = query(home, "SELECT * FROM faults WHERE resolved_at IS NULL")
    assert (fault["kind"], fault["subject"]) == ("identity", "REC-A"), fault


# -- at the station -----------------------------------------------------------------------------


def station_with_register(tmp_path: Path) -> Station:
    config = tmp_path / "recdock.toml"
    config.write_text(CONFIG.format(slots=2) + DEVICES)
    return start_station(tmp_path, config=config)


@needs_fusefat
def test_a_recorder_passing_for_another_registered_one_is_not_ready(tmp_path: Path) -> None:
    station = station_with_register(tmp_path)
    try:
        image = make_fat_recorder(tmp_path / "r.img", "REC-B", officer="200002", files=2, size=MiB)
        station.plug(1, image, "--serial", "REC-A")  # its USB descriptor says REC-A
        bay = station.wait_state(1, "ready", "not_ready", timeout=120)
        assert bay["state"] == "not_ready", bay
        assert bay["device_serial"] == "REC-A" and "identity" in bay["reason"], bay
        assert "REC-B" in bay["reason"], bay
        rows = station.query("SELECT device_serial, officer_id FROM recordings")
        assert rows == [{"device_serial": "REC-A", "officer_id": "100001"}] * 2
        assert media_on(image) == []  # offloaded whole and cleared: nothing lost
        (fault,) = station.query("SELECT * FROM faults WHERE resolved_at IS NULL")
        assert (fault["kind"], fault["subject"]) == ("identity", "REC-A"), fault
    finally:
        assert stop_station(station) == 0, station.log.read_text()


@needs_fusefat
def test_two_recorders_docked_at_once_with_one_serial_are_both_in_conflict(tmp_path: Path):
    station = start_station(tmp_path)
    try:
        images = [  # different recordings (sizes), one serial
            make_fat_recorder(tmp_path / f"r{i}.img", "TWIN01", files=2, size=(2 + i) * MiB)
            for i in (1, 2)
        ]
        station.plug(1, images[0])
        station.plug(2, images[1])
        for bay in (1, 2):  # a bay that showed READY first is told NOT_READY by the other
            wait_for(
                lambda b=bay: (station.bay_row(b) or {}).get("state") == "not_ready",
                120,
                f"bay {bay} not ready; log:\n{station.log.read_text()[-3000:]}",
            )
            row = station.bay(bay)
            assert "two recorders docked at once with serial TWIN01" in row["reason"], row
        faults = station.query("SELECT * FROM faults WHERE resolved_at IS NULL")
        assert [(f["kind"], f["subject"]) for f in faults] == [("identity", "TWIN01")]
        sessions = {s["id"] for s in station.query("SELECT id FROM sessions")}
        marked = {c["session_id"] for c in station.query("SELECT * FROM identity_conflicts")}
        assert len(sessions) == 2 and marked == sessions
        assert len(station.query("SELECT * FROM recordings")) == 4  # nothing lost
    finally:
        assert stop_station(station) == 0, station.log.read_text()
