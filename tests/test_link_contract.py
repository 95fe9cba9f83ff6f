"""The MQTT link's contract: one suite, run against paho on a real Mosquitto and the memory link.

Every test here is written once against :class:`sync.mqtt.link.Link` and
:class:`~sync.mqtt.link.LinkListener`, and runs against

* ``real``: :class:`~sync.mqtt.link.MqttLink` (paho-mqtt 2.x) and a ``mosquitto`` the test
  starts on loopback (tests/mosquitto.py): frozen with SIGSTOP to hold its PUBACKs, stopped
  (or killed, when frozen) to drop the connection, started again on the same port;
* ``fake``: :class:`tests.memory_link.MemoryLink` on a :class:`~tests.memory_link.MemoryBroker`:
  ``hold_acks`` holds the PUBACKs, ``disconnect()``/``connect()`` drop and restore it.

The contract is what :class:`sync.mqtt.publisher.OutboxPublisher` relies on:

* ``publish`` while not connected (never connected, or the connection lost) is refused: it
  returns None, nothing is queued to go out later, no ``link_acked`` ever names it.
* Connecting tells every listener ``link_connected``; by then ``is_connected()`` is true and a
  publish is taken. Losing the connection tells every listener ``link_disconnected``; by then
  ``is_connected()`` is false.
* A taken message gets an int token, distinct from every other message in flight. The broker's
  PUBACK reaches ``link_acked(token, True, reason)``, once; without a PUBACK there is no
  ``link_acked``. A message taken but not acknowledged when the connection drops is sent again
  after it returns, and then acknowledged (at least once, never lost).
* When the link holds as many unacknowledged messages as it may, ``publish`` returns None at
  once (it never blocks); once they are acknowledged it takes messages again.
* ``retain=True`` leaves the message with the broker for later subscribers, the last value
  wins, and an empty retained payload clears it; ``retain=False`` leaves nothing behind.

The real link also publishes its own retained status; listeners hear ``link_acked`` for those
tokens too, which is why each test waits for the tokens it was given. The real link's callbacks
come from paho's thread, the memory link's synchronously: tests wait for what they heard with
deadlines. What a later subscriber finds retained on the real broker is learnt by subscribing
and then publishing a marker to the same topic: retained messages come before it.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.mqtt.link import Link, MqttLink
from tests.memory_link import Delivered, MemoryBroker, MemoryLink
from tests.mosquitto import MOSQUITTO, Mosquitto, Subscriber
from tests.recorders import wait_for

STATION = "ST-CONTRACT"
TOPICS = f"recdock/{STATION}/contract"  # the station's own topics: the broker's ACL allows them
KEY = Ed25519PrivateKey.generate()  # signs the real link's own status messages
CAPACITY = 5  # unacknowledged messages the link may hold (max_queued / capacity)
MARKER = b"\x00contract-marker"


class Heard:
    """A listener that records what it heard, and what the link said at that moment."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._lock = threading.Lock()
        self.calls: list[tuple[object, ...]] = []

    def link_connected(self) -> None:
        with self._lock:
            self.calls.append(("connected", self.link.is_connected()))

    def link_disconnected(self) -> None:
        with self._lock:
            self.calls.append(("disconnected", self.link.is_connected()))

    def link_acked(self, token: int, ok: bool, reason: str) -> None:
        with self._lock:
            self.calls.append(("acked", token, ok, reason))

    def heard(self, what: str) -> list[tuple[object, ...]]:
        with self._lock:
            return [c for c in self.calls if c[0] == what]

    def acks(self, token: int) -> list[tuple[object, ...]]:
        return [c for c in self.heard("acked") if c[1] == token]

    def wait(self, what: str, n: int = 1) -> list[tuple[object, ...]]:
        wait_for(lambda: len(self.heard(what)) >= n, what=f"{n} x link_{what}; heard {self.calls}")
        return self.heard(what)

    def wait_acked(self, *tokens: int) -> None:
        wait_for(
            lambda: all(self.acks(t) for t in tokens),
            what=f"link_acked for {tokens}; heard {self.calls}",
        )


