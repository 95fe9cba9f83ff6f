"""The centre keeps a station's history only under that station's signature (rule 9).

Each finding of issue 9 as an attacker on the broker would play it, and what the centre does
now: a forged event is a security alert, takes no event id and breaks nothing; a chain is
broken only when two events the station validly signed disagree, and an audited operator
action re-baselines it; faults change only through signed events; nothing is kept from a
station id that is not enrolled. Then the consumer's own limits (payload size, a bounded
queue) on a real Mosquitto, the API that shows alerts and the chain head, and the enrolment
register with ``recdock-central enrol``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from agent.catalog import Catalog, audit, outbox
from agent.catalog.faults import report_fault
from central.admin import admin
from central.app import create_app
from central.auth import load_tokens
from central.catalog import CentralCatalog
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys, load_station_keys
from sync.wire import commands, topics
from sync.wire.chain import canonical, entry_hash
from sync.wire.signing import public_key_text, sign_payload
from tests.central_db import writes_blocked
from tests.central_server import TOKEN_A, TOKEN_B, TOKENS, serve_app
from tests.mosquitto import Mosquitto
from tests.recorders import wait_for
from tests.signing_keys import new_key, queued, register, signed
from tests.test_mqtt import add_events, needs_mosquitto, needs_openssl

STATION = "ST-A"  # TOKENS gives it TOKEN_A
KEY = new_key()
FORGER = new_key()  # anyone else's key: an attacker with the broker's ear
READER = "reader-token-0123456789abcdef"


@pytest.fixture
def station(home: Path) -> Catalog:
    return Catalog(home / "catalog.db", station_id=STATION)


@pytest.fixture
def central(central_db: str) -> MqttConsumer:
    catalog = CentralCatalog(central_db)
    consumer = MqttConsumer(
        catalog, ConsumerSettings(port=1), keys=StationKeys(register({STATION: KEY}))
    )
    yield consumer
    catalog.close()


def feed(consumer: MqttConsumer, messages: list[tuple[str, bytes]]) -> list[str]:
    return [consumer.handle(t, p) for t, p in messages]


def forged_event(real: bytes, key=None, *, topic: str | None = None, **changes: object) -> bytes:
    """A copy of a real event with ``changes``, re-hashed so it is self-consistent (its
    ``prev_hash`` kept unless changed: it links to the event before it), and signed with
    ``key`` (None: unsigned) for ``topic`` (None: STATION's event topic)."""
    doc = json.loads(real)
    doc.pop("sig", None)
    doc.update(changes)
    doc["hash"] = entry_hash(
        doc["prev_hash"], doc["seq"], doc["at"], doc["kind"], doc["subject"], canonical(doc["data"])
    )
    payload = canonical(doc).encode()
    return sign_payload(key, topic or topics.event(STATION), payload) if key else payload


def chain(consumer: MqttConsumer) -> dict:
    return consumer.catalog.station(STATION)["chain"]


# -- the findings: forged history ---------------------------------------------------------------


@pytest.mark.parametrize("signer", [None, FORGER], ids=["unsigned", "another key"])
def test_a_forged_event_with_the_next_id_is_an_alert_and_the_real_one_is_stored(
    station: Catalog, central: MqttConsumer, signer
) -> None:
    """Issue 9: a forged event with the predictable id <station>:<catalog>:4 was stored, the
    real event 4 dropped as a duplicate, and event 5 marked the chain broken."""
    add_events(station, 5)
    msgs = queued(station, KEY)
    feed(central, msgs[:3])
    real4 = json.loads(msgs[3][1])
    forged = forged_event(msgs[3][1], signer, data={"i": "forged"})
    assert json.loads(forged)["event_id"] == real4["event_id"]
    assert central.handle(topics.event(STATION), forged) == "alert"
    assert feed(central, msgs[3:]) == ["stored", "stored"]
    stored = {e["seq"]: e for e in central.catalog.events(STATION)}
    assert stored[4]["data"] == real4["data"], "the real event 4 holds its place"
    assert chain(central)["state"] == "ok" and chain(central)["head_seq"] == 5
    view = central.catalog.station(STATION)
    assert view["security_alerts"] == 1 and view["duplicates"] == 0


def test_an_event_altered_after_it_was_signed_is_an_alert_not_a_broken_chain(
    station: Catalog, central: MqttConsumer
) -> None:
    """Issue 9: one event with a bad hash marked a chain broken for ever."""
    add_events(station, 3)
    msgs = queued(station, KEY)
    doc = json.loads(msgs[1][1])
    doc["data"]["i"] = 999  # the signature (over the chain hash) stays, the content changes
    assert central.handle(msgs[1][0], canonical(doc).encode()) == "alert"
    assert feed(central, msgs) == ["stored"] * 3
    assert chain(central)["state"] == "ok" and chain(central)["problem"] is None


def test_an_event_far_ahead_is_an_alert_and_leaves_no_gap(
    station: Catalog, central: MqttConsumer
) -> None:
    """Issue 9: an event with seq 10^12 left a station in ``gap``."""
    add_events(station, 2)
    msgs = queued(station, KEY)
    feed(central, msgs)
    far = forged_event(msgs[1][1], FORGER, seq=10**12, event_id=f"{STATION}:x:{10**12}")
    assert central.handle(topics.event(STATION), far) == "alert"
    assert chain(central)["state"] == "ok" and chain(central)["max_seq"] == 2


def test_an_empty_retained_payload_does_not_resolve_an_open_fault(
    station: Catalog, central: MqttConsumer
) -> None:
    """Issue 9: an empty retained message resolved a real open fault."""
    report_fault(station, "store.full", "store", "the store reached its reserve")
    feed(central, queued(station, KEY))
    [fault] = central.catalog.faults()
    assert central.handle(topics.fault(STATION, fault["id"]), b"", retained=True) == "cleared"
    assert [f["id"] for f in central.catalog.faults()] == [fault["id"]], "still open"


def test_a_status_from_a_station_that_is_not_enrolled_keeps_nothing(
    central: MqttConsumer,
) -> None:
    """Issue 9: a status message created a fake station shown ``online``."""
    for key in (None, FORGER):
        topic = topics.status("ST-FAKE")
        payload = json.dumps({"station": "ST-FAKE", "state": "online"}).encode()
        payload = sign_payload(key, topic, payload) if key else payload
        assert central.handle(topic, payload) == "alert"
    assert central.catalog.stations() == []
    assert central.catalog.station("ST-FAKE") is None
    alerts = central.catalog.alerts()
    assert {a["station"] for a in alerts} == {"ST-FAKE"} and len(alerts) == 2
    assert "not enrolled" in alerts[0]["reason"]


def test_a_signed_state_moved_to_another_topic_is_an_alert(
    station: Catalog, central: MqttConsumer
) -> None:
    """The signature covers the topic: bay 1's signed state replayed as bay 2's is refused."""
    topic1, topic2 = topics.bay(STATION, 1), topics.bay(STATION, 2)
    doc = {"station": STATION, "bay": 1, "state": "ready", "at": "2024-01-01T00:00:00+00:00"}
    signed1 = sign_payload(KEY, topic1, canonical(doc).encode())
    assert central.handle(topic1, signed1) == "stored"
    moved = json.loads(signed1)
    moved["bay"] = 2
    assert central.handle(topic2, canonical(moved).encode()) == "alert"
    assert [b["bay"] for b in central.catalog.bays(STATION)] == [1]


def test_a_signed_state_whose_payload_names_another_bay_or_fault_is_rejected(
    station: Catalog, central: MqttConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed by the station for its topic, but naming another bay or fault than the topic
    does: the station's own bug, rejected before anything is stored."""
    topic = topics.bay(STATION, 2)
    doc = {"station": STATION, "bay": 1, "state": "ready", "at": "2024-01-01T00:00:00+00:00"}
    assert central.handle(topic, sign_payload(KEY, topic, canonical(doc).encode())) == "rejected"
    report_fault(station, "store.full", "store", "the store reached its reserve")
    [(_, payload)] = [m for m in queued(station, KEY) if "/fault/" in m[0]]
    doc = json.loads(payload)
    doc.pop("sig")
    other = topics.fault(STATION, "store.other")
    assert central.handle(other, sign_payload(KEY, other, canonical(doc).encode())) == "rejected"
    assert central.catalog.bays(STATION) == [] and central.catalog.faults() == []
    assert central.catalog.counts()["rejected"] == 2
    assert "payload bay 1 differs from the topic's 2" in caplog.text
    level = topics.level("store.other")
    assert f"payload fault id {doc['id']!r} differs from {level!r}" in caplog.text


def test_a_replayed_event_under_another_id_takes_no_real_events_place(
    station: Catalog, central: MqttConsumer
) -> None:
    """Event ids are not signed (the seq is): a signed event replayed under a changed id is
    the same event, a duplicate, and cannot take the id of a later one."""
    add_events(station, 4)
    msgs = queued(station, KEY)
    feed(central, msgs[:3])
    replay = json.loads(msgs[2][1])
    replay["event_id"] = json.loads(msgs[3][1])["event_id"]  # event 4's id on event 3
    assert central.handle(msgs[2][0], canonical(replay).encode()) == "rejected"
    catalog_id = json.loads(msgs[2][1])["event_id"].split(":")[1]
    replay["event_id"] = f"{STATION}:{'f' * len(catalog_id)}:3"  # another catalog, same seq
    assert central.handle(msgs[2][0], canonical(replay).encode()) == "duplicate"
    assert central.handle(*msgs[3]) == "stored"
    assert chain(central)["head_seq"] == 4 and chain(central)["state"] == "ok"


# -- broken only when two validly signed events disagree; the operator's re-baseline ------------


def test_two_validly_signed_events_that_disagree_break_the_chain_and_keep_the_evidence(
    station: Catalog, central: MqttConsumer, tmp_path: Path
) -> None:
    add_events(station, 3)
    feed(central, queued(station, KEY))
    # the station's catalog replaced (same station, same key, new log): seq 1 again, other content
    replaced = Catalog(tmp_path / "replaced" / "catalog.db", station_id=STATION)
    add_events(replaced, 2, start=100)
    assert feed(central, queued(replaced, KEY)) == ["conflict", "conflict"]
    view = central.catalog.station(STATION)
    assert view["chain"]["state"] == "broken" and view["chain"]["conflicts"] == 2
    assert "validly signed, with different content" in view["chain"]["problem"]


def test_an_operator_re_baselines_a_broken_chain_audited(
    station: Catalog, central: MqttConsumer, tmp_path: Path
) -> None:
    add_events(station, 3)
    feed(central, queued(station, KEY))
    replaced = Catalog(tmp_path / "replaced" / "catalog.db", station_id=STATION)
    add_events(replaced, 2, start=100)
    feed(central, queued(replaced, KEY)[:1])
    assert chain(central)["state"] == "broken"
    data = tmp_path / "data"
    data.mkdir()
    central.catalog.close()
    # the server's own catalog, as `recdock-central rebaseline --data [--database]` finds it
    where = central.catalog.database
    if where.path is not None:
        where = where.path.rename(data / "central-catalog.db")
        database = []
    else:
        database = ["--database", where.url]
    result = CliRunner().invoke(
        admin,
        ["rebaseline", STATION, "--data", str(data), "--operator", "li.wei", *database]
        + ["--reason", "catalog replaced after the disk failed; checked on site"],
    )
    assert result.exit_code == 0, result.output
    catalog = CentralCatalog(where)
    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=central.handler.keys)
    try:
        assert feed(consumer, queued(replaced, KEY)) == ["stored", "stored"]
        head = catalog.chain(STATION)
        assert head["state"] == "ok" and head["epoch"] == 1
        assert (head["head_seq"], head["head_hash"]) == audit.head(replaced)
        [action] = head["rebaselines"]
        assert action["operator"] == "li.wei" and action["action"] == "rebaseline"
        assert "disk failed" in action["reason"] and action["was_ok"] is False
        assert "validly signed" in action["problem"], "the audit keeps what was wrong"
        assert len(catalog.event_ids(STATION)) == 5, "the earlier epoch's events stay"
    finally:
        catalog.close()


def test_rebaseline_refuses_a_hash_that_does_not_fit(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        admin,
        ["rebaseline", STATION, "--data", str(tmp_path / "data"), "--operator", "x"]
        + ["--reason", "y", "--from-seq", "3"],
    )
    assert result.exit_code == 2 and "--from-hash" in result.output


# -- the consumer's limits, on a real broker running the shipped configuration -----------------


@needs_mosquitto
@needs_openssl
def test_an_oversize_payload_is_dropped_and_counted_never_stored(
    tmp_path: Path, station: Catalog, central_db: str
) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        catalog = CentralCatalog(central_db)
        settings = broker.consumer_settings(max_payload_bytes=4096)
        consumer = MqttConsumer(catalog, settings, keys=StationKeys(register({STATION: KEY})))
        consumer.start()
        sender = broker.client(STATION, "st-a")
        try:
            assert consumer.wait_subscribed(10)
            with station.tx():
                audit.append(station, "test.big", "x", {"pad": "x" * 20_000})
            add_events(station, 1)
            sender.connect("127.0.0.1", broker.port)
            sender.loop_start()
            for topic, payload in queued(station, KEY):
                sender.publish(topic, payload, qos=1).wait_for_publish(10)
            wait_for(lambda: consumer.stats["oversize"] == 1, what="the oversize message counted")
            wait_for(lambda: consumer.stats["stored"] == 1, what="the next message stored")
        finally:
            sender.disconnect()
            sender.loop_stop()
            consumer.stop()
    assert catalog.events(STATION)[0]["kind"] == "test.event"
    assert len(catalog.events(STATION)) == 1, "no oversize record was stored"
    assert catalog.counts()["rejected"] == 0
    catalog.close()


@needs_mosquitto
@needs_openssl
def test_the_consumer_queue_is_bounded_while_the_catalog_cannot_write(
    tmp_path: Path, station: Catalog, central_db: str
) -> None:
    """While the writer cannot store (the catalog locked), paho's thread waits for room: the
    queue never holds more than ``queue_max``; nothing is lost once the lock is gone."""
    with Mosquitto(tmp_path / "broker") as broker:
        catalog = CentralCatalog(central_db)
        settings = broker.consumer_settings(queue_max=3)
        consumer = MqttConsumer(catalog, settings, keys=StationKeys(register({STATION: KEY})))
        blocker = writes_blocked(catalog)  # the writer's transactions now wait: locked
        sizes: list[int] = []
        real_put = consumer._queue.put

        def put(item, *args, **kwargs):  # type: ignore[no-untyped-def]
            real_put(item, *args, **kwargs)
            sizes.append(consumer._queue.qsize())

        consumer._queue.put = put  # type: ignore[method-assign]
        consumer.start()
        sender = broker.client(STATION, "st-a")
        try:
            assert consumer.wait_subscribed(10)
            add_events(station, 20)
            sender.connect("127.0.0.1", broker.port)
            sender.loop_start()
            for topic, payload in queued(station, KEY):
                sender.publish(topic, payload, qos=1).wait_for_publish(10)
            wait_for(lambda: consumer.stats["queue_full"] >= 1, what="paho waiting for room")
            assert max(sizes) <= 3
            blocker.release()
            wait_for(lambda: len(catalog.event_ids(STATION)) == 20, 30, "every event stored")
        finally:
            blocker.release()
            sender.disconnect()
            sender.loop_stop()
            consumer.stop()
    assert max(sizes) <= 3 and chain_of(catalog)["state"] == "ok"
    catalog.close()


def chain_of(catalog: CentralCatalog) -> dict:
    return catalog.station(STATION)["chain"]


# -- the API: alerts and the chain head ----------------------------------------------------------


def test_the_api_shows_alerts_and_gives_a_station_its_own_chain_head(
    station: Catalog, tmp_path: Path, central_db: str
) -> None:
    app = create_app(
        tmp_path / "data",
        TOKENS,
        database=central_db,
        api_tokens={READER: "supervisor"},
        station_keys=register({STATION: KEY}),
        mqtt=ConsumerSettings(port=1),  # not started: fed below
    )
    consumer: MqttConsumer = app.state.consumer
    add_events(station, 3)
    feed(consumer, queued(station, KEY))
    consumer.handle(topics.event(STATION), forged_event(queued(station, KEY)[0][1], FORGER))
    with serve_app(app) as url:
        reader = {"Authorization": f"Bearer {READER}"}
        health = requests.get(f"{url}/api/health", timeout=10).json()
        assert health["catalog"]["security_alerts"] == 1
        alerts = requests.get(f"{url}/api/security-alerts", headers=reader, timeout=10).json()
        assert len(alerts) == 1 and alerts[0]["station"] == STATION
        assert "signature" in alerts[0]["reason"]
        assert requests.get(f"{url}/api/security-alerts", timeout=10).status_code == 401
        head_url = f"{url}/api/stations/{STATION}/chain"
        own = requests.get(head_url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=10)
        assert own.status_code == 200
        assert (own.json()["head_seq"], own.json()["head_hash"]) == audit.head(station)
        assert requests.get(head_url, headers=reader, timeout=10).status_code == 200
        other = requests.get(head_url, headers={"Authorization": f"Bearer {TOKEN_B}"}, timeout=10)
        assert other.status_code == 403, "a station reads only its own chain"
        assert requests.get(head_url, timeout=10).status_code == 401
        missing = f"{url}/api/stations/ST-B/chain"
        r = requests.get(missing, headers={"Authorization": f"Bearer {TOKEN_B}"}, timeout=10)
        assert r.status_code == 404


# -- enrolment: the register and `recdock-central enrol` ----------------------------------------


def test_enrol_writes_the_register_rekeys_and_gives_a_token_once(tmp_path: Path) -> None:
    keys_file = tmp_path / "station-keys.toml"
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(f'[stations]\n"ST-A" = "{TOKEN_A}"\n')
    first, second = public_key_text(new_key()), public_key_text(new_key())
    run = CliRunner().invoke
    result = run(admin, ["enrol", "ST-B", "--public-key", first, "--keys", str(keys_file)]
                 + ["--tokens", str(tokens_file)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "enrolled ST-B" in result.output and "shown once" in result.output
    assert load_station_keys(keys_file) == {"ST-B": first}
    assert keys_file.stat().st_mode & 0o777 == 0o600
    token = result.output.rsplit(": ", 1)[1].strip()
    assert load_tokens(tokens_file)[token] == "ST-B"
    result = run(admin, ["enrol", "ST-B", "--public-key", second, "--keys", str(keys_file)]
                 + ["--tokens", str(tokens_file)])  # fmt: skip
    assert result.exit_code == 0 and "re-keyed ST-B" in result.output
    assert "shown once" not in result.output, "the station has its token already"
    assert load_station_keys(keys_file) == {"ST-B": second}
    keys_file.chmod(0o640)  # e.g. readable by the server's group: re-enrolling keeps it
    result = run(admin, ["enrol", "ST-B", "--public-key", first, "--keys", str(keys_file)])
    assert result.exit_code == 0 and keys_file.stat().st_mode & 0o777 == 0o640
    for bad in (["ST-C", "--public-key", "not-a-key"], ["recdock-central", "--public-key", first]):
        result = run(admin, ["enrol", *bad, "--keys", str(keys_file)])
        assert result.exit_code == 3, result.output
    assert load_station_keys(keys_file) == {"ST-B": first}, "a refused enrolment changes nothing"


def test_the_consumer_takes_a_newly_enrolled_station_without_a_restart(
    tmp_path: Path, station: Catalog, central_db: str
) -> None:
    keys_file = tmp_path / "station-keys.toml"
    keys_file.write_text("[stations]\n")
    catalog = CentralCatalog(central_db)
    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=StationKeys(keys_file))
    add_events(station, 1)
    [message] = queued(station, KEY)
    assert consumer.handle(*message) == "alert", "not enrolled yet"
    result = CliRunner().invoke(
        admin, ["enrol", STATION, "--public-key", public_key_text(KEY), "--keys", str(keys_file)]
    )
    assert result.exit_code == 0, result.output
    wait_for(lambda: consumer.handle(*message) == "stored", what="the new key read")
    catalog.close()


def test_recdock_central_as_installed_has_its_two_administrative_commands(tmp_path: Path) -> None:
    import subprocess

    from tests.recorders import BIN

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "recdock-central"), *args], capture_output=True, text=True, timeout=60
        )

    serve = run("--help")
    assert serve.returncode == 0 and "--station-keys" in serve.stdout
    assert "recdock-central enrol --help" in serve.stdout
    for command in ("enrol", "rebaseline"):
        helped = run(command, "--help")
        assert helped.returncode == 0 and f"recdock-central {command}" in helped.stdout
    keys = tmp_path / "keys.toml"
    enrolled = run("enrol", STATION, "--public-key", public_key_text(KEY), "--keys", str(keys))
    assert enrolled.returncode == 0, enrolled.stderr
    assert load_station_keys(keys) == {STATION: public_key_text(KEY)}


