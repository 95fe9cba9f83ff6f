"""The central store's MQTT consumer, its catalog and JSON API.

Station messages are produced by the station's own code (agent.catalog, agent.catalog.faults)
and signed as the station's publisher signs them, so the central side is tested against what
stations really send. The end-to-end tests run a real Mosquitto (the shipped configuration),
the station's publisher as a separate process (so it can be SIGKILLed), and the real consumer.
What the centre does with unsigned, forged and unenrolled messages is in
tests/test_central_trust.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from agent.catalog import Catalog, audit, outbox
from agent.catalog.faults import report_fault, resolve_fault
from central.app import create_app
from central.catalog import CentralCatalog
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from sync.wire import topics
from sync.wire.chain import GENESIS, entry_hash
from sync.wire.signing import sign_payload
from tests.central_db import open_connections, writes_fail
from tests.central_server import TOKENS, serve_app
from tests.mosquitto import Mosquitto
from tests.recorders import wait_for
from tests.signing_keys import home_key, new_key, queued, register
from tests.test_mqtt import add_events, needs_mosquitto, start_station, write_station_config

STATION = "ST-C1"
READER = "reader-token-0123456789abcdef"
KEY = new_key()  # the station's signing key, enrolled at the centre below


def station_messages(catalog: Catalog) -> list[tuple[str, bytes]]:
    """Everything the station has queued, signed as it leaves, in outbox order."""
    return queued(catalog, KEY)


def consumer_for(catalog: CentralCatalog, settings: ConsumerSettings | None = None) -> MqttConsumer:
    """A consumer with STATION enrolled (not started: tests call handle() directly)."""
    keys = StationKeys(register({STATION: KEY}))
    return MqttConsumer(catalog, settings or ConsumerSettings(port=1), keys=keys)


@pytest.fixture
def central(central_db: str) -> MqttConsumer:
    cat = CentralCatalog(central_db)
    consumer = consumer_for(cat)
    yield consumer
    cat.close()


def feed(consumer: MqttConsumer, messages: list[tuple[str, bytes]]) -> list[str]:
    return [consumer.handle(t, p) for t, p in messages]


# -- the hash chain: one definition on both sides ------------------------------------------


def test_station_and_central_agree_on_the_entry_hash(home: Path, central: MqttConsumer) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 5)
    for e in audit.entries(station):
        data = json.dumps(e.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert entry_hash(e.prev_hash, e.seq, e.at, e.kind, e.subject, data) == e.hash
    assert audit.check_chain(station) == []
    feed(central, station_messages(station))
    events = central.catalog.events(STATION)
    assert len(events) == 5 and all(e["hash_ok"] for e in events)


def test_continuous_chain_is_ok_and_its_head_is_the_stations(
    home: Path, central: MqttConsumer
) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 20)
    assert set(feed(central, station_messages(station))) == {"stored"}
    view = central.catalog.station(STATION)
    assert view["chain"]["state"] == "ok"
    assert (view["chain"]["head_seq"], view["chain"]["head_hash"]) == audit.head(station)


def test_duplicates_are_dropped_by_event_id(home: Path, central: MqttConsumer) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 10)
    msgs = station_messages(station)
    feed(central, msgs)
    assert set(feed(central, msgs[3:])) == {"duplicate"}
    view = central.catalog.station(STATION)
    assert (view["events"], view["duplicates"]) == (10, 7)
    assert len(central.catalog.event_ids(STATION)) == 10
    assert view["chain"]["state"] == "ok"


def test_out_of_order_events_show_a_gap_that_closes(home: Path, central: MqttConsumer) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 30)
    msgs = station_messages(station)
    rng = random.Random(7)
    held = msgs[9:14]  # seq 10..14 arrive last
    rest = msgs[:9] + msgs[14:]
    rng.shuffle(rest)
    feed(central, rest)
    view = central.catalog.station(STATION)
    assert view["chain"]["state"] == "gap"
    assert view["chain"]["ok"] is True, "a gap is not a rewrite"
    assert view["chain"]["missing"] == [[10, 14]]
    assert view["chain"]["head_seq"] == 9
    feed(central, held)
    view = central.catalog.station(STATION)
    assert view["chain"]["state"] == "ok"
    assert view["chain"]["head_seq"] == 30 and view["chain"]["missing"] == []


def test_rewritten_history_is_flagged(home: Path, tmp_path: Path, central: MqttConsumer) -> None:
    original = Catalog(home / "catalog.db", station_id=STATION)
    add_events(original, 6)
    feed(central, station_messages(original))
    assert central.catalog.station(STATION)["chain"]["state"] == "ok"
    # the same station, its key, a different catalog: another event it signed at seq 1..3
    replaced = Catalog(tmp_path / "other" / "catalog.db", station_id=STATION)
    for i in range(3):
        with replaced.tx():
            audit.append(replaced, "test.event", f"replaced-{i}", {"i": -i})
    assert feed(central, station_messages(replaced)[:1]) == ["conflict"]
    view = central.catalog.station(STATION)
    assert view["chain"]["state"] == "broken" and view["chain"]["ok"] is False
    assert (
        "seq 1 arrived twice, validly signed, with different content" in (view["chain"]["problem"])
    )
    assert view["chain"]["conflicts"] == 1, "the second signed event is kept as evidence"
    assert len(central.catalog.event_ids(STATION)) == 6


def test_a_validly_signed_event_that_does_not_follow_its_neighbour_breaks_the_chain(
    home: Path, central: MqttConsumer
) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 4)
    msgs = station_messages(station)
    feed(central, msgs[:2])
    # a self-consistent event, signed by the station, whose prev_hash is not event 2's hash
    third = json.loads(msgs[2][1])
    third["prev_hash"] = "f" * 64
    third["hash"] = entry_hash(
        third["prev_hash"],
        third["seq"],
        third["at"],
        third["kind"],
        third["subject"],
        json.dumps(third["data"], sort_keys=True, separators=(",", ":")),
    )
    resigned = sign_payload(KEY, msgs[2][0], json.dumps(third).encode())
    assert feed(central, [(msgs[2][0], resigned)]) == ["stored"]
    chain = central.catalog.station(STATION)["chain"]
    assert chain["state"] == "broken" and "does not follow event 2" in chain["problem"]
    assert "two validly signed events disagree" in chain["problem"]
    assert GENESIS == "0" * 64


def test_invalid_messages_are_counted_and_kept_not_crashing(central: MqttConsumer) -> None:
    """Unsigned garbage is a security alert; what the station signed but does not follow the
    schema or its topic is rejected (a station's bug, kept for diagnosis)."""
    unsigned = [
        (topics.event(STATION), b"not json"),
        (topics.event(STATION), b"[1, 2]"),
        (topics.event(STATION), json.dumps({"event_id": "x"}).encode()),
        (topics.status(STATION), json.dumps({"station": STATION, "state": "online"}).encode()),
    ]
    signed_but_wrong = [
        (topics.status(STATION), {"station": STATION, "state": "sleepy"}),
        (topics.status(STATION), {"station": "ST-OTHER", "state": "online"}),
        (
            topics.bay(STATION, 2),
            {"station": STATION, "bay": 3, "state": "idle", "at": "2024-01-01T00:00:00+00:00"},
        ),
    ]
    rejected = [(t, sign_payload(KEY, t, json.dumps(doc).encode())) for t, doc in signed_but_wrong]
    rejected += [("recdock/ST-C1/unknown/thing", b"{}"), (topics.event(STATION), b"")]
    assert feed(central, unsigned) == ["alert"] * len(unsigned)
    assert feed(central, rejected) == ["rejected"] * len(rejected)
    assert central.stats["rejected"] == len(rejected)
    assert central.catalog.counts()["rejected"] == len(rejected)
    assert central.catalog.counts()["security_alerts"] == len(unsigned)
    ok = json.dumps({"station": STATION, "state": "online"}).encode()
    assert central.handle(
        topics.status(STATION), sign_payload(KEY, topics.status(STATION), ok)
    ) == ("stored")


def test_poison_messages_in_a_batch_do_not_hold_up_the_others(
    home: Path, central: MqttConsumer
) -> None:
    """One station's bad message is kept apart alone; the rest of its batch is stored."""
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 3)
    good = station_messages(station)
    event = json.loads(good[0][1])

    def signed(topic: str, doc: dict) -> tuple[str, bytes]:
        return topic, sign_payload(KEY, topic, json.dumps(doc).encode())

    poison = [
        (topics.event(STATION), b"[" * 100_000 + b"]" * 100_000),  # RecursionError
        (topics.event(STATION), b'{"n": ' + b"9" * 5000 + b"}"),  # int too large to parse
        (topics.event(STATION), json.dumps({**event, "subject": "\ud800"}).encode()),
        signed(topics.event(STATION), {**event, "seq": 2**70, "event_id": f"{STATION}:x"}),
        signed(topics.event(STATION), {**event, "at": "garbage"}),
        # another station's event ids must not shadow this one's
        (topics.event("ST-OTHER"), json.dumps({**event, "station": "ST-OTHER"}).encode()),
        (topics.bay(STATION, 1).replace("/1", "/\u00b2"), b""),
        signed(topics.bay(STATION, 2**70), {"station": STATION, "bay": 2**70, "state": "idle"}),
    ]
    with central.catalog.tx():  # as the consumer's writer does: one batch, one transaction
        outcomes = [central.handle(t, p) for t, p in poison + good]
    assert not {"stored", "duplicate", "conflict"} & set(outcomes[: len(poison)]), outcomes
    assert outcomes[len(poison) :] == ["stored"] * len(good)
    info = central.catalog.station(STATION)
    assert info is not None and info["chain"]["state"] == "ok", info
    central.catalog.faults(include_resolved=True)  # no stored garbage time breaks the API