class LinkUnderTest(Protocol):
    kind: str
    link: Link

    def connect(self) -> None:
        """Bring the link up for the first time."""
        ...

    def drop(self) -> None:
        """The connection is lost (the broker went away)."""
        ...

    def restore(self) -> None:
        """The broker is back; the link connects again."""
        ...

    def freeze(self) -> None:
        """The broker takes messages and acknowledges none of them."""
        ...

    def thaw(self) -> None:
        """The broker acknowledges again, what it held first."""
        ...

    def received(self, topic: str) -> list[bytes]:
        """What a subscriber listening since the start got on ``topic``."""
        ...

    def retained(self, topic: str) -> bytes | None:
        """What a subscriber arriving now is given as ``topic``'s retained message."""
        ...


# -- the real link: MqttLink and Mosquitto -----------------------------------------------------


def retained_on_broker(broker: Mosquitto, topic: str) -> bytes | None:
    """Subscribe afresh; the retained message (if any) arrives before a marker published next
    (as the station: only it may write its topics)."""
    got: list[tuple[bytes, bool]] = []
    subscribed, marked = threading.Event(), threading.Event()
    client = broker.client(STATION, f"contract-{uuid.uuid4().hex}")

    def on_connect(client, userdata, flags, reason_code, properties):  # noqa: ANN001
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):  # noqa: ANN001
        subscribed.set()

    def on_message(client, userdata, message):  # noqa: ANN001
        if message.payload == MARKER:
            marked.set()
        else:
            got.append((bytes(message.payload), bool(message.retain)))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect_async("127.0.0.1", broker.port, 30)
    client.loop_start()
    try:
        assert subscribed.wait(10), "the checking subscriber did not subscribe"
        client.publish(topic, MARKER, qos=1)
        assert marked.wait(10), "the marker did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    kept = [payload for payload, retain in got if retain]
    return kept[-1] if kept else None


class RealLink:
    kind = "real"

    def __init__(self, tmp_path: Path) -> None:
        self.broker = Mosquitto(tmp_path / "broker")
        self.broker.start()
        self.subscriber = Subscriber(self.broker, f"{TOPICS}/#", client_id="contract-sub")
        config = self.broker.mqtt_config(
            STATION,
            keepalive=10,
            max_inflight=CAPACITY,
            max_queued=CAPACITY,
            reconnect_min_s=1,
            reconnect_max_s=1,
        )
        self.link = MqttLink(config, STATION, signing_key=KEY)
        self.frozen = False

    def connect(self) -> None:
        self.link.start()

    def drop(self) -> None:
        if self.frozen:  # a stopped broker cannot exit on SIGTERM: kill it, PUBACKs unsent
            proc, self.broker.proc = self.broker.proc, None
            assert proc is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.frozen = False
        else:
            self.broker.stop()

    def restore(self) -> None:
        self.broker.start()

    def freeze(self) -> None:
        self.broker.pause()
        self.frozen = True

    def thaw(self) -> None:
        self.broker.resume()
        self.frozen = False

    def received(self, topic: str) -> list[bytes]:
        return [payload for payload, _ in self.subscriber.on(topic) if payload != MARKER]

    def retained(self, topic: str) -> bytes | None:
        return retained_on_broker(self.broker, topic)

    def close(self) -> None:
        if self.frozen:
            self.thaw()
        try:
            self.link.stop(timeout=2)
            self.subscriber.close()
        finally:
            self.broker.stop()


# -- the fake link: MemoryLink and MemoryBroker -----------------------------------------------


