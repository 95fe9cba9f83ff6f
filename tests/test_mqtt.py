"""The station's MQTT side: outbox publisher, Last Will, clean stop, TLS; with a real Mosquitto.

Behaviour without a broker is shown on :class:`tests.memory_link.MemoryLink`; everything the
broker does (PUBACK, retained messages, the Last Will) is shown on a real ``mosquitto`` on
loopback, running the shipped broker configuration (tests/mosquitto.py): TLS, a client
certificate per station, the ACL.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.catalog import Catalog, audit, outbox
from agent.config.links import MqttConfig
from sync.mqtt.link import MqttLink
from sync.mqtt.publisher import OutboxPublisher
from sync.wire import topics
from sync.wire.payloads import (
    PAYLOAD_KINDS,
    STATUS_STATES,
    decode_payload,
    load_schema,
    status_payload,
    topic_kind,
)
from sync.wire.signing import verify_doc
from tests.memory_link import MemoryBroker, MemoryLink
from tests.mosquitto import MOSQUITTO, Mosquitto, Subscriber, TestPki
from tests.recorders import wait_for
from tests.signal_tools import deadlock_alarm, signal_inside
from tests.signing_keys import home_key, new_key, signed

STATION = "ST-T1"
KEY = new_key()  # this module's station key (tests that run a station process use home_key)
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None and not os.environ.get("CI"), reason="mosquitto not installed"
)


def make_catalog(home: Path, station: str = STATION) -> Catalog:
    return Catalog(home / "catalog.db", station_id=station)


def add_events(catalog: Catalog, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        with catalog.tx():
            entry = audit.append(catalog, "test.event", f"item-{i}", {"i": i})
        ids.append(f"{catalog.station_id}:{catalog.catalog_id}:{entry.seq}")
    return ids


def backlog(catalog: Catalog) -> int:
    return outbox.backlog(catalog.conn)


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def real_link(broker: Mosquitto, **kw: object) -> MqttLink:
    """The station's link to ``broker``, with its client certificate and key."""
    return MqttLink(broker.mqtt_config(STATION, **kw), STATION, signing_key=KEY)


def publisher(catalog: Catalog, link: object, **kw: object) -> OutboxPublisher:
    kw.setdefault("idle_poll_s", 0.05)
    return OutboxPublisher(catalog.path, STATION, link, signing_key=KEY, **kw)  # type: ignore[arg-type]


# -- without a broker: the publisher's rules on MemoryLink -----------------------------------


def test_row_leaves_the_outbox_only_when_acknowledged(home: Path) -> None:
    catalog = make_catalog(home)
    add_events(catalog, 5)
    link = MemoryLink()
    link.hold_acks = True
    link.connect()
    pub = publisher(catalog, link, max_inflight=3)
    pub.start()
    try:
        wait_for(lambda: link.unacked == 3, what="three messages in flight")
        assert backlog(catalog) == 5, "sent but unacknowledged rows must stay in the outbox"
        assert len(link.broker.log) == 3, "no more than max_inflight messages in flight"
        link.release_acks()
        wait_for(lambda: backlog(catalog) <= 2, what="acknowledged rows deleted")
        wait_for(lambda: link.unacked == 2, what="the rest sent")
        link.release_acks()
        wait_for(lambda: backlog(catalog) == 0, what="outbox empty")
    finally:
        pub.stop()
    sent = [json.loads(m.payload)["seq"] for m in link.broker.log]
    assert sent == [1, 2, 3, 4, 5], "rows go out in id order, each once"