def test_faults_open_and_clear_with_age_against_24_hours(home: Path, central: MqttConsumer) -> None:
    station = Catalog(home / "catalog.db", station_id=STATION)
    report_fault(station, "store.full", "store", "the store reached its reserve")
    report_fault(station, "recorder.battery", "SIM0001", "battery does not charge")
    feed(central, station_messages(station))
    open_faults = central.catalog.faults()
    assert {f["kind"] for f in open_faults} == {"store.full", "recorder.battery"}
    assert all(f["age_hours"] < 1 and not f["overdue"] for f in open_faults)
    later = datetime.now(UTC) + timedelta(hours=25)
    assert all(f["overdue"] for f in central.catalog.faults(now=later))

    with station.tx() as conn:
        conn.execute("DELETE FROM outbox")
    resolve_fault(station, "store.full", "store", "space freed")
    feed(central, station_messages(station))
    assert [f["kind"] for f in central.catalog.faults()] == ["recorder.battery"]
    resolved = [f for f in central.catalog.faults(include_resolved=True) if f["state"] != "open"]
    assert [f["kind"] for f in resolved] == ["store.full"]


def test_a_fault_topic_carries_no_dot_and_the_old_form_is_still_taken(
    home: Path, central: MqttConsumer
) -> None:
    """A fault id with a dot (``store.full-...``) goes out under a topic level without one
    (RabbitMQ would turn it into '/': docs/deployment.md, "Brokers"); a station from before
    publishes it under the id itself, which the centre still takes; any other level is refused."""
    station = Catalog(home / "catalog.db", station_id=STATION)
    fault = report_fault(station, "store.full", "store", "the store reached its reserve")
    everything = station_messages(station)
    sent = [(t, p) for t, p in everything if "/fault/" in t]
    assert [t for t, _ in sent] == [f"recdock/{STATION}/fault/{topics.level(fault.id)}"]
    assert "." in fault.id and "." not in sent[0][0]
    doc = json.loads(sent[0][1])
    doc.pop("sig")

    def signed(topic: str) -> tuple[str, bytes]:
        return topic, sign_payload(KEY, topic, json.dumps(doc).encode())

    old = signed(f"recdock/{STATION}/fault/{fault.id}")
    other = signed(f"recdock/{STATION}/fault/another-id")
    assert set(feed(central, everything)) == {"stored"}
    assert feed(central, [old]) == ["stored"]
    assert feed(central, [other]) != ["stored"]
    assert [f["id"] for f in central.catalog.faults()] == [fault.id]


