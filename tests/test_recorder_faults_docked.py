"""The recorder fault rules that need more than one docking's checks (docs/faults.md): the charge
a recorder reaches while it stays docked (``battery.charge``, and the drain rule that starts from
it), storage smaller than its profile says (``storage.capacity``), and a recorder that fails to
mount at dockings in a row (``recorder.mount``). Real recorders throughout: folders and FAT32
images built by the simulator, mounted by the station's own mounter (fusefat for images); the
station clock is the simulated one, moved by the test (never slept on)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.catalog import Catalog, history
from agent.catalog.faults import get_fault, list_faults
from agent.checks import faults as rules
from agent.config import Config
from agent.config.faults import FaultsConfig
from agent.config.paths import SHIPPED_PROFILES
from agent.recorder.profiles import ProfileSet, load_profile
from agent.recorder.status import read_info
from agent.seams.clock.simulated import SimulatedClock
from agent.seams.dock import DockEvent, match_event
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mount, Mounter
from agent.station.bay import Docking
from agent.station.charge import ChargeWatch
from agent.station.daemon import Station
from tests.conftest import needs_fusefat
from tests.recorders import fat_mount, make_fat_recorder, make_folder_recorder, wait_for
from tests.test_recorder_faults import docking, open_faults, undock
from tests.test_station import CONFIG, start_station, stop_station

MiB = 1024 * 1024
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def catalog(home: Path) -> Catalog:
    c = Catalog(home / "catalog.db", station_id="ST-1")
    yield c
    c.close()


def faults_of(catalog: Catalog, kind: str) -> list:
    return [f for f in list_faults(catalog) if f.kind == kind]


def set_battery(recorder: Path, pct: float) -> None:
    """The simulated recorder's firmware rewrites its status file as it charges."""
    status = recorder / "DEVICE.JSN"
    doc = json.loads(status.read_text())
    status.write_text(json.dumps({**doc, "battery": pct, "charging": pct < 100}))


# -- battery.charge -----------------------------------------------------------------------------


def docked_folder(tmp_path: Path, serial: str, battery: float) -> tuple[Path, Docking]:
    """A folder recorder at bay 1 after its verdict, as the daemon keeps it."""
    source = make_folder_recorder(tmp_path / serial, serial, files=0, battery=battery)
    event = DockEvent("add", "sim:1", 1, "1209", "0001", None, None, "sim-bay-1", "folder", source)
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    d = Docking(event, match_event(event, profiles, set()))
    d.verdict, d.device = State.NOT_READY, serial
    return source, d


def test_a_recorder_still_below_the_limit_after_a_full_dock_opens_a_charge_fault(
    tmp_path: Path, catalog: Catalog
) -> None:
    config = Config(faults=FaultsConfig(battery_full_dock_hours=4, battery_charge_min_pct=90))
    clock = SimulatedClock(offset_s=(T0 - datetime.now(UTC)).total_seconds())
    source, d = docked_folder(tmp_path, "CHG1", 30.0)
    rules.after_docking(catalog, config, docking("CHG1", T0, None, battery=30.0))
    watch = ChargeWatch(config, catalog.path.parent, Mounter(tmp_path / "mnt"), clock)

    clock.offset_s += 3600  # one hour in: still charging, nothing judged yet
    set_battery(source, 60.0)
    assert watch.read(catalog, d) == 60.0
    clock.offset_s += 3 * 3600 + 60  # past the full dock, and it stopped at 80 %
    set_battery(source, 80.0)
    assert watch.read(catalog, d) == 80.0
    (fault,) = faults_of(catalog, "battery.charge")
    assert fault.subject == "CHG1"
    ev = fault.evidence
    assert (ev["battery_pct"], ev["limit_pct"], ev["full_dock_hours"]) == (80.0, 90.0, 4.0)
    assert ev["hours_docked"] == pytest.approx(4.02, abs=0.01)
    assert ev["docked_at"] == T0.isoformat() and ev["battery_pct_at_docking"] == 30.0
    assert [r["battery_pct"] for r in ev["readings"]] == [60.0, 80.0]
    (now,) = history.recent(catalog, "CHG1", 1)
    assert now.battery_last_pct == 80.0  # the docking keeps its last reading

    clock.offset_s += 1800
    watch.read(catalog, d)
    assert get_fault(catalog, fault.id).occurrences == 2  # the same condition: one fault
    set_battery(source, 95.0)  # a new battery: it charges fully again
    watch.read(catalog, d)
    assert get_fault(catalog, fault.id).state == "resolved"