def test_the_server_needs_the_register_to_consume_mqtt(tmp_path: Path, monkeypatch) -> None:
    from central.auth import CredentialsError

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(CredentialsError, match="--station-keys"):
        create_app(tmp_path / "data", TOKENS, mqtt=ConsumerSettings(port=1))


def test_fault_state_follows_only_the_signed_events(station: Catalog, central: MqttConsumer):
    """The retained fault payload, even signed, opens nothing: only ``fault.open`` does."""
    report_fault(station, "store.full", "store", "the store reached its reserve")
    rows = outbox.pending(station.conn, limit=100)
    retained = [(m.topic, m.payload) for m in rows if m.retain]
    events = [(m.topic, m.payload) for m in rows if not m.retain]
    assert feed(central, signed(KEY, retained)) == ["stored"]
    assert central.catalog.faults() == [], "a retained payload changes no fault's state"
    feed(central, signed(KEY, events))
    assert [f["kind"] for f in central.catalog.faults()] == ["store.full"]


def test_the_centres_own_commands_echoed_by_the_broker_store_nothing(
    station: Catalog, central: MqttConsumer
) -> None:
    """The consumer subscribes ``recdock/+/#``, so it receives the commands it sent
    (sync/wire/commands.py): they are neither a station's message nor a rejected one."""
    feed(central, queued(station, KEY))
    before = central.catalog.station(STATION)
    topic = commands.topic(STATION, "fault", "f1")
    assert central.handle(topic, b'{"kind":"fault"}', retained=True) == "command"
    assert central.handle(topic, b"", retained=True) == "command"
    assert central.catalog.station(STATION) == before
    assert central.catalog.alerts() == [] and central.stats["rejected"] == 0