# -- the JSON API over HTTP ----------------------------------------------------------------


def test_catalog_closes_the_connections_of_threads_that_ended(central_db: str) -> None:
    """The API reads the catalog from the server's worker threads, which come and go (anyio
    ends one idle for 10 s): a connection per thread must not outlive its thread."""
    catalog = CentralCatalog(central_db)

    def open_on_db() -> int:
        return open_connections(catalog)

    def readers(n: int) -> None:
        for _ in range(n):
            reader = threading.Thread(target=catalog.counts)
            reader.start()
            reader.join()

    # SQLite may keep a closed connection's descriptor for reuse while the file is locked by
    # another connection of the process: count after a first round, then check none are added.
    # A PostgreSQL backend leaves pg_stat_activity a moment after its client closed (later on
    # a loaded machine): wait for the count to come down, which it never does for a leak.
    readers(5)
    after_some = open_on_db()
    assert after_some <= 4, "connections of ended threads are still open"
    readers(30)
    wait_for(
        lambda: open_on_db() <= after_some, timeout=10, what="ended threads' connections closed"
    )
    assert catalog.counts()["stations"] == 0
    catalog.close()
    wait_for(lambda: open_on_db() == 0, timeout=10, what="every connection closed")


def test_api_serves_the_catalog_to_reader_tokens_only(
    home: Path, tmp_path: Path, central_db: str
) -> None:
    app = create_app(
        tmp_path / "data", TOKENS, api_tokens={READER: "supervisor"}, database=central_db
    )
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 3)
    report_fault(station, "store.full", "store", "the store reached its reserve")
    consumer = consumer_for(app.state.catalog)
    feed(consumer, station_messages(station))
    online = b'{"station":"ST-C1","state":"online"}'
    consumer.handle(topics.status(STATION), sign_payload(KEY, topics.status(STATION), online))
    with serve_app(app) as url:
        auth = {"Authorization": f"Bearer {READER}"}
        assert requests.get(f"{url}/api/health", timeout=10).json()["catalog"]["stations"] == 1
        r = requests.get(f"{url}/api/stations", timeout=10)
        assert r.status_code == 401
        station_token = next(iter(TOKENS))
        r = requests.get(
            f"{url}/api/stations", headers={"Authorization": f"Bearer {station_token}"}, timeout=10
        )
        assert r.status_code == 401, "a station's upload token cannot read the API"
        stations = requests.get(f"{url}/api/stations", headers=auth, timeout=10).json()
        assert [s["station"] for s in stations] == [STATION]
        one = requests.get(f"{url}/api/stations/{STATION}", headers=auth, timeout=10).json()
        assert one["status"] == "online" and one["chain"]["state"] == "ok"
        assert one["chain"]["head_seq"] == 4
        assert requests.get(f"{url}/api/stations/nope", headers=auth, timeout=10).status_code == 404
        bays = requests.get(f"{url}/api/stations/{STATION}/bays", headers=auth, timeout=10)
        assert bays.status_code == 200 and bays.json() == []
        faults = requests.get(f"{url}/api/faults", headers=auth, timeout=10).json()
        assert len(faults) == 1 and faults[0]["overdue"] is False and "age_hours" in faults[0]
        events = requests.get(
            f"{url}/api/events", params={"station": STATION, "limit": 2}, headers=auth, timeout=10
        ).json()
        assert [e["seq"] for e in events] == [4, 3]
        assert requests.get(f"{url}/api/recorders", headers=auth, timeout=10).json() == []