def test_a_docked_recorders_battery_is_read_again_on_the_schedule_while_it_stays(
    tmp_path: Path,
) -> None:
    """Only the schedule is asserted here (the rule, with a moved clock, above): a recorder
    left docked is read again every ``battery_reread_minutes`` while it stays."""
    config = Config(faults=FaultsConfig(battery_reread_minutes=1))
    clock = SimulatedClock()
    source, d = docked_folder(tmp_path, "CHG2", 40.0)
    home = tmp_path / "home"
    catalog = Catalog(home / "catalog.db", station_id="ST-1")
    rules.after_docking(catalog, config, docking("CHG2", clock.now(), None, battery=40.0))
    watch = ChargeWatch(config, home, Mounter(tmp_path / "mnt"), clock)

    def readings() -> int:
        return len(history.readings(catalog, history.recent(catalog, "CHG2", 1)[0].id))

    watch.poll([d])
    wait_for(lambda: readings() == 1 and not watch._busy, 30, "the first reading")
    watch.poll([d])  # not due yet
    clock.offset_s += 61
    watch.poll([d])
    wait_for(lambda: readings() == 2 and not watch._busy, 30, "the second reading")
    d.gone.set()  # taken out: never read again
    clock.offset_s += 61
    watch.poll([d])
    assert readings() == 2 and not watch._busy
    catalog.close()


def test_the_drain_rule_starts_from_the_level_reached_at_the_last_docking(
    catalog: Catalog,
) -> None:
    config = Config()
    at = T0
    # four shifts of 10 h after docks of 8 h, each back at 65-70 % (3-3.5 %/h from full) ...
    for arrival in (None, 70.0, 70.0, 65.0):
        rules.after_docking(catalog, config, docking("B2", at, None, battery=arrival))
        undock(catalog, "B2", at + timedelta(hours=8))
        at += timedelta(hours=18)
    # ... but the last dock only charged it to 50 %: back at 20 % is 3 %/h, not 8 %/h
    (last,) = history.recent(catalog, "B2", 1)
    history.record_reading(catalog, last.id, (at - timedelta(hours=11)).isoformat(), 50.0, True)
    rules.after_docking(catalog, config, docking("B2", at, None, battery=20.0))
    assert faults_of(catalog, "recorder.battery") == []


class StallingMounter(Mounter):
    """The station's own mounter (fusefat for an image). Right after it mounts a recorder for
    its battery reading, the recorder's FUSE process is stopped (SIGSTOP), as a recorder that
    stops answering would: the reading is under way, holding its mount, when the station is
    told to stop; the test lets it answer again (SIGCONT)."""

    def __init__(self, mount_dir: Path) -> None:
        super().__init__(mount_dir)
        self.stalled: list[int] = []  # the fusefat pid

    def mount_readonly(self, event: DockEvent) -> Mount:
        mount = super().mount_readonly(event)
        if mount.proc is not None and not self.stalled:
            os.kill(mount.proc.pid, signal.SIGSTOP)
            self.stalled.append(mount.proc.pid)
        return mount


def mounted_under(folder: Path) -> list[str]:
    base = str(folder.resolve()) + "/"
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[1].startswith(base)]


def in_process_station(home: Path, mounter: Mounter) -> Station:
    """The daemon itself, in this process, with the simulated dock and mock pins."""
    from gpiozero.pins.mock import MockFactory

    from agent.seams.clock import make_clock
    from agent.seams.dock.simulated import SimulatedDock
    from agent.seams.indicators.devices import Indicators

    config = Config(station_id="ST-1")
    return Station(
        config,
        home,
        dock=SimulatedDock(home, set()),
        indicators=Indicators(config.indicators, MockFactory()),
        clock=make_clock("simulated", synchronised=True),
        profiles=ProfileSet.load([SHIPPED_PROFILES]),
        mounter=mounter,
    )


