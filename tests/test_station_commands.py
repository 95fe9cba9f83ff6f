"""The centre's signed commands at the station (sync/mqtt/commands.py), through a real Mosquitto
with the shipped ACL: the station subscribes to its own command topics, acts only on what the
centre's key signed, applies each command once, audits it by command_id, and a forged command
opens a security fault and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.catalog import Catalog, register
from agent.catalog import faults as F
from agent.config import Config
from sync.mqtt.commands import SECURITY_KIND
from sync.services import MqttService
from sync.wire import commands
from sync.wire.signing import public_key_text
from tests.mosquitto import CENTRAL, Mosquitto, Subscriber
from tests.recorders import wait_for
from tests.signing_keys import home_key
from tests.test_broker import connect, stop
from tests.test_mqtt import needs_mosquitto, needs_openssl

pytestmark = [needs_mosquitto, needs_openssl]

CENTRE = Ed25519PrivateKey.generate()
STATION = "ST-1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    home_key(home)
    c = Catalog(home / "catalog.db", station_id=STATION)
    yield c
    c.close()


def station(broker: Mosquitto, home: Path) -> MqttService:
    mqtt = broker.mqtt_config(STATION, centre_public_key=public_key_text(CENTRE))
    service = MqttService(Config(station_id=STATION, mqtt=mqtt), home)
    service.start()
    return service


def send(client, fid: str, action: str, cid: str, *, key=CENTRE, kind="fault", **extra) -> None:  # noqa: ANN001
    topic = commands.topic(STATION, kind, fid)
    doc = {
        "command_id": cid,
        "kind": kind,
        "station": STATION,
        "action": action,
        "at": "2026-12-02T01:00:00+00:00",
        "by": "supervisor li",
        **extra,
    }
    if kind == "fault":
        doc["fault_id"] = fid
    payload = commands.sign_command(key, topic, doc)
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)


def state(catalog: Catalog, fid: str) -> str:
    return F.get_fault(catalog, fid).state


def applied(catalog: Catalog, cid: str) -> int:
    return catalog.conn.execute(
        "SELECT count(*) FROM audit WHERE kind = 'command.applied' AND subject = ?", (cid,)
    ).fetchone()[0]


@pytest.fixture
def centre(broker: Mosquitto):
    client = broker.client(CENTRAL, "central-commander")
    assert connect(client, broker.port) == "connected"
    yield client
    stop(client)


def test_the_centres_commands_move_the_fault_and_its_retained_topic(
    broker: Mosquitto, home: Path, catalog: Catalog, centre
) -> None:
    fid = F.report_fault(catalog, "store", "store", "the store disk is full").id
    # sent while the station is away: retained, found when it connects
    send(centre, fid, "received", "c-1")
    watcher = Subscriber(broker, f"recdock/{STATION}/fault/#", client_id="watcher")
    service = station(broker, home)
    try:
        wait_for(lambda: state(catalog, fid) == "reported", what="reported")
        send(centre, fid, "acknowledge", "c-2")
        wait_for(lambda: state(catalog, fid) == "acknowledged", what="acknowledged")
        fault_topic = f"recdock/{STATION}/fault/{fid}"

        def shown() -> str | None:
            got = watcher.on(fault_topic)
            return json.loads(got[-1][0]).get("state") if got and got[-1][0] else None

        wait_for(lambda: shown() == "acknowledged", what="the retained fault acknowledged")
        assert F.get_fault(catalog, fid).acknowledged_by == "centre: supervisor li"
        # the same command delivered again is applied once
        send(centre, fid, "acknowledge", "c-2")
        send(centre, fid, "resolve", "c-3", note="disk replaced")
        wait_for(lambda: state(catalog, fid) == "resolved", what="resolved")
        assert applied(catalog, "c-2") == 1 and applied(catalog, "c-3") == 1
        assert F.get_fault(catalog, fid).resolve_note == "disk replaced"
        kinds = [
            r[0]
            for r in catalog.conn.execute(
                "SELECT kind FROM audit WHERE subject = ? ORDER BY seq", (fid,)
            )
        ]
        assert kinds == ["fault.open", "fault.reported", "fault.acknowledged", "fault.resolved"]
        wait_for(lambda: watcher.on(fault_topic)[-1][0] == b"", what="the fault topic cleared")
    finally:
        service.stop()
        watcher.close()


@pytest.mark.parametrize("forger", ["station", "centre"])
def test_a_command_the_centre_did_not_sign_is_refused_and_reported(
    broker: Mosquitto, home: Path, catalog: Catalog, centre, forger: str
) -> None:
    fid = F.report_fault(catalog, "store", "store", "the store disk is full").id
    service = station(broker, home)
    try:
        wait_for(service.link.is_connected, what="the station connected")
        if forger == "station":  # anyone holding the station's certificate may write there
            client = broker.client(STATION, "intruder")
            assert connect(client, broker.port) == "connected"
        else:
            client = centre
        send(client, fid, "resolve", "evil-1", key=Ed25519PrivateKey.generate(), note="gone")
        wait_for(lambda: F.open_kinds(catalog) >= {SECURITY_KIND}, what="the security fault")
        assert state(catalog, fid) == "open" and applied(catalog, "evil-1") == 0
        (security,) = [f for f in F.list_faults(catalog) if f.kind == SECURITY_KIND]
        assert security.severity == "critical" and "evil-1" in security.evidence["payload"]
        if client is not centre:
            stop(client)
    finally:
        service.stop()


def test_a_register_command_is_kept_as_the_centres_register(
    broker: Mosquitto, home: Path, catalog: Catalog, centre
) -> None:
    service = station(broker, home)
    try:
        send(
            centre,
            "A1",
            "set",
            "r-1",
            kind="register",
            serial="A1",
            lifecycle="lost",
            officer="P001",
            unit="traffic",
        )
        wait_for(lambda: register.entry(catalog, "A1"), what="the register entry")
        entry = register.entry(catalog, "A1")
        assert (entry["lifecycle"], entry["officer"], entry["command_id"]) == (
            "lost",
            "P001",
            "r-1",
        )
        assert applied(catalog, "r-1") == 1
    finally:
        service.stop()
