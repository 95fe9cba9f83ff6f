"""The fault rules on the station itself (agent/station/health.py, docs/faults.md), with the
sensors seam's fake chosen explicitly (agent/seams/health/simulated.py) and the simulated
clock; the real readers (agent/seams/health/system.py) read sysfs files of the same form; and
the daemon (`recdock run --simulate`) applies the rules and notices an unclean end."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.catalog import Catalog
from agent.catalog.faults import get_fault, list_faults, report_fault
from agent.config import Config
from agent.config.faults import FaultsConfig
from agent.config.links import MqttConfig
from agent.seams.clock.simulated import SimulatedClock
from agent.seams.health import DiskHealth, Reading
from agent.seams.health.simulated import SimulatedSensors
from agent.seams.health.system import SystemSensors, parse_smart
from agent.station.health import StationHealth
from agent.station.linkstate import read_link_state
from sync.services import MqttService
from tests.conftest import needs_fusefat
from tests.mosquitto import Mosquitto
from tests.recorders import wait_for
from tests.signing_keys import home_key
from tests.test_mqtt import needs_mosquitto, needs_openssl
from tests.test_station import start_station, stop_station

T0 = datetime.now(UTC)


@pytest.fixture
def catalog(home: Path) -> Catalog:
    c = Catalog(home / "catalog.db", station_id="ST-1")
    yield c
    c.close()


def opened(catalog: Catalog) -> dict[str, object]:
    return {f.kind: f for f in list_faults(catalog)}


def health(home: Path, reading: Reading, *, synchronised: bool = True, **faults) -> StationHealth:  # noqa: ANN003
    config = Config(faults=FaultsConfig(**faults))
    return StationHealth(config, home, SimulatedSensors(reading), SimulatedClock(synchronised))


def test_heat_under_voltage_and_a_failing_disk_open_faults_with_their_readings(
    home: Path, catalog: Catalog
) -> None:
    bad = Reading(
        temperature_c=85.5,
        throttled=0x50005,
        disk=DiskHealth("/dev/sda", False, "X: SMART overall-health FAILED"),
    )
    health(home, bad).check(catalog, T0)
    found = opened(catalog)
    assert found["station.temperature"].evidence == {"temperature_c": 85.5, "limit_c": 80.0}
    assert found["station.undervoltage"].evidence == {
        "throttled": "0x50005",
        "under_voltage_now": True,
    }
    assert found["station.disk_smart"].severity == "critical"
    assert found["station.disk_smart"].evidence["device"] == "/dev/sda"
    fine = Reading(temperature_c=50.0, throttled=0, disk=DiskHealth("/dev/sda", True, "ok"))
    station = health(home, fine, clear_after_minutes=60)
    station.check(catalog, T0 + timedelta(minutes=1))  # gone: the wait starts
    assert set(opened(catalog)) >= {"station.temperature", "station.undervoltage"}
    station.check(catalog, T0 + timedelta(minutes=62))
    assert not {"station.temperature", "station.undervoltage", "station.disk_smart"} & set(
        opened(catalog)
    )
    assert get_fault(catalog, found["station.temperature"].id).resolved_by == "station"


def test_a_low_store_disk_opens_a_warning(home: Path, catalog: Catalog) -> None:
    (home / "store").mkdir(parents=True)
    health(home, Reading(), store_low_percent=100).check(catalog, T0)
    fault = opened(catalog)["station.disk"]
    assert fault.severity == "warning" and fault.evidence["limit_percent"] == 100
    assert 0 < fault.evidence["free_bytes"] < fault.evidence["total_bytes"]


def test_an_unsynchronised_clock_opens_a_fault_only_after_its_grace(
    home: Path, catalog: Catalog
) -> None:
    station = health(home, Reading(), synchronised=False, ntp_unsynchronised_minutes=30)
    station.check(catalog, T0)
    station.check(catalog, T0 + timedelta(minutes=29))
    assert "station.clock" not in opened(catalog)
    station.check(catalog, T0 + timedelta(minutes=31))
    assert opened(catalog)["station.clock"].evidence["unsynchronised_since"] == T0.isoformat()


def test_messages_waiting_in_the_outbox_too_long_open_an_outbox_fault(
    home: Path, catalog: Catalog
) -> None:
    config = Config(mqtt=MqttConfig(enabled=True, host="broker.example"))
    station = StationHealth(config, home, SimulatedSensors(), SimulatedClock(True))
    report_fault(catalog, "store", "store", "full")  # something waits in the outbox
    station.check(catalog, datetime.now(UTC) + timedelta(minutes=30))
    assert "station.outbox" not in opened(catalog)
    station.check(catalog, datetime.now(UTC) + timedelta(minutes=61))
    fault = opened(catalog)["station.outbox"]
    assert fault.evidence["broker"] == "broker.example:1883" and fault.evidence["backlog"] >= 1
    assert "station.broker" not in opened(catalog)  # the link's own state says nothing here


def link_state(home: Path):  # noqa: ANN201
    return read_link_state(home)


@needs_mosquitto
@needs_openssl
def test_a_broker_link_down_too_long_opens_a_fault_that_clears_after_the_hold(
    home: Path, catalog: Catalog, tmp_path: Path
) -> None:
    home_key(home)
    with Mosquitto(tmp_path / "broker") as broker:
        config = Config(
            station_id="ST-1",
            mqtt=broker.mqtt_config("ST-1"),
            faults=FaultsConfig(broker_unreachable_minutes=60, clear_after_minutes=60),
        )
        service = MqttService(config, home)
        service.start()
        try:
            station = StationHealth(config, home, SimulatedSensors(), SimulatedClock(True))
            wait_for(lambda: link_state(home).connected, 30, "the link up")
            station.check(catalog, datetime.now(UTC) + timedelta(hours=3))
            assert "station.broker" not in opened(catalog)  # up: however long

            broker.stop()
            wait_for(lambda: not link_state(home).connected, 30, "the link down")
            down = datetime.fromisoformat(link_state(home).since)
            station.check(catalog, down + timedelta(minutes=59))
            assert "station.broker" not in opened(catalog)
            station.check(catalog, down + timedelta(minutes=61))
            fault = opened(catalog)["station.broker"]
            assert fault.evidence["disconnected_since"] == down.isoformat()
            assert fault.evidence["broker"] == f"127.0.0.1:{broker.port}"
            assert fault.evidence["limit_minutes"] == 60 and fault.evidence["last_connected_at"]

            broker.start()
            wait_for(lambda: link_state(home).connected, 60, "the link up again")
            up = datetime.fromisoformat(link_state(home).since)
            station.check(catalog, up + timedelta(minutes=1))  # gone: the hold starts
            assert get_fault(catalog, fault.id).state != "resolved"
            station.check(catalog, up + timedelta(minutes=62))
            assert get_fault(catalog, fault.id).state == "resolved"
        finally:
            service.stop()


def test_the_real_readers_read_the_pis_sysfs_files(tmp_path: Path) -> None:
    (tmp_path / "temp").write_text("81234\n")
    (tmp_path / "get_throttled").write_text("50005\n")
    sensors = SystemSensors(thermal=tmp_path / "temp", throttled=tmp_path / "get_throttled")
    assert sensors.temperature() == pytest.approx(81.234)
    assert sensors.throttled_flags() == 0x50005
    missing = SystemSensors(thermal=tmp_path / "none", throttled=tmp_path / "none")
    assert missing.temperature() is None


def test_smartctls_verdict_is_read_from_its_json() -> None:
    failed = json.dumps({"model_name": "WD Blue", "smart_status": {"passed": False}})
    assert parse_smart("/dev/sda", failed) == DiskHealth(
        "/dev/sda", False, "WD Blue: SMART overall-health FAILED"
    )
    assert parse_smart("/dev/sda", json.dumps({"smart_status": {"passed": True}})).passed
    assert parse_smart("/dev/mmcblk0", json.dumps({"smartctl": {"exit_status": 1}})) is None
    assert parse_smart("/dev/sda", "not json") is None


@needs_fusefat
def test_the_daemon_applies_the_station_rules_and_notices_an_unclean_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    (home / "run" / "sensors.json").write_text(json.dumps({"temperature_c": 91.0}))
    station = start_station(tmp_path)

    def kinds() -> set[str]:
        return {
            r["kind"] for r in station.query("SELECT kind FROM faults WHERE resolved_at IS NULL")
        }

    wait_for(lambda: "station.temperature" in kinds(), 30, "the temperature fault")
    station.proc.send_signal(signal.SIGKILL)  # as the systemd watchdog does
    station.proc.wait(10)
    station = start_station(tmp_path)
    try:
        wait_for(lambda: "station.restart" in kinds(), 30, "the restart fault")
        (row,) = station.query("SELECT evidence FROM faults WHERE kind = 'station.restart'")
        assert json.loads(row["evidence"])["previous_run"]["pid"] is not None
    finally:
        assert stop_station(station) == 0, station.log.read_text()


@needs_fusefat
def test_the_empty_bays_show_a_fault_the_centre_has_not_confirmed(tmp_path: Path) -> None:
    from tests.test_station import BAY_PINS, CONFIG

    config = tmp_path / "recdock.toml"
    config.write_text(CONFIG.format(slots=2) + "[faults]\nunreported_after_hours = 0.0005\n")
    catalog = Catalog(tmp_path / "home" / "catalog.db", station_id="st-test")
    fault = report_fault(catalog, "recorder.firmware", "SIM9", "firmware 1.0 not approved")
    catalog.close()
    station = start_station(tmp_path, config=config)
    try:
        started = station.pins()[-1]["t"] if station.pins() else 0
        wait_for(lambda: any(s == 1 for _, s in station.pin(BAY_PINS[2], started)), 30, "bay 2 lit")
        bay = station.bay(2)
        assert bay["state"] == "idle" and bay["led"] == "fault_unreported", bay
        assert station.status()["unreported_faults"] == [fault.id]
        assert "faults not reported to the centre" in station.log.read_text()
    finally:
        assert stop_station(station) == 0, station.log.read_text()