@needs_fusefat
def test_a_clean_stop_waits_for_a_battery_reading_and_leaves_nothing_mounted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = make_fat_recorder(tmp_path / "r.img", "CHG9", files=1, size=MiB, battery=50.0)
    home, mounter = tmp_path / "home", StallingMounter(tmp_path / "mnt")
    station = in_process_station(home, mounter)
    catalog = Catalog(home / "catalog.db", station_id="ST-1")
    rules.after_docking(catalog, station.config, docking("CHG9", station.clock.now(), None))
    event = DockEvent("add", "sim:1", 1, "1209", "0001", None, None, "sim-bay-1", "vfat", image)
    d = Docking(event, match_event(event, station.profiles, set()))
    d.verdict, d.device = State.READY, "CHG9"  # after its verdict, it stays to charge
    station.dockings[event.key] = d
    ended: dict[str, object] = {}

    def run() -> None:
        ended["code"] = station.run()
        ended["mounted"] = mounted_under(tmp_path / "mnt")  # as the stop left it

    thread = threading.Thread(target=run, name="station")
    try:
        with caplog.at_level(logging.INFO, logger="agent.station.charge"):
            thread.start()
            wait_for(lambda: mounter.stalled, 30, "the battery reading's mount")
            station.request_stop()
            wait_for(
                lambda: not thread.is_alive() or "waiting for 1 battery reading" in caplog.text,
                30,
                "the stop to end or to wait for the reading",
            )
            os.kill(mounter.stalled[0], signal.SIGCONT)  # the recorder answers again
            thread.join(60)
        assert not thread.is_alive() and ended["code"] == 0
        assert ended["mounted"] == [], "a clean stop left the recorder mounted"
        (kept,) = history.readings(catalog, history.docked_now(catalog, "CHG9").id)
        assert kept["battery_pct"] == 50.0  # the reading under way was finished, and kept
    finally:
        for pid in mounter.stalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        thread.join(60)
        for target in mounted_under(tmp_path / "mnt"):
            subprocess.run(["fusermount", "-u", "-z", target], check=False, capture_output=True)
        catalog.close()


# -- storage.capacity -----------------------------------------------------------------------------


@needs_fusefat
def test_a_recorder_smaller_than_its_profile_says_opens_a_capacity_fault(
    tmp_path: Path, catalog: Catalog
) -> None:
    image = make_fat_recorder(tmp_path / "small.img", "CAP1", files=0, capacity=80 * MiB)
    profile = load_profile(SHIPPED_PROFILES / "simulated.toml")
    config = Config()  # capacity_tolerance_percent = 10
    with fat_mount(image, tmp_path / "m") as m:
        info = read_info(m.mountpoint, profile)

    def dock(stated: int) -> None:
        report = docking("CAP1", T0, None).report
        rules.after_docking(catalog, config, rules.Docking("CAP1", None, T0, info, report, stated))

    dock(128 * MiB)  # a "128 MiB" card that holds 80
    (fault,) = faults_of(catalog, "storage.capacity")
    ev = fault.evidence
    assert ev["capacity_bytes"] == 128 * MiB and ev["total_bytes"] == info.total_bytes
    assert ev["total_bytes"] < ev["at_least_bytes"] == int(128 * MiB * 0.9)
    assert ev["tolerance_percent"] == 10.0 and ev["profile"] == "simulated"
    dock(84 * MiB)  # what a FAT32 file system of an 80 MiB card reports is within 10 %
    assert get_fault(catalog, fault.id).state == "resolved"


# -- recorder.mount -------------------------------------------------------------------------------


def corrupt_image(path: Path) -> Path:
    """A FAT image whose boot sector is gone: fusefat refuses it."""
    make_fat_recorder(path, "MNT1", files=0)
    with path.open("r+b") as f:
        f.write(b"\0" * 4096)
    return path