class FakeLink:
    kind = "fake"

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.link = MemoryLink(self.broker, capacity=CAPACITY)
        self._received: list[Delivered] = []
        self.broker.subscribe(f"{TOPICS}/#", self._received.append)

    def connect(self) -> None:
        self.link.connect()

    def drop(self) -> None:
        self.link.disconnect()
        self.link.hold_acks = False  # the broker it meets next acknowledges

    def restore(self) -> None:
        self.link.connect()

    def freeze(self) -> None:
        self.link.hold_acks = True

    def thaw(self) -> None:
        self.link.hold_acks = False
        self.link.release_acks()

    def received(self, topic: str) -> list[bytes]:
        return [m.payload for m in self._received if m.topic == topic and not m.retain]

    def retained(self, topic: str) -> bytes | None:
        got: list[Delivered] = []
        self.broker.subscribe(topic, got.append)
        kept = [m.payload for m in got if m.retain]
        return kept[-1] if kept else None

    def close(self) -> None:
        pass


# as in tests/test_mqtt.py: in CI (CI=true) a missing mosquitto is a failure, not a skip
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None and not os.environ.get("CI"), reason="mosquitto not installed"
)


@pytest.fixture(params=[pytest.param("real", marks=needs_mosquitto), "fake"])
def station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkUnderTest]:
    under_test: RealLink | FakeLink = RealLink(tmp_path) if request.param == "real" else FakeLink()
    try:
        yield under_test
    finally:
        under_test.close()


@pytest.fixture
def heard(station: LinkUnderTest) -> Heard:
    listener = Heard(station.link)
    station.link.add_listener(listener)
    return listener


@pytest.fixture
def connected(station: LinkUnderTest, heard: Heard) -> LinkUnderTest:
    station.connect()
    heard.wait("connected")
    return station


def publish_acked(
    station: LinkUnderTest, heard: Heard, topic: str, payload: bytes, *, retain: bool = False
) -> int:
    """Publish at QoS 1 and wait for its PUBACK."""
    token = station.link.publish(topic, payload, qos=1, retain=retain)
    assert token is not None, f"a connected link refused {topic}"
    heard.wait_acked(token)
    return token


# -- not connected: refused, not queued ----------------------------------------------------------


def test_publish_before_the_link_ever_connected_is_refused_and_never_sent_later(
    station: LinkUnderTest, heard: Heard
) -> None:
    assert station.link.is_connected() is False
    assert station.link.publish(f"{TOPICS}/early", b"too early", qos=1) is None
    station.connect()
    heard.wait("connected")
    # sent after connecting: a refused message queued after all would go out before it
    publish_acked(station, heard, f"{TOPICS}/early", b"in time")
    wait_for(lambda: station.received(f"{TOPICS}/early"), what="the message at the subscriber")
    assert station.received(f"{TOPICS}/early") == [b"in time"]


def test_losing_the_connection_tells_listeners_and_publish_is_refused_until_it_returns(
    connected: LinkUnderTest, heard: Heard
) -> None:
    connected.drop()
    assert heard.wait("disconnected") == [("disconnected", False)]
    assert connected.link.is_connected() is False
    assert connected.link.publish(f"{TOPICS}/drop", b"while away", qos=1) is None
    connected.restore()
    assert heard.wait("connected", 2) == [("connected", True), ("connected", True)]
    token = publish_acked(connected, heard, f"{TOPICS}/drop", b"back", retain=True)
    [(_, _, ok, _)] = heard.acks(token)
    assert ok is True
    assert connected.retained(f"{TOPICS}/drop") == b"back"


# -- connecting ------------------------------------------------------------------------------


def test_connecting_tells_every_listener_once_the_link_is_connected(
    station: LinkUnderTest, heard: Heard
) -> None:
    second = Heard(station.link)
    station.link.add_listener(second)
    station.connect()
    assert heard.wait("connected") == [("connected", True)]
    assert second.wait("connected") == [("connected", True)]
    assert station.link.is_connected() is True


# -- publishing and acknowledgements -------------------------------------------------------------