# -- end to end: a real broker, the station publisher process, the real consumer ---------------


def outbox_size(catalog: Catalog) -> int:
    return outbox.backlog(catalog.conn)


@needs_mosquitto
@pytest.mark.slow
def test_events_exactly_once_across_a_broker_outage_and_station_restarts(
    tmp_path: Path, home: Path, central_db: str
) -> None:
    outage_s = float(os.environ.get("RECDOCK_TEST_OUTAGE_S", "60"))
    # A production broker keeps sessions (persistence true): the central store's subscription
    # outlives the restart, and what stations send before it reconnects waits for it. Without
    # that, the broker acknowledges and drops those messages (MQTT's rules, not the station's),
    # and the central store can only show the gap.
    broker = Mosquitto(tmp_path / "broker", persistence=True)
    broker.start()
    central_cat = CentralCatalog(central_db)
    keys = StationKeys(register({STATION: home_key(home)}))  # the station process's own key
    settings = broker.consumer_settings(reconnect_max_s=2)
    consumer = MqttConsumer(central_cat, settings, keys=keys)
    consumer.start()
    station = Catalog(home / "catalog.db", station_id=STATION)
    config = write_station_config(tmp_path / "station.toml", broker, STATION, reconnect_max_s="2")
    procs = []

    def start() -> None:
        procs.append(start_station(home, config))

    def kill() -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)

    try:
        assert consumer.wait_subscribed(10)
        start()
        ids = add_events(station, 30)
        wait_for(lambda: len(central_cat.event_ids(STATION)) == 30, timeout=20, what="first 30")

        broker.stop()
        t0 = time.monotonic()
        restarted = False
        while time.monotonic() - t0 < outage_s:
            ids += add_events(station, 5, start=len(ids))
            if not restarted and time.monotonic() - t0 > outage_s / 3:
                kill()  # the station process dies during the outage...
                start()  # ...and comes back while the broker is still away
                restarted = True
            time.sleep(0.25)  # pacing the event source, not waiting for a result
        ids += add_events(station, 2000, start=len(ids))
        assert outbox_size(station) >= 2000, "nothing left the outbox without a broker"
        broker.start()
        # kill the publisher once more, in the middle of draining the backlog
        wait_for(lambda: outbox_size(station) < 1500, timeout=30, what="drain under way")
        kill()
        start()
        wait_for(lambda: outbox_size(station) == 0, timeout=60, what="station outbox empty")
        wait_for(
            lambda: len(central_cat.event_ids(STATION)) == len(ids),
            timeout=60,
            what="every event at the central store",
        )
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(15) == 0
        wait_for(
            lambda: central_cat.station(STATION)["status"] == "stopped",
            what="the clean stop at the central store",
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
        consumer.stop()
        broker.stop()
    got = central_cat.event_ids(STATION)
    assert len(got) == len(set(got)) == len(ids), "each event exactly once in the catalog"
    assert set(got) == set(ids), "zero lost"
    view = central_cat.station(STATION)
    assert view["chain"]["state"] == "ok" and view["chain"]["head_seq"] == audit.head(station)[0]
    assert consumer.stats["rejected"] == 0
    print(
        f"outage {outage_s:.0f}s: {len(ids)} events, duplicates dropped by the central store: "
        f"{view['duplicates']}"
    )


def test_a_batch_is_counted_only_once_it_is_committed(home: Path, central: MqttConsumer) -> None:
    """A commit that fails (here: SQLite's own "database or disk is full", the file capped
    with max_page_count on the writing connection; PostgreSQL's lock timeout) counts nothing
    but errors and stores nothing; the same batch tried again is stored and counted once
    (central/consumer.py)."""
    from central.consumer import _Incoming

    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 40)
    batch = [_Incoming(t, p, False, i + 1, 0) for i, (t, p) in enumerate(station_messages(station))]
    with writes_fail(central.catalog):  # on this thread's connection: store_batch's
        assert central.store_batch(batch) is False
    assert dict(central.stats) == {"errors": len(batch)}
    assert central.catalog.counts()["events"] == 0
    assert central.store_batch(batch) is True
    assert central.stats["stored"] == central.stats["received"] == len(batch)
    assert central.catalog.counts()["events"] == len(batch)
