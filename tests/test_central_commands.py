"""The centre's signing key, its commands to stations and the fault lifecycle at the centre.

The station side is the station's own code (agent.catalog.faults, the audit log), its messages
signed as they leave; the broker is a real Mosquitto running the shipped configuration and ACL
(tests/mosquitto.py), the centre the real consumer with its command publisher. A station's
client subscribes to its own command topics as the station would, and checks each command
with the centre's public key (sync/wire/commands.py).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog, audit, outbox
from agent.catalog.faults import report_fault
from central.actions import (
    ActionError,
    CentralContext,
    NotFound,
    NotOpen,
    acknowledge_fault,
    resolve_fault,
)
from central.admin import admin
from central.catalog import CentralCatalog
from central.consumer import MqttConsumer
from central.enrolment import StationKeys
from central.signing_key import load_centre_key
from sync.wire import commands
from sync.wire.signing import parse_public_key, public_key_text
from tests.mosquitto import Mosquitto, Subscriber
from tests.recorders import wait_for
from tests.signing_keys import new_key, queued, register
from tests.test_mqtt import needs_mosquitto, needs_openssl

STATION = "ST-K"
KEY = new_key()  # the station's
CENTRE_KEY = new_key()  # the centre's


@pytest.fixture
def station(home: Path) -> Catalog:
    return Catalog(home / "catalog.db", station_id=STATION)


@pytest.fixture
def central(central_db: str) -> MqttConsumer:
    catalog = CentralCatalog(central_db)
    keys = StationKeys(register({STATION: KEY}))
    from central.consumer import ConsumerSettings

    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=keys, signing_key=CENTRE_KEY)
    yield consumer
    catalog.close()


def send_new(station: Catalog, central: MqttConsumer, sent: set[int]) -> None:
    """Feed the centre what the station queued since the last call (as the broker would)."""
    for m, (topic, payload) in zip(
        outbox.pending(station.conn, limit=10_000), queued(station, KEY), strict=True
    ):
        if m.id not in sent:
            sent.add(m.id)
            outcome = central.handle(topic, payload, retained=m.retain)
            assert outcome == ("stored" if m.payload else "cleared")


def command_rows(catalog: CentralCatalog) -> list[dict]:
    from central.catalog import commands as outbox_rows

    return list(reversed(outbox_rows.listing(catalog.conn)))


# -- the key ---------------------------------------------------------------------------------


def test_keygen_makes_a_private_key_and_prints_its_public_key_for_the_stations(
    tmp_path: Path,
) -> None:
    path = tmp_path / "creds" / "central-signing-key"
    made = CliRunner().invoke(admin, ["keygen", "--key", str(path)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = made.stdout.strip().removeprefix('centre_public_key = "').removesuffix('"')
    assert public == public_key_text(load_centre_key(path))
    parse_public_key(public)
    again = CliRunner().invoke(admin, ["keygen", "--key", str(path)])
    assert again.exit_code == 3 and "exists already" in again.output
    shown = CliRunner().invoke(admin, ["keygen", "--key", str(path), "--show"])
    assert shown.exit_code == 0 and public in shown.stdout


def test_a_key_others_can_read_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "central-signing-key"
    assert CliRunner().invoke(admin, ["keygen", "--key", str(path)]).exit_code == 0
    path.chmod(0o644)
    shown = CliRunner().invoke(admin, ["keygen", "--key", str(path), "--show"])
    assert shown.exit_code == 3
    assert str(path) in shown.output and "readable by others" in shown.output


# -- the lifecycle in the catalog (no broker) ----------------------------------------------------


def test_a_station_fault_arrives_reported_and_asks_for_the_received_command(
    station: Catalog, central: MqttConsumer
) -> None:
    report_fault(station, "store.full", "store", "the store reached its reserve")
    send_new(station, central, set())
    [fault] = central.catalog.faults()
    assert fault["lifecycle"] == "reported" and fault["origin"] == "station"
    assert fault["ref"] == f"{STATION}/{fault['id']}"
    [command] = command_rows(central.catalog)
    assert command["action"] == "received" and command["station"] == STATION
    assert command["topic"] == commands.topic(STATION, "fault", fault["id"])
    assert command["doc"]["fault_id"] == fault["id"]


def test_acknowledge_and_resolve_record_who_when_and_queue_the_commands(
    station: Catalog, central: MqttConsumer
) -> None:
    report_fault(station, "store.full", "store", "the store reached its reserve")
    send_new(station, central, set())
    ctx = CentralContext(central.catalog)
    ref = central.catalog.faults()[0]["ref"]
    acked = acknowledge_fault(ctx, ref, "li.supervisor")
    assert acked["lifecycle"] == "acknowledged"
    assert acked["acknowledged_by"] == "li.supervisor" and acked["acknowledged_at"]
    done = resolve_fault(ctx, ref, "li.supervisor", "replaced the store disk")
    assert done["lifecycle"] == "resolved" and done["resolved_by"] == "li.supervisor"
    assert done["resolution_note"] == "replaced the store disk" and done["resolved_at"]
    actions = [c["action"] for c in command_rows(central.catalog)]
    assert actions == ["received", "acknowledge", "resolve"]
    assert command_rows(central.catalog)[-1]["doc"]["note"] == "replaced the store disk"
    with pytest.raises(NotOpen):
        acknowledge_fault(ctx, ref, "li.supervisor")
    with pytest.raises(NotFound):
        resolve_fault(ctx, f"{STATION}/no-such-fault", "li", "x")
    with pytest.raises(ActionError, match="needs a note"):
        resolve_fault(ctx, ref, "li", "  ")


def test_a_fault_that_opens_again_starts_its_lifecycle_anew(
    station: Catalog, central: MqttConsumer
) -> None:
    from agent.catalog.faults import resolve_fault as station_resolves

    sent: set[int] = set()
    fault = report_fault(station, "store.full", "store", "the store reached its reserve")
    send_new(station, central, sent)
    ctx = CentralContext(central.catalog)
    acknowledge_fault(ctx, f"{STATION}/{fault.id}", "li")
    station_resolves(station, "store.full", "store")
    report_fault(station, "store.full", "store", "the store reached its reserve again")
    send_new(station, central, sent)
    [again] = central.catalog.faults()
    assert again["lifecycle"] == "reported" and again["acknowledged_by"] is None


# -- on the real broker ------------------------------------------------------------------------


def retained_now(broker: Mosquitto, topic: str, identity: str = STATION) -> list[bytes]:
    """What a client connecting now receives retained on ``topic`` (nothing once cleared)."""
    sub = Subscriber(broker, topic, client_id="probe", identity=identity)
    try:
        # the broker sends the retained copy right after the SUBACK, before anything published
        # later on the topic: a marker published now bounds the wait
        sub.client.publish(topic, b"marker", qos=1).wait_for_publish(10)
        wait_for(lambda: (b"marker", False) in sub.on(topic), what="the marker")
        return [p for p, retained in sub.on(topic) if retained]
    finally:
        sub.close()


@needs_mosquitto
@needs_openssl
def test_commands_reach_the_station_signed_and_are_cleared_once_applied(
    tmp_path: Path, station: Catalog, central_db: str
) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        catalog = CentralCatalog(central_db)
        keys = StationKeys(register({STATION: KEY}))
        consumer = MqttConsumer(
            catalog, broker.consumer_settings(), keys=keys, signing_key=CENTRE_KEY
        )
        consumer.start()
        sender = broker.client(STATION, "st-k")
        inbox = Subscriber(
            broker, f"recdock/{STATION}/command/#", client_id="st-k-in", identity=STATION
        )
        try:
            assert consumer.wait_subscribed(10)
            sender.connect("127.0.0.1", broker.port)
            sender.loop_start()
            sent: set[int] = set()

            def publish_new() -> None:
                rows = outbox.pending(station.conn, limit=10_000)
                for m, (topic, payload) in zip(rows, queued(station, KEY), strict=True):
                    if m.id not in sent:
                        sent.add(m.id)
                        sender.publish(topic, payload, qos=1, retain=m.retain).wait_for_publish(10)

            fault = report_fault(station, "store.full", "store", "the store reached its reserve")
            publish_new()
            topic = commands.topic(STATION, "fault", fault.id)
            centre_public = parse_public_key(public_key_text(CENTRE_KEY))

            def command(action: str) -> dict | None:
                for payload, _ in inbox.on(topic):
                    if payload:
                        doc = commands.verify_command(centre_public, topic, payload)
                        if doc["action"] == action:
                            return doc
                return None

            received = wait_for(lambda: command("received"), what="the received command")
            assert received["fault_id"] == fault.id and received["by"] == "recdock-central"
            ctx = CentralContext(catalog, consumer.commands)
            acknowledge_fault(ctx, f"{STATION}/{fault.id}", "li.supervisor")
            acked = wait_for(lambda: command("acknowledge"), what="the acknowledge command")
            assert acked["by"] == "li.supervisor"
            # the station applies the command: its signed audit entry names the command_id
            with station.tx():
                applied = {"command_id": acked["command_id"], "by": "li.supervisor"}
                audit.append(station, "fault.acknowledged", fault.id, applied)
            publish_new()
            wait_for(lambda: inbox.on(topic)[-1][0] == b"", what="the command topic cleared")
            assert retained_now(broker, topic) == [], "nothing retained once applied"
        finally:
            inbox.close()
            sender.disconnect()
            sender.loop_stop()
            consumer.stop()
    applied = [c for c in command_rows(catalog) if c["action"] == "acknowledge"][0]
    assert applied["applied_at"] and applied["cleared_at"]
    catalog.close()


@needs_mosquitto
@needs_openssl
def test_a_command_decided_while_the_broker_is_away_is_sent_when_it_returns(
    tmp_path: Path, station: Catalog, central: MqttConsumer
) -> None:
    report_fault(station, "store.full", "store", "the store reached its reserve")
    send_new(station, central, set())  # received before any broker: queued, unsent
    ctx = CentralContext(central.catalog)
    acknowledge_fault(ctx, central.catalog.faults()[0]["ref"], "li")
    assert all(c["published_at"] is None for c in command_rows(central.catalog))
    with Mosquitto(tmp_path / "broker") as broker:
        keys = StationKeys(register({STATION: KEY}))
        consumer = MqttConsumer(
            central.catalog, broker.consumer_settings(), keys=keys, signing_key=CENTRE_KEY
        )
        consumer.start()
        try:
            assert consumer.wait_subscribed(10)
            wait_for(
                lambda: all(c["published_at"] for c in command_rows(central.catalog)),
                what="both commands published",
            )
            topic = command_rows(central.catalog)[0]["topic"]
            inbox = Subscriber(broker, topic, client_id="st-k-late", identity=STATION)
            try:
                [(payload, retained)] = wait_for(lambda: inbox.on(topic), what="retained")
            finally:
                inbox.close()
            assert retained and json.loads(payload)["action"] == "acknowledge"
        finally:
            consumer.stop()


def test_a_fault_the_station_resolves_itself_settles_its_commands(
    station: Catalog, central: MqttConsumer
) -> None:
    from agent.catalog.faults import resolve_fault as station_resolves
    from central.catalog import commands as outbox_rows

    sent: set[int] = set()
    report_fault(station, "store.full", "store", "the store reached its reserve")
    send_new(station, central, sent)
    assert outbox_rows.to_clear(central.catalog.conn) == []
    station_resolves(station, "store.full", "store")
    send_new(station, central, sent)
    [settled] = outbox_rows.to_clear(central.catalog.conn)
    assert settled["latest"] and settled["topic"] == command_rows(central.catalog)[0]["topic"]


def test_the_server_reads_its_key_from_the_option_or_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from central.app import create_app
    from central.consumer import ConsumerSettings
    from tests.central_server import TOKENS

    creds = tmp_path / "creds"
    assert CliRunner().invoke(admin, ["keygen", "--key", str(creds / "central-signing-key")])
    expected = public_key_text(load_centre_key(creds / "central-signing-key"))
    mqtt = ConsumerSettings(port=1)
    keys = register({STATION: KEY})
    given = create_app(tmp_path / "a", TOKENS, mqtt=mqtt, station_keys=keys,
                       signing_key=creds / "central-signing-key")  # fmt: skip
    assert public_key_text(given.state.consumer.commands.key) == expected
    assert given.state.actions.commands is given.state.consumer.commands
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    from_credential = create_app(tmp_path / "b", TOKENS, mqtt=mqtt, station_keys=keys)
    assert public_key_text(from_credential.state.consumer.commands.key) == expected
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    keyless = create_app(tmp_path / "c", TOKENS, mqtt=mqtt, station_keys=keys)
    assert keyless.state.consumer.commands.key is None
    for app in (given, from_credential, keyless):
        app.state.catalog.close()
