"""The centre's register at the station (agent/station/register.py): kept from the centre's
signed ``register`` commands (sync/mqtt/commands.py), shown beside ``[[devices]]`` (a conflict
is a fault, neither side is picked), and a docked recorder the centre has lost or in
maintenance is flagged at its bay and in its health message."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.catalog import Catalog, register
from agent.catalog.faults import list_faults
from agent.config import Config, DeviceEntry
from agent.station.register import check_conflicts
from sync.mqtt.commands import handle
from sync.wire import commands
from tests.conftest import needs_fusefat
from tests.recorders import make_fat_recorder
from tests.test_station import start_station, stop_station

CENTRE = Ed25519PrivateKey.generate()
MiB = 1024 * 1024


def set_register(catalog: Catalog, serial: str, lifecycle: str, **extra: str) -> str:
    """The centre's signed command, through the station's own verification."""
    topic = commands.topic(catalog.station_id, "register", serial)
    doc = {
        "command_id": f"reg-{serial}-{lifecycle}",
        "kind": "register",
        "station": catalog.station_id,
        "action": "set",
        "at": "2026-12-02T01:00:00+00:00",
        "by": "admin wang",
        "serial": serial,
        "lifecycle": lifecycle,
        **extra,
    }
    return handle(catalog, CENTRE.public_key(), topic, commands.sign_command(CENTRE, topic, doc))


def test_a_register_disagreeing_with_devices_is_a_fault_that_picks_neither(home: Path) -> None:
    catalog = Catalog(home / "catalog.db", station_id="ST-1")
    config = Config(
        station_id="ST-1",
        devices=[DeviceEntry(serial="R1", profile="generic-msc", officer="100001", unit="一中队")],
    )
    assert set_register(catalog, "R1", "in_service", officer="100002", unit="一中队") == (
        "register R1: in_service"
    )
    check_conflicts(catalog, config)
    (fault,) = [f for f in list_faults(catalog) if f.kind == "register.conflict"]
    assert fault.evidence["officer"] == {"station": "100001", "centre": "100002"}
    assert "unit" not in fault.evidence
    assert config.registered()["R1"].officer == "100001"  # nothing was overwritten
    assert register.entry(catalog, "R1")["officer"] == "100002"
    set_register(catalog, "R1", "in_maintenance", officer="100001")
    check_conflicts(catalog, config)
    assert [f for f in list_faults(catalog) if f.kind == "register.conflict"] == []
    catalog.close()


@needs_fusefat
def test_a_docked_recorder_the_centre_has_lost_is_flagged_at_its_bay(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "home" / "catalog.db", station_id="st-test")
    set_register(catalog, "SIMLOST", "lost")
    catalog.close()
    image = make_fat_recorder(tmp_path / "r.img", "SIMLOST", files=1, size=MiB)
    station = start_station(tmp_path)
    try:
        station.plug(3, image)
        bay = station.wait_state(3, "ready", "not_ready")
        assert bay["state"] == "not_ready" and "register: lost at the centre" in bay["reason"]
        (health,) = station.query(
            "SELECT payload FROM outbox WHERE topic = 'recdock/st-test/recorder/SIMLOST'"
        )
        checks = json.loads(health["payload"])["checks"]
        assert checks["register"]["ok"] is False and checks["register"]["value"] == "lost"
    finally:
        assert stop_station(station) == 0, station.log.read_text()
