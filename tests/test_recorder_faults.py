"""The fault rules on recorders (agent/checks/faults.py, docs/faults.md): each provoked with a
simulated recorder, through the station (`recdock run --simulate`, real FAT32 images), or, for
the rules that look at a recorder's history across days, through the rules themselves with the
history a station would have kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.catalog import Catalog, history
from agent.catalog.faults import get_fault, list_faults
from agent.checks import faults as rules
from agent.checks.results import CheckReport, CheckResult
from agent.config import Config, DeviceEntry
from agent.recorder.status import RecorderInfo
from tests.conftest import needs_fusefat
from tests.recorders import make_fat_recorder, wait_for
from tests.test_station import start_station, stop_station

MiB = 1024 * 1024
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def open_faults(station, kind: str) -> list[dict]:  # noqa: ANN001
    rows = station.query(
        "SELECT * FROM faults WHERE kind = ? AND resolved_at IS NULL ORDER BY opened_at", (kind,)
    )
    return [{**r, "evidence": json.loads(r["evidence"] or "{}")} for r in rows]


def dock_once(station, image: Path, bay: int = 1) -> dict:  # noqa: ANN001
    station.plug(bay, image)
    row = station.wait_state(bay, "ready", "not_ready")
    station.unplug(bay)
    station.wait_state(bay, "idle")
    return row


@needs_fusefat
def test_a_recorder_failing_the_same_check_twice_in_a_row_opens_a_fault(tmp_path: Path) -> None:
    image = make_fat_recorder(
        tmp_path / "r.img", "SIMBAT1", files=1, size=MiB, battery=20.0, firmware="1.9.9"
    )
    station = start_station(tmp_path)
    try:
        assert dock_once(station, image)["state"] == "not_ready"
        assert open_faults(station, "recorder.check") == []  # once is not yet a pattern
        (fw,) = open_faults(station, "recorder.firmware")  # unapproved firmware: at once
        assert fw["evidence"]["firmware"] == "1.9.9" and fw["severity"] == "warning"
        dock_once(station, image)
        faults = {f["subject"]: f for f in open_faults(station, "recorder.check")}
        assert set(faults) == {"SIMBAT1 battery", "SIMBAT1 firmware"}
        evidence = faults["SIMBAT1 battery"]["evidence"]
        assert evidence["in_a_row"] == 2 and len(evidence["checks"]) == 2
        assert all(c["value"].startswith("20") for c in evidence["checks"])
        opened = station.query(
            "SELECT data FROM audit WHERE kind = 'fault.open' AND subject = ?",
            (faults["SIMBAT1 battery"]["id"],),
        )
        assert json.loads(opened[0]["data"])["evidence"] == evidence
        dockings = station.query("SELECT * FROM recorder_history WHERE device_serial = 'SIMBAT1'")
        assert len(dockings) == 2 and all(d["undocked_at"] for d in dockings)
        assert dockings[0]["battery_pct"] == 20.0
    finally:
        assert stop_station(station) == 0, station.log.read_text()


@needs_fusefat
def test_a_recorder_whose_clock_was_reset_opens_a_clock_fault(tmp_path: Path) -> None:
    offset = (datetime(2000, 1, 1, tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    image = make_fat_recorder(tmp_path / "r.img", "SIMCLK1", files=1, size=MiB, clock_offset=offset)
    station = start_station(tmp_path)
    try:
        station.plug(1, image)
        station.wait_state(1, "ready", "not_ready")
        wait_for(lambda: open_faults(station, "recorder.clock_reset"), what="the clock fault")
        (fault,) = open_faults(station, "recorder.clock_reset")
        assert fault["subject"] == "SIMCLK1" and fault["evidence"]["device_clock"] < "2000-01-02"
        assert fault["evidence"]["before_year"] == 2020
    finally:
        assert stop_station(station) == 0, station.log.read_text()


# -- the rules over a recorder's history ---------------------------------------------------------


@pytest.fixture
def catalog(home: Path) -> Catalog:
    c = Catalog(home / "catalog.db", station_id="ST-1")
    yield c
    c.close()


def report(offset: float | None, *, after: float | None = None, ok: bool = True) -> CheckReport:
    clock = CheckResult("clock", ok, "", "")
    return CheckReport([clock], ok, [], offset, after, after is not None)


def docking(
    serial: str, at: datetime, offset: float | None, battery: float | None = 90.0, **kw
) -> rules.Docking:  # noqa: ANN003
    info = RecorderInfo(serial=serial, profile="sim", battery_pct=battery)
    return rules.Docking(serial, None, at, info, report(offset, **kw))


def undock(catalog: Catalog, serial: str, at: datetime) -> None:
    history.undocked(catalog, serial, at.isoformat())


def test_a_clock_drifting_more_than_3_s_a_day_opens_a_fault(catalog: Catalog) -> None:
    config = Config()
    # set to 0 at the first docking; two days later 10 s ahead: 5 s/day
    rules.after_docking(catalog, config, docking("A1", T0, 40.0, after=0.0))
    undock(catalog, "A1", T0 + timedelta(hours=1))
    rules.after_docking(catalog, config, docking("A1", T0 + timedelta(days=2), 10.0, after=0.2))
    fault = next(f for f in list_faults(catalog) if f.kind == "recorder.clock_drift")
    assert fault.evidence["drift_s_per_day"] == pytest.approx(5.0)
    assert fault.evidence["limit_s_per_day"] == 3.0
    # two days on, 4 s from the 0.2 left: 1.9 s/day: within GA/T 947, the fault resolves
    rules.after_docking(catalog, config, docking("A1", T0 + timedelta(days=4), 4.0, after=0.0))
    assert get_fault(catalog, fault.id).state == "resolved"


def test_a_clock_found_before_the_last_docking_was_reset(catalog: Catalog) -> None:
    config = Config()
    rules.after_docking(catalog, config, docking("A2", T0, 0.0))
    # seconds later it reads a second earlier: within the clock tolerance, no reset
    rules.after_docking(catalog, config, docking("A2", T0 + timedelta(seconds=3), -4.0))
    assert not [f for f in list_faults(catalog) if f.kind == "recorder.clock_reset"]
    # a day later the recorder reads a time before that docking
    rules.after_docking(catalog, config, docking("A2", T0 + timedelta(days=1), -2 * 86400.0))
    (fault,) = [f for f in list_faults(catalog) if f.kind == "recorder.clock_reset"]
    second = T0 + timedelta(seconds=3)
    assert fault.evidence["previous_docked_at"] == second.isoformat()
    assert fault.evidence["previous_device_clock"] == (second - timedelta(seconds=4)).isoformat()
    assert not [f for f in list_faults(catalog) if f.kind == "recorder.clock_drift"]


def test_a_battery_draining_faster_than_its_own_history_opens_a_fault(catalog: Catalog) -> None:
    config = Config()
    at = T0
    # four shifts of 10 h after full docks of 8 h: 30 %, 30 %, 35 % used, then 80 %
    for arrival in (None, 70.0, 70.0, 65.0, 20.0):
        rules.after_docking(catalog, config, docking("B1", at, None, battery=arrival))
        undock(catalog, "B1", at + timedelta(hours=8))
        at += timedelta(hours=18)
    (fault,) = [f for f in list_faults(catalog) if f.kind == "recorder.battery"]
    assert fault.evidence["drain_pct_per_h"] == pytest.approx(8.0)
    assert fault.evidence["median_pct_per_h"] == pytest.approx(3.0)
    assert fault.evidence["history_pct_per_h"] == [3.0, 3.0, 3.5]


def test_a_registered_recorder_not_docked_in_24_hours_is_overdue(catalog: Catalog) -> None:
    config = Config(
        devices=[DeviceEntry(serial="C1", profile="sim"), DeviceEntry(serial="C2", profile="sim")]
    )
    rules.after_docking(catalog, config, docking("C1", T0, None))
    undock(catalog, "C1", T0 + timedelta(hours=1))
    assert rules.overdue(catalog, config, T0 + timedelta(hours=24)) == []
    assert rules.overdue(catalog, config, T0 + timedelta(hours=25, minutes=1)) == ["C1"]
    (fault,) = [f for f in list_faults(catalog) if f.kind == "recorder.overdue"]
    assert fault.evidence["undocked_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert fault.evidence["limit_hours"] == 24.0
    rules.overdue(catalog, config, T0 + timedelta(hours=30))
    assert get_fault(catalog, fault.id).occurrences == 1  # one fault, not one per loop
    rules.after_docking(catalog, config, docking("C1", T0 + timedelta(hours=31), None))
    assert get_fault(catalog, fault.id).state == "resolved"
