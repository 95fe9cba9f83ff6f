"""The station's MQTT side: outbox publisher, Last Will, clean stop, TLS; with a real Mosquitto.

Behaviour without a broker is shown on :class:`sync.mqtt.MemoryLink`; everything the broker does
(PUBACK, retained messages, the Last Will) is shown on a real ``mosquitto`` on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.catalog import Catalog
from sync import outbox, topics
from sync.mqtt import MemoryBroker, MemoryLink, MqttLink, OutboxPublisher, decode_payload
from sync.settings import MqttConfig
from tests.mosquitto import MOSQUITTO, Mosquitto, Subscriber
from tests.recorders import wait_for

STATION = "ST-T1"
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None and not os.environ.get("CI"), reason="mosquitto not installed"
)


def make_catalog(home: Path, station: str = STATION) -> Catalog:
    return Catalog(home / "catalog.db", station_id=station)


def add_events(catalog: Catalog, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        with catalog.tx():
            entry = catalog.append_audit("test.event", f"item-{i}", {"i": i})
        ids.append(f"{catalog.station_id}:{catalog.catalog_id}:{entry.seq}")
    return ids


def backlog(catalog: Catalog) -> int:
    return outbox.backlog(catalog.conn)


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def link_config(port: int, **kw: object) -> MqttConfig:
    return MqttConfig(enabled=True, host="127.0.0.1", port=port, keepalive=5, **kw)


# -- without a broker: the publisher's rules on MemoryLink -----------------------------------


def test_row_leaves_the_outbox_only_when_acknowledged(home: Path) -> None:
    catalog = make_catalog(home)
    add_events(catalog, 5)
    link = MemoryLink()
    link.hold_acks = True
    link.connect()
    pub = OutboxPublisher(catalog.path, STATION, link, max_inflight=3, idle_poll_s=0.05)
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


def test_unacknowledged_rows_are_resent_after_reconnect_and_replayed_after_restart(
    home: Path,
) -> None:
    catalog = make_catalog(home)
    ids = add_events(catalog, 4)
    broker = MemoryBroker()
    link = MemoryLink(broker)
    link.hold_acks = True
    link.connect()
    pub = OutboxPublisher(catalog.path, STATION, link, max_inflight=10, idle_poll_s=0.05)
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
    pub2 = OutboxPublisher(catalog.path, STATION, link2, idle_poll_s=0.05)
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

    class Rejecting(MemoryLink):
        rejects = 1

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
    pub = OutboxPublisher(catalog.path, STATION, link, retry_after_s=0.2, idle_poll_s=0.05)
    pub.start()
    try:
        wait_for(lambda: pub.stats.rejected == 1, what="a rejection")
        assert backlog(catalog) == 1, "a rejected message is not an acknowledged one"
        wait_for(lambda: backlog(catalog) == 0, what="the retry acknowledged")
    finally:
        pub.stop()
    assert len(link.broker.log) == 2


def test_publisher_sends_nothing_while_disconnected(home: Path) -> None:
    catalog = make_catalog(home)
    add_events(catalog, 3)
    link = MemoryLink()
    pub = OutboxPublisher(catalog.path, STATION, link, idle_poll_s=0.05)
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
    sub = Subscriber(broker.port)
    link = MqttLink(link_config(broker.port), STATION)
    pub = OutboxPublisher(catalog.path, STATION, link, idle_poll_s=0.05)
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
    link = MqttLink(link_config(broker.port, max_inflight=5, max_queued=5), STATION)
    pub = OutboxPublisher(catalog.path, STATION, link, max_inflight=50, idle_poll_s=0.05)
    pub.start()
    link.start()
    sub = Subscriber(broker.port)
    try:
        assert link.wait_connected(10)
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
def test_broker_down_rows_stay_and_drain_when_it_returns(broker: Mosquitto, home: Path) -> None:
    catalog = make_catalog(home)
    link = MqttLink(link_config(broker.port), STATION)
    pub = OutboxPublisher(catalog.path, STATION, link, idle_poll_s=0.05)
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
        broker.start()
        sub = Subscriber(broker.port)
        wait_for(lambda: backlog(catalog) == 0, timeout=30, what="outbox drained after restart")
        wait_for(lambda: len(sub.on(topics.event(STATION))) >= 40, what="all at subscriber")
        got = {json.loads(p)["event_id"] for p, _ in sub.on(topics.event(STATION))}
        assert got == set(ids)
        sub.close()
    finally:
        pub.stop()
        link.stop()


# -- the station process: Last Will on SIGKILL, "stopped" on a clean stop ---------------------


def write_station_config(path: Path, port: int, station: str = STATION, **extra: str) -> Path:
    lines = [f'station_id = "{station}"', "[mqtt]", "enabled = true", 'host = "127.0.0.1"']
    lines += [f"port = {port}", "keepalive = 5"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_station(home: Path, config: Path) -> subprocess.Popen[bytes]:
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
    config = write_station_config(tmp_path / "station.toml", broker.port)
    sub = Subscriber(broker.port)
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
    late = Subscriber(broker.port, client_id="late-sub")
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
    config = write_station_config(tmp_path / "station.toml", broker.port)
    sub = Subscriber(broker.port)
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
    late = Subscriber(broker.port, client_id="late-sub")
    try:
        wait_for(lambda: last_status(late) == "stopped", what="retained stopped")
        states = [decode_payload(p)["state"] for p, _ in late.on(topics.status(STATION))]
        assert "offline" not in states, "a clean stop must not fire the Last Will"
    finally:
        late.close()