@needs_fusefat
def test_a_recorder_failing_to_mount_twice_in_a_row_opens_a_mount_fault(tmp_path: Path) -> None:
    bad = corrupt_image(tmp_path / "bad.img")
    station = start_station(tmp_path)
    try:
        for n in (1, 2):
            station.plug(1, bad, "--serial", "USBMNT1")
            row = station.wait_state(1, "not_ready")
            assert "mount" in (row["reason"] or ""), row
            station.unplug(1)
            station.wait_state(1, "idle")
            if n == 1:  # once is not yet a pattern
                assert open_faults(station, "recorder.mount") == []
        (fault,) = open_faults(station, "recorder.mount")
        assert fault["subject"] == "USBMNT1"
        ev = fault["evidence"]
        assert ev["in_a_row"] == 2 and ev["identified_by"] == "usb_serial" and ev["limit"] == 2
        assert len(ev["events"]) == 2 and all("bad.img" in e["error"] for e in ev["events"])
        assert ev["events"][0]["bay"] == 1 and ev["events"][0]["usb_id"] == "1209:0001"

        # the same recorder, repaired, mounts cleanly: the station resolves it
        good = make_fat_recorder(tmp_path / "good.img", "MNT1", files=1, size=MiB)
        station.plug(1, good, "--serial", "USBMNT1")
        station.wait_state(1, "ready", "not_ready")
        wait_for(lambda: not open_faults(station, "recorder.mount"), 30, "the fault resolved")
        (row,) = station.query(
            "SELECT resolved_by, resolve_note FROM faults WHERE id = ?", (fault["id"],)
        )
        assert row["resolved_by"] == "station" and "mounted cleanly" in row["resolve_note"]
        assert station.query("SELECT * FROM mount_failures") == []
    finally:
        assert stop_station(station) == 0, station.log.read_text()


@needs_fusefat
def test_without_a_usb_serial_failed_mounts_are_counted_by_the_port(tmp_path: Path) -> None:
    bad = corrupt_image(tmp_path / "bad.img")
    config = tmp_path / "recdock.toml"
    config.write_text(CONFIG.format(slots=2) + "[faults]\nmount_failures_in_a_row = 1\n")
    station = start_station(tmp_path, config=config)
    try:
        station.plug(2, bad)
        station.wait_state(2, "not_ready")
        wait_for(lambda: open_faults(station, "recorder.mount"), 30, "the mount fault")
        (fault,) = open_faults(station, "recorder.mount")
        assert fault["subject"] == "port sim-bay-2 1209:0001"
        assert fault["evidence"]["identified_by"] == "usb_port"
    finally:
        assert stop_station(station) == 0, station.log.read_text()


@needs_fusefat
def test_the_running_station_reads_a_docked_recorders_battery_and_opens_the_fault(
    tmp_path: Path,
) -> None:
    """The daemon's schedule end to end, on its own (real) clock: settings of seconds, and a
    wait on the fault with a deadline."""
    image = make_fat_recorder(tmp_path / "r.img", "CHG3", files=1, size=MiB, battery=50.0)
    config = tmp_path / "recdock.toml"
    config.write_text(
        CONFIG.format(slots=2)
        + "[faults]\nbattery_reread_minutes = 0.02\nbattery_full_dock_hours = 0.001\n"
    )
    station = start_station(tmp_path, config=config)
    try:
        station.plug(1, image)
        station.wait_state(1, "ready", "not_ready")
        wait_for(lambda: open_faults(station, "battery.charge"), 60, "the charge fault")
        (fault,) = open_faults(station, "battery.charge")
        assert fault["subject"] == "CHG3" and fault["evidence"]["battery_pct"] == 50.0
        assert fault["evidence"]["readings"][0]["battery_pct"] == 50.0
        (docked,) = station.query("SELECT * FROM recorder_history WHERE device_serial = 'CHG3'")
        assert docked["battery_last_pct"] == 50.0 and docked["undocked_at"] is None
        station.unplug(1)
        station.wait_state(1, "idle")
    finally:
        assert stop_station(station) == 0, station.log.read_text()