def test_a_published_message_gets_a_token_that_its_puback_names(
    connected: LinkUnderTest, heard: Heard
) -> None:
    token = connected.link.publish(f"{TOPICS}/ack", b"hello", qos=1)
    assert isinstance(token, int) and not isinstance(token, bool)
    heard.wait_acked(token)
    [(_, acked, ok, reason)] = heard.acks(token)
    assert (acked, ok) == (token, True) and isinstance(reason, str)
    wait_for(lambda: connected.received(f"{TOPICS}/ack"), what="the message at the subscriber")
    assert connected.received(f"{TOPICS}/ack") == [b"hello"]


def test_messages_in_flight_have_distinct_tokens_and_no_ack_comes_before_the_puback(
    connected: LinkUnderTest, heard: Heard
) -> None:
    connected.freeze()
    tokens = [connected.link.publish(f"{TOPICS}/inflight", b"%d" % i, qos=1) for i in range(3)]
    assert all(isinstance(t, int) for t in tokens) and len(set(tokens)) == 3, tokens
    assert [heard.acks(t) for t in tokens] == [[], [], []], "acknowledged without a PUBACK"
    connected.thaw()
    heard.wait_acked(*tokens)
    assert [[ok for *_, ok, _ in heard.acks(t)] for t in tokens] == [[True]] * 3


def test_a_full_link_refuses_at_once_and_takes_again_once_acknowledged(
    connected: LinkUnderTest, heard: Heard
) -> None:
    connected.freeze()
    taken: list[int] = []
    for i in range(CAPACITY + 1):
        token = connected.link.publish(f"{TOPICS}/full", b"%d" % i, qos=1)
        if token is None:
            break
        taken.append(token)
    else:
        pytest.fail(f"{CAPACITY + 1} unacknowledged messages taken; the cap is {CAPACITY}")
    assert taken, "nothing was taken by a connected link"
    assert connected.link.publish(f"{TOPICS}/full", b"still full", qos=1) is None
    connected.thaw()
    heard.wait_acked(*taken)
    publish_acked(connected, heard, f"{TOPICS}/full", b"room again")


def test_a_message_taken_before_the_connection_dropped_is_acknowledged_after_it_returns(
    connected: LinkUnderTest, heard: Heard
) -> None:
    connected.freeze()
    token = connected.link.publish(f"{TOPICS}/resend", b"in flight", qos=1, retain=True)
    assert token is not None
    connected.drop()  # before any PUBACK
    heard.wait("disconnected")
    assert heard.acks(token) == []
    connected.restore()
    heard.wait("connected", 2)
    heard.wait_acked(token)
    assert [ok for *_, ok, _ in heard.acks(token)] == [True]
    assert connected.retained(f"{TOPICS}/resend") == b"in flight", "the broker never got it"


# -- retained messages -----------------------------------------------------------------------


def test_a_retained_message_is_given_to_later_subscribers_and_the_last_value_wins(
    connected: LinkUnderTest, heard: Heard
) -> None:
    publish_acked(connected, heard, f"{TOPICS}/retained", b"first", retain=True)
    assert connected.retained(f"{TOPICS}/retained") == b"first"
    publish_acked(connected, heard, f"{TOPICS}/retained", b"second", retain=True)
    assert connected.retained(f"{TOPICS}/retained") == b"second"


def test_an_empty_retained_payload_clears_the_retained_message(
    connected: LinkUnderTest, heard: Heard
) -> None:
    publish_acked(connected, heard, f"{TOPICS}/cleared", b"bay 2: ready", retain=True)
    assert connected.retained(f"{TOPICS}/cleared") == b"bay 2: ready"
    publish_acked(connected, heard, f"{TOPICS}/cleared", b"", retain=True)
    assert connected.retained(f"{TOPICS}/cleared") is None


def test_a_message_published_without_retain_is_not_kept_for_later_subscribers(
    connected: LinkUnderTest, heard: Heard
) -> None:
    publish_acked(connected, heard, f"{TOPICS}/live", b"now only", retain=False)
    assert connected.retained(f"{TOPICS}/live") is None