def test_flush_waits_for_rows_queued_while_the_publisher_was_finding_the_outbox_empty(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean stop queues its last messages, then flushes: a pass that looked at the outbox
    just before they were committed must not answer the flush."""
    catalog = make_catalog(home)
    link = MemoryLink()
    link.connect()
    pub = publisher(catalog, link)
    real_pending = outbox.pending
    looked, go_on = threading.Event(), threading.Event()
    hold = threading.Event()

    def pending(*a, **kw):  # type: ignore[no-untyped-def]
        rows = real_pending(*a, **kw)
        if hold.is_set() and not rows:
            hold.clear()
            looked.set()  # the publisher saw an empty outbox ...
            go_on.wait(10)  # ... and is held there while the caller queues and flushes
        return rows

    monkeypatch.setattr(outbox, "pending", pending)
    pub.start()
    try:
        assert pub.wait_drained(5)
        hold.set()
        assert looked.wait(5)
        add_events(catalog, 3)  # committed before flush() is called
        flushed: list[bool] = []
        flusher = threading.Thread(target=lambda: flushed.append(pub.flush(10)))
        flusher.start()
        # flush() asks for a pass by waking the publisher; held inside a pass, it clears no wake
        wait_for(pub._wake.is_set, what="flush() to ask while the empty pass is held")
        go_on.set()
        flusher.join(15)
        assert flushed == [True]
        assert backlog(catalog) == 0, "flush() returned before the queued rows were acknowledged"
        assert len(link.broker.log) == 3
    finally:
        go_on.set()
        pub.stop()


def test_unacknowledged_rows_are_resent_after_reconnect_and_replayed_after_restart(
    home: Path,
) -> None:
    catalog = make_catalog(home)
    ids = add_events(catalog, 4)
    broker = MemoryBroker()
    link = MemoryLink(broker)
    link.hold_acks = True
    link.connect()
    pub = publisher(catalog, link, max_inflight=10)
    pub.start()
    wait_for(lambda: link.unacked == 4, what="all four sent")
    link.disconnect()  # the connection drops before any PUBACK
    link.hold_acks = False
    link.connect()  # like paho, the link re-sends its unacknowledged messages
    wait_for(lambda: backlog(catalog) == 0, what="outbox empty after reconnect")
    pub.stop()

    # a new process: whatever is left in the outbox is replayed from the start
    more = add_events(catalog, 3, start=4)
    link2 = MemoryLink(broker)
    link2.connect()
    pub2 = publisher(catalog, link2)
    pub2.start()
    try:
        wait_for(lambda: backlog(catalog) == 0, what="replayed outbox empty")
    finally:
        pub2.stop()
    got = [json.loads(m.payload)["event_id"] for m in broker.log]
    assert set(got) == set(ids + more), "nothing lost"
    assert len(got) == 4 + 4 + 3, "the first four were sent twice (duplicates are allowed)"


def test_rejected_message_stays_queued_and_is_retried(home: Path) -> None:
    catalog = make_catalog(home)
    add_events(catalog, 1)

    looked = threading.Event()

    class Rejecting(MemoryLink):
        rejects = 1

        def publish(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not self.rejects:  # the retry: held until the test has seen the row stay
                looked.wait(10)
            return super().publish(*args, **kwargs)

        def _ack(self, token: int) -> None:
            if self.rejects:
                self.rejects -= 1
                self._unacked.pop(token, None)
                for listener in self._listeners:
                    listener.link_acked(token, False, "Not authorized")
                return
            super()._ack(token)

    link = Rejecting()
    link.connect()
    pub = publisher(catalog, link, retry_after_s=0.2)
    pub.start()
    try:
        wait_for(lambda: pub.stats.rejected == 1, what="a rejection")
        assert backlog(catalog) == 1, "a rejected message is not an acknowledged one"
        looked.set()
        wait_for(lambda: backlog(catalog) == 0, what="the retry acknowledged")
    finally:
        looked.set()
        pub.stop()
    assert len(link.broker.log) == 2


def test_publisher_sends_nothing_while_disconnected(home: Path) -> None:
    catalog = make_catalog(home)
    add_events(catalog, 3)
    link = MemoryLink()
    pub = publisher(catalog, link)
    pub.start()
    try:
        wait_for(lambda: pub.iterations >= 5, what="the publisher looked five times")
        assert backlog(catalog) == 3 and link.broker.log == []
        link.connect()
        wait_for(lambda: backlog(catalog) == 0, what="sent after connecting")
    finally:
        pub.stop()


# -- a real broker ---------------------------------------------------------------------------


@needs_mosquitto
def test_outbox_drains_to_a_real_broker_and_online_is_retained(
    broker: Mosquitto, home: Path
) -> None:
    catalog = make_catalog(home)
    ids = add_events(catalog, 50)
    sub = Subscriber(broker)
    link = real_link(broker)
    pub = publisher(catalog, link)
    pub.start()
    link.start()
    try:
        wait_for(lambda: backlog(catalog) == 0, what="outbox drained")
        wait_for(lambda: len(sub.on(topics.event(STATION))) >= 50, what="events at subscriber")
        got = [json.loads(p)["event_id"] for p, _ in sub.on(topics.event(STATION))]
        assert sorted(set(got)) == sorted(ids)
        status = [decode_payload(p) for p, _ in sub.on(topics.status(STATION))]
        assert status[-1]["state"] == "online"
    finally:
        pub.stop()
        link.stop()
        sub.close()


@needs_mosquitto
def test_rows_stay_until_puback_from_a_frozen_broker_and_pahos_queue_is_capped(
    broker: Mosquitto, home: Path
) -> None:
    catalog = make_catalog(home)
    # paho's queue holds 5; the publisher would hand over 50: paho must refuse the rest
    link = real_link(broker, max_inflight=5, max_queued=5)
    pub = publisher(catalog, link, max_inflight=50)
    pub.start()
    link.start()
    sub = Subscriber(broker)
    try:
        assert link.wait_connected(10)
        # the link's own retained "online" takes one of paho's 5 places until its PUBACK
        wait_for(lambda: not link.client._out_messages, what="'online' acknowledged")
        broker.pause()  # TCP stays up, no PUBACK comes back
        ids = add_events(catalog, 40)
        wait_for(lambda: pub.stats.not_taken > 0, what="paho refusing beyond its queue")
        assert pub.inflight == 5
        assert len(link.client._out_messages) == 5, "paho's own queue stays capped"
        assert backlog(catalog) == 40, "sent but not acknowledged: nothing deleted"
        broker.resume()
        wait_for(lambda: backlog(catalog) == 0, timeout=30, what="outbox drained")
        wait_for(lambda: len(sub.on(topics.event(STATION))) >= 40, what="all at subscriber")
        got = {json.loads(p)["event_id"] for p, _ in sub.on(topics.event(STATION))}
        assert got == set(ids)
    finally:
        if broker.running:
            broker.resume()
        pub.stop()
        link.stop()
        sub.close()


@needs_mosquitto
def test_broker_down_rows_stay_and_drain_when_it_returns(
    broker: Mosquitto, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = make_catalog(home)
    link = real_link(broker)
    # The restarted broker keeps no sessions: an event the link hands it before the test's
    # subscriber has subscribed reaches nobody, and the link's reconnect (paho's back-off)
    # may land in that window. The link waits for the subscriber; it goes on as it would.
    listening = threading.Event()
    listening.set()
    publish = link.publish

    def publish_once_the_subscriber_listens(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert listening.wait(30), "the test subscriber never subscribed"
        return publish(*args, **kwargs)

    monkeypatch.setattr(link, "publish", publish_once_the_subscriber_listens)
    pub = publisher(catalog, link)
    pub.start()
    link.start()
    try:
        assert link.wait_connected(10)
        broker.stop()
        wait_for(lambda: not link.is_connected(), what="link notices the broker is gone")
        ids = add_events(catalog, 40)
        passes = pub.iterations
        wait_for(lambda: pub.iterations >= passes + 5, what="the publisher looked five times")
        assert backlog(catalog) == 40, "no broker, no PUBACK, no deletion"
        listening.clear()
        broker.start()
        sub = Subscriber(broker)
        listening.set()
        wait_for(lambda: backlog(catalog) == 0, timeout=30, what="outbox drained after restart")
        wait_for(lambda: len(sub.on(topics.event(STATION))) >= 40, what="all at subscriber")
        got = {json.loads(p)["event_id"] for p, _ in sub.on(topics.event(STATION))}
        assert got == set(ids)
        sub.close()
    finally:
        pub.stop()
        link.stop()


# -- the station process: Last Will on SIGKILL, "stopped" on a clean stop ---------------------


def write_station_config(
    path: Path, broker: Mosquitto, station: str = STATION, **extra: str
) -> Path:
    """A station config for ``broker``: its certificate, keepalive 5 s, ``extra`` [mqtt] keys."""
    text = f'station_id = "{station}"\n' + broker.mqtt_toml(station, keepalive=5, **extra)
    path.write_text(text, encoding="utf-8")
    return path


def start_station(home: Path, config: Path) -> subprocess.Popen[bytes]:
    """``python -m sync.mqtt`` for ``home``, with the station key at <home>/signing-key."""
    home_key(home)
    log = (home / "publisher.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "sync.mqtt", "--home", str(home), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


def last_status(sub: Subscriber, station: str = STATION) -> str | None:
    msgs = sub.on(topics.status(station))
    return decode_payload(msgs[-1][0])["state"] if msgs else None


@needs_mosquitto
def test_last_will_offline_when_the_station_is_killed(
    broker: Mosquitto, home: Path, tmp_path: Path
) -> None:
    make_catalog(home).close()
    config = write_station_config(tmp_path / "station.toml", broker)
    sub = Subscriber(broker)
    proc = start_station(home, config)
    try:
        wait_for(lambda: last_status(sub) == "online", timeout=15, what="online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the broker notices the silence after 1.5 x keepalive (5 s)
        wait_for(lambda: last_status(sub) == "offline", timeout=20, what="Last Will 'offline'")
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    # a subscriber that comes later sees the retained "offline"
    late = Subscriber(broker, client_id="late-sub")
    try:
        wait_for(lambda: last_status(late) == "offline", what="retained offline")
        assert late.on(topics.status(STATION))[-1][1] is True
    finally:
        late.close()


@needs_mosquitto
def test_clean_stop_publishes_retained_stopped(
    broker: Mosquitto, home: Path, tmp_path: Path
) -> None:
    make_catalog(home).close()
    config = write_station_config(tmp_path / "station.toml", broker)
    sub = Subscriber(broker)
    proc = start_station(home, config)
    try:
        wait_for(lambda: last_status(sub) == "online", timeout=15, what="online")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        wait_for(lambda: last_status(sub) == "stopped", what="'stopped'")
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    late = Subscriber(broker, client_id="late-sub")
    try:
        wait_for(lambda: last_status(late) == "stopped", what="retained stopped")
        states = [decode_payload(p)["state"] for p, _ in late.on(topics.status(STATION))]
        assert "offline" not in states, "a clean stop must not fire the Last Will"
    finally:
        late.close()


# -- payloads: every topic against its JSON Schema, with the station's own producers ----------


def validator(kind: str):
    from jsonschema import Draft202012Validator, FormatChecker

    return Draft202012Validator(load_schema(kind), format_checker=FormatChecker())


def test_schemas_are_valid_json_schemas() -> None:
    from jsonschema import Draft202012Validator

    for kind in PAYLOAD_KINDS:
        Draft202012Validator.check_schema(load_schema(kind))


def test_every_topic_payload_the_station_sends_validates(tmp_path: Path, home: Path) -> None:
    from agent.catalog.bays import set_bay_state
    from agent.catalog.faults import report_fault, resolve_fault
    from agent.catalog.station import set_station_status
    from agent.checks import record_checks, run_checks
    from agent.config import SHIPPED_PROFILES, Config
    from agent.offload import Offloader
    from agent.recorder.profiles import ProfileSet
    from agent.recorder.simulated import apply_firmware
    from agent.seams.clock.simulated import SimulatedClock
    from agent.seams.indicators.patterns import State
    from agent.station.report import station_report
    from sync.wire.chain import canonical
    from tests.recorders import make_folder_recorder

    cfg = Config.model_validate({"station_id": STATION, "checks": {"shift_hours": 0.01}})
    sim = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    catalog = make_catalog(home)
    root = make_folder_recorder(tmp_path / "rec", "SIM0042", files=2, size=64 * 1024)
    off = Offloader(cfg, home, catalog).run(root, sim)
    assert off.ok
    rep = run_checks(
        root,
        sim,
        cfg,
        clock=SimulatedClock(synchronised=True),
        offload=off,
        info=off.info,
        writable=True,
        reconnect=lambda: (apply_firmware(root), root)[1],
    )
    record_checks(catalog, rep, device_serial="SIM0042", session_id=off.session_id, bay=2)
    set_bay_state(catalog, 2, State.READY, device_serial="SIM0042", profile="simulated")
    set_station_status(catalog, "online", {"pid": os.getpid(), "simulate": True})
    report_fault(catalog, "store.full", "store", "the store reached its reserve")
    resolve_fault(catalog, "store.full", "store", "space freed")  # retained clear: empty
    report_fault(catalog, "recorder.battery", "SIM0042", "battery does not charge")

    seen: dict[str, int] = {}
    msgs = [(m.topic, m.payload) for m in outbox.pending(catalog.conn, limit=10_000)]
    msgs += [
        (topics.status(STATION), status_payload(STATION, s, client_id="recdock-x"))
        for s in STATUS_STATES
    ]
    # the health report, as sync/mqtt/health.py hands it to the link
    report = station_report(catalog, cfg, home, SimulatedClock(synchronised=False))
    msgs.append((topics.health(STATION), canonical(report).encode("utf-8")))
    # as they leave the station: signed where the publisher (or the link) hands them over
    for topic, payload in signed(KEY, msgs):
        parsed = topic_kind(topic)
        assert parsed is not None, f"{topic} is not a documented topic"
        station, kind, _key = parsed
        assert station == STATION
        doc = decode_payload(payload)
        if doc is None:
            assert kind == "fault", "only a resolved fault clears its topic"
            continue
        errors = [e.message for e in validator(kind).iter_errors(doc)]
        assert not errors, f"{topic}: {errors}"
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "event":
            assert doc["event_id"] and len(doc["hash"]) == 64 and len(doc["prev_hash"]) == 64
        verify_doc(KEY.public_key(), topic, doc)  # raises unless validly signed
        unsigned = {k: v for k, v in doc.items() if k != "sig"}
        assert list(validator(kind).iter_errors(unsigned)), f"{kind} valid without 'sig'"
    assert set(seen) == set(PAYLOAD_KINDS), f"not every topic kind was produced: {seen}"


def test_schemas_reject_what_they_must() -> None:
    assert list(validator("status").iter_errors({"station": STATION, "state": "asleep"}))
    health = {"station": STATION, "at": "2024-01-01T00:00:00+00:00", "version": "1",
              "store": {"free_bytes": 1, "total_bytes": 2}, "events": {"count": 0,
              "oldest_age_s": None}, "uploads": {"enabled": False, "count": 0, "bytes": 0,
              "oldest_age_s": None}, "clock": {"synchronised": True},
              "bays": {"total": 1, "in_use": 0}, "sig": "A" * 86 + "=="}  # fmt: skip
    assert not list(validator("health").iter_errors(health))
    for part in ("store", "events", "uploads", "clock", "bays", "sig"):
        broken = {k: v for k, v in health.items() if k != part}
        assert list(validator("health").iter_errors(broken)), f"health without {part} accepted"
    assert list(validator("health").iter_errors({**health, "clock": {"synchronised": "yes"}}))
    assert list(validator("health").iter_errors({**health, "events": {"count": -1}}))
    event = {
        "event_id": "a:b:1",
        "station": STATION,
        "seq": 1,
        "at": "2024-01-01T00:00:00+00:00",
        "kind": "k",
        "subject": "s",
        "data": {},
        "prev_hash": "0" * 64,
        "hash": "a" * 64,
        "sig": "A" * 86 + "==",
    }
    assert not list(validator("event").iter_errors(event))
    for key in ("event_id", "hash", "prev_hash", "seq", "sig"):
        broken = {k: v for k, v in event.items() if k != key}
        assert list(validator("event").iter_errors(broken)), f"event without {key} accepted"
    assert list(validator("event").iter_errors({**event, "hash": "xyz"}))
    assert list(validator("event").iter_errors({**event, "sig": "not base64"}))
    assert list(validator("event").iter_errors({**event, "seq": 10**18}))


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=10), _json, max_size=6))
def test_payload_encode_decode_round_trip_keeps_the_chain_verifiable(data: dict) -> None:
    from sync.wire.chain import GENESIS, canonical, entry_hash

    try:
        canonical(data).encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates never reach a payload (the catalog refuses them first)
    digest = entry_hash(GENESIS, 1, "2024-01-01T00:00:00+00:00", "k", "s", canonical(data))
    event = {"event_id": "e", "station": STATION, "seq": 1, "data": data, "hash": digest}
    wire = outbox.encode(event).encode("utf-8")
    back = decode_payload(wire)
    assert back == event
    # the central store recomputes the hash from the decoded data: it must come out the same
    assert (
        entry_hash(GENESIS, 1, "2024-01-01T00:00:00+00:00", "k", "s", canonical(back["data"]))
        == digest
    )


# -- TLS: every broker test talks TLS with a client certificate (the shipped configuration) ---

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI missing")


def other_ca(tmp_path: Path) -> Path:
    return TestPki(tmp_path / "other-pki", "other").ca_file


def link_with_ca(broker: Mosquitto, ca_file: Path, **kw: object) -> MqttLink:
    config = broker.mqtt_config(STATION, **kw)
    tls = config.tls.model_copy(update={"ca_file": ca_file})
    return MqttLink(config.model_copy(update={"tls": tls}), STATION, signing_key=KEY)


@needs_mosquitto
@needs_openssl
def test_tls_refuses_a_broker_signed_by_another_ca(
    broker: Mosquitto, tmp_path: Path, caplog
) -> None:
    link = link_with_ca(broker, other_ca(tmp_path), reconnect_min_s=1, reconnect_max_s=1)
    link.start()
    try:
        wait_for(lambda: link.last_error is not None, timeout=15, what="a connection error")
        assert "certificate verify failed" in link.last_error
        assert not link.is_connected()
        assert "mqtt.tls.ca_file" in caplog.text, "the log says what to check"
    finally:
        link.stop()


@needs_mosquitto
@needs_openssl
def test_only_the_insecure_setting_skips_verification(
    broker: Mosquitto, tmp_path: Path, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="sync.mqtt"):
        link = link_with_ca(broker, other_ca(tmp_path), tls_insecure_skip_verify=True)
    assert "NOT checked" in caplog.text, "switching verification off is logged loudly"
    link.start()
    try:
        assert link.wait_connected(15), link.last_error
    finally:
        link.stop()
    assert MqttConfig().tls_insecure_skip_verify is False
    assert [n for n in MqttConfig.model_fields if "verify" in n] == ["tls_insecure_skip_verify"], (
        "no other way to switch verification off"
    )


@needs_mosquitto
def test_a_stop_signal_landing_inside_the_publisher_process_wait_does_not_deadlock(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m sync.mqtt`` waits for its stop in ``stop.wait(0.5)`` on the main thread,
    and Python runs a signal handler on that thread between two bytecodes, also while
    ``wait()`` holds the event's lock. The SIGTERM handler must not wait for that lock: the
    process would hang instead of stopping. The signal is sent from inside ``wait()`` (a
    real signal, the real handler); a SIGALRM ends the test instead of hanging it."""
    import sync.mqtt.__main__ as publisher_main

    home = tmp_path / "home"
    make_catalog(home).close()
    home_key(home)
    config = write_station_config(tmp_path / "station.toml", broker)
    real_run_publisher = publisher_main.run_publisher

    signalled: list[list[bool]] = []

    def run_publisher(*args, stop: threading.Event, **kwargs):  # type: ignore[no-untyped-def]
        signalled.append(signal_inside(stop, "wait"))
        return real_run_publisher(*args, stop=stop, **kwargs)

    monkeypatch.setattr(publisher_main, "run_publisher", run_publisher)
    with deadlock_alarm(10):
        code = publisher_main.main(["--home", str(home), "--config", str(config)])
    assert signalled == [[True]]
    assert code == 0
