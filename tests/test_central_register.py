"""The recorder register at the centre: kept by an administrator (``recdock-central register``,
central/actions.py), pushed to every station as signed ``register``/``set`` commands, shown in
the recorder list with any conflict, and a lost or in-maintenance recorder that docks is a
centre fault at the station it docked at.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from central import views
from central.actions import ActionError, CentralContext, push_register, set_register_entry
from central.admin import admin
from central.catalog import CentralCatalog
from central.catalog import commands as command_rows
from central.consumer import MqttConsumer
from central.enrolment import StationKeys
from central.options import DATABASE_ENV
from central.rules import evaluate
from central.settings import CentreSettings
from sync.wire import commands, topics
from sync.wire.chain import canonical
from sync.wire.signing import parse_public_key, public_key_text, sign_payload
from tests.mosquitto import Mosquitto, Subscriber
from tests.recorders import wait_for
from tests.signing_keys import new_key, register
from tests.test_mqtt import needs_mosquitto, needs_openssl

KEYS = {name: new_key() for name in ("ST-1", "ST-2", "ST-3")}
CENTRE_KEY = new_key()


@pytest.fixture
def central(tmp_path: Path, central_db: str) -> MqttConsumer:
    from central.consumer import ConsumerSettings

    # the server's own catalog, where `recdock-central register --data` finds it
    sqlite = "://" not in central_db
    catalog = CentralCatalog(tmp_path / "data" / "central-catalog.db" if sqlite else central_db)
    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=StationKeys(register(KEYS)))
    yield consumer
    catalog.close()


def status(central: MqttConsumer, station: str) -> None:
    doc = {"station": station, "state": "online", "at": datetime.now(UTC).isoformat()}
    topic = topics.status(station)
    assert central.handle(topic, sign_payload(KEYS[station], topic, canonical(doc).encode()))


def docks(central: MqttConsumer, station: str, serial: str, **fields) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    doc = {"station": station, "device_serial": serial, "at": at, "bay": 2, **fields}
    topic = topics.recorder(station, serial)
    payload = sign_payload(KEYS[station], topic, canonical(doc).encode())
    assert central.handle(topic, payload, retained=True) == "stored"


def sent(catalog: CentralCatalog, kind: str = "register") -> list[dict]:
    return [
        c for c in reversed(command_rows.listing(catalog.conn, limit=1000)) if c["kind"] == kind
    ]


def test_register_set_on_the_command_line_keeps_the_entry_and_queues_it_for_every_station(
    central: MqttConsumer, tmp_path: Path, central_db: str
) -> None:
    status(central, "ST-1")
    status(central, "ST-2")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    # PostgreSQL's URL in the environment, as a service's unit file would give it
    env = {DATABASE_ENV: central_db} if "://" in central_db else {}
    args = ["register", "set", "R-9", "--data", str(data), "--lifecycle", "in_service",
            "--officer", "O-1", "--unit", "U-1", "--by", "admin.wang"]  # fmt: skip
    done = CliRunner().invoke(admin, args, env=env)
    assert done.exit_code == 0, done.output
    listed = CliRunner().invoke(admin, ["register", "list", "--data", str(data), "--json"], env=env)
    [entry] = json.loads(listed.stdout)
    assert (entry["serial"], entry["lifecycle"], entry["officer"], entry["unit"]) == (
        "R-9", "in_service", "O-1", "U-1"
    )  # fmt: skip
    assert entry["updated_by"] == "admin.wang"
    cmds = sent(central.catalog)
    assert [c["station"] for c in cmds] == ["ST-1", "ST-2"]
    assert cmds[0]["topic"] == commands.topic("ST-1", "register", "R-9")
    assert {k: cmds[0]["doc"][k] for k in ("serial", "lifecycle", "officer", "unit", "by")} == {
        "serial": "R-9", "lifecycle": "in_service", "officer": "O-1", "unit": "U-1",
        "by": "admin.wang",
    }  # fmt: skip
    bad = CliRunner().invoke(admin, [*args[:6], "broken", *args[7:]])
    assert bad.exit_code == 2 and "broken" in bad.output


def test_a_station_new_to_the_centre_gets_the_register_once(central: MqttConsumer) -> None:
    ctx = CentralContext(central.catalog)
    status(central, "ST-1")
    set_register_entry(ctx, "R-1", lifecycle="in_service", by="admin", unit="U-1")
    set_register_entry(ctx, "R-2", lifecycle="retired", by="admin")
    assert push_register(ctx) == 0, "ST-1 has both already"
    status(central, "ST-3")
    assert push_register(ctx) == 2
    assert push_register(ctx) == 0
    set_register_entry(ctx, "R-1", lifecycle="lost", by="admin")
    assert [(c["station"], c["doc"]["lifecycle"]) for c in sent(central.catalog)][-2:] == [
        ("ST-1", "lost"), ("ST-3", "lost")
    ]  # fmt: skip
    with pytest.raises(ActionError, match="lifecycle"):
        set_register_entry(ctx, "R-1", lifecycle="stolen", by="admin")


def test_a_lost_recorder_that_docks_is_a_critical_fault_at_its_station(
    central: MqttConsumer,
) -> None:
    ctx = CentralContext(central.catalog)
    set_register_entry(ctx, "R-LOST", lifecycle="lost", by="admin")
    set_register_entry(ctx, "R-MAINT", lifecycle="in_maintenance", by="admin")
    set_register_entry(ctx, "R-OK", lifecycle="in_service", by="admin")
    for serial in ("R-LOST", "R-MAINT", "R-OK"):
        docks(central, "ST-2", serial, ready=True)
    evaluate(central.catalog, CentreSettings())
    found = {f["device"]: f for f in central.catalog.faults() if f["origin"] == "centre"}
    assert set(found) == {"R-LOST", "R-MAINT"}
    assert (found["R-LOST"]["rule"], found["R-LOST"]["severity"]) == (
        "recorder.docked_while_lost", "critical"
    )  # fmt: skip
    assert found["R-LOST"]["station"] == "ST-2" and found["R-LOST"]["evidence"]["bay"] == 2
    assert found["R-MAINT"]["rule"] == "recorder.docked_in_maintenance"
    rows = {r["serial"]: r for r in views.recorder_list(central.catalog)}
    assert rows["R-LOST"]["health"] == "unhealthy" and rows["R-LOST"]["lifecycle"] == "lost"
    set_register_entry(ctx, "R-LOST", lifecycle="in_service", by="admin", note="found")
    assert found["R-LOST"]["ref"] in evaluate(central.catalog, CentreSettings())["resolved"]


def test_the_register_is_shown_beside_what_the_station_read_and_a_conflict_is_shown(
    central: MqttConsumer,
) -> None:
    set_register_entry(CentralContext(central.catalog), "R-1", lifecycle="in_service",
                       by="admin", officer="O-1", unit="U-1")  # fmt: skip
    docks(central, "ST-1", "R-1", officer="O-2", unit="U-1")
    [row] = views.recorder_list(central.catalog)
    assert (row["officer"], row["unit"], row["registered"]) == ("O-1", "U-1", True)
    assert row["register_conflict"] == {"officer": {"register": "O-1", "station": "O-2"}}


@needs_mosquitto
@needs_openssl
def test_each_station_finds_its_register_entry_retained_and_signed_by_the_centre(
    tmp_path: Path, central: MqttConsumer
) -> None:
    status(central, "ST-1")
    ctx = CentralContext(central.catalog)
    set_register_entry(ctx, "R-7", lifecycle="in_maintenance", by="admin", unit="U-3")
    with Mosquitto(tmp_path / "broker") as broker:
        keys = StationKeys(register(KEYS))
        settings = broker.consumer_settings()
        consumer = MqttConsumer(central.catalog, settings, keys=keys, signing_key=CENTRE_KEY)
        consumer.start()
        try:
            assert consumer.wait_subscribed(10)
            wait_for(lambda: all(c["published_at"] for c in sent(central.catalog)),
                     what="the register command published")  # fmt: skip
            topic = commands.topic("ST-1", "register", "R-7")
            inbox = Subscriber(broker, topic, client_id="st-1-in", identity="ST-1")
            try:
                [(payload, retained)] = wait_for(lambda: inbox.on(topic), what="retained")
            finally:
                inbox.close()
        finally:
            consumer.stop()
    doc = commands.verify_command(parse_public_key(public_key_text(CENTRE_KEY)), topic, payload)
    assert retained and (doc["serial"], doc["lifecycle"], doc["unit"]) == (
        "R-7", "in_maintenance", "U-3"
    )  # fmt: skip
