"""The shipped broker configuration (deploy/mosquitto/): who may connect, and where they may write.

Every test here runs a real Mosquitto with deploy/mosquitto/recdock.conf and its ACL as shipped
(tests/mosquitto.py replaces only the port and the folder of the TLS files), with certificates
from a test CA made by openssl: a client without a certificate, or with one another CA signed,
never gets in; a station, authenticated as its station id by its certificate, writes and reads
only ``recdock/<its id>/#``; the central store reads ``recdock/#`` and writes only commands
(``recdock/<station>/command/#``, each signed by the centre besides: sync/wire/commands.py);
a message over ``message_size_limit`` reaches nobody.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mosquitto import (
    CENTRAL,
    SHIPPED_ACL,
    SHIPPED_CONF,
    SHIPPED_FOLDER,
    Mosquitto,
    Subscriber,
    TestPki,
)
from tests.recorders import wait_for
from tests.test_mqtt import needs_mosquitto, needs_openssl

pytestmark = [needs_mosquitto, needs_openssl]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def connect(client: mqtt.Client, port: int, timeout: float = 10.0) -> str:
    """Connect and wait for the outcome: 'connected', or why not (refused, closed, TLS error)."""
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):  # noqa: ANN001
        outcome.append("connected" if not reason_code.is_failure else f"refused: {reason_code}")
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):  # noqa: ANN001
        outcome.append(f"closed before answering: {reason_code}")  # e.g. TLS refused the client
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect("127.0.0.1", port, 30)
    except (ssl.SSLError, OSError) as exc:
        return f"error: {exc}"
    client.loop_start()
    if not done.wait(timeout):
        outcome.append("no answer")
    return outcome[0]


def stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def delivered(
    broker: Mosquitto,
    attempt: tuple[mqtt.Client, str, bytes],
    marker: tuple[mqtt.Client, str],
) -> list[bytes]:
    """``attempt`` = (client, topic, payload) is published, then a marker by ``marker`` =
    (client, topic), both QoS 1; once the central store's subscriber has the marker (the
    broker handles one client's messages in order, and the attempt was acknowledged before
    the marker was sent), what it got on the attempt's topic."""
    sub = Subscriber(broker, client_id=f"watch-{uuid.uuid4().hex[:8]}")
    try:
        client, topic, payload = attempt
        client.publish(topic, payload, qos=1).wait_for_publish(10)
        marker_client, marker_topic = marker
        marker_client.publish(marker_topic, b"marker", qos=1).wait_for_publish(10)
        wait_for(lambda: sub.on(marker_topic), what="the marker")
        return [p for p, _ in sub.on(topic)]
    finally:
        sub.close()


# -- the configuration under test is the shipped one -------------------------------------------


def test_the_tests_run_the_shipped_configuration_with_only_port_and_folder_replaced(
    broker: Mosquitto,
) -> None:
    shipped = SHIPPED_CONF.read_text(encoding="utf-8")
    running = broker.conf.read_text(encoding="utf-8")
    replaced = shipped.replace("\nlistener 8883\n", f"\nlistener {broker.port} 127.0.0.1\n")
    replaced = replaced.replace(SHIPPED_FOLDER, f"{broker.workdir / 'etc'}/")
    assert running.endswith(replaced), "the test broker's file must end with the shipped one"
    assert (broker.workdir / "etc" / "acl").read_bytes() == SHIPPED_ACL.read_bytes()
    settings = {line.split()[0] for line in shipped.splitlines() if re.match(r"^[a-z]", line)}
    assert {
        "allow_anonymous",
        "acl_file",
        "message_size_limit",
        "require_certificate",
        "use_identity_as_username",
        "certfile",
    } <= settings
    assert "allow_anonymous false" in shipped and "require_certificate true" in shipped


# -- who may connect -------------------------------------------------------------------------


def test_an_anonymous_client_is_refused(broker: Mosquitto) -> None:
    """TLS without a client certificate: the handshake fails, no MQTT session begins."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anonymous")
    client.tls_set(ca_certs=str(broker.pki.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    try:
        outcome = connect(client, broker.port)
    finally:
        stop(client)
    assert outcome != "connected", outcome


def test_a_client_without_tls_is_refused(broker: Mosquitto) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain")
    client.username_pw_set("ST-A", "any password")
    try:
        outcome = connect(client, broker.port, timeout=5)
    finally:
        stop(client)
    assert outcome != "connected", outcome


def test_a_certificate_from_another_ca_is_refused(broker: Mosquitto, tmp_path: Path) -> None:
    """A certificate with a station's name, signed by a CA the broker does not trust."""
    rogue = TestPki(tmp_path / "rogue-pki", "rogue").client("ST-A")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
    client.tls_set(
        ca_certs=str(broker.pki.ca_file),
        certfile=str(rogue.cert_file),
        keyfile=str(rogue.key_file),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    try:
        outcome = connect(client, broker.port)
    finally:
        stop(client)
    assert outcome != "connected", outcome


def test_a_station_with_its_certificate_connects(broker: Mosquitto) -> None:
    client = broker.client("ST-A", "st-a")
    try:
        assert connect(client, broker.port) == "connected"
    finally:
        stop(client)


def test_the_tls_port_speaks_no_plain_mqtt(broker: Mosquitto) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(bytes.fromhex("101000044d5154540402003c0004746573") + b"t")  # MQTT CONNECT
        try:
            answer = s.recv(4)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), "a CONNACK came back over plain TCP"


# -- where they may write and read -------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_station_a_cannot_publish_under_station_b(broker: Mosquitto, protocol: int) -> None:
    a = broker.client("ST-A", "st-a", protocol=protocol)
    acks: list[str] = []
    a.on_publish = lambda c, u, mid, reason_code, p: acks.append(str(reason_code))
    assert connect(a, broker.port) == "connected"
    try:
        got = delivered(
            broker, (a, "recdock/ST-B/event", b'{"forged": true}'), (a, "recdock/ST-A/marker")
        )
        own = delivered(broker, (a, "recdock/ST-A/event", b"mine"), (a, "recdock/ST-A/marker2"))
    finally:
        stop(a)
    assert got == [], "the broker delivered a message written under another station"
    assert own == [b"mine"], "the station's own topic works"
    if protocol == mqtt.MQTTv5:
        assert acks[0] == "Not authorized", acks


def test_a_station_cannot_write_outside_recdock_or_read_another_station(
    broker: Mosquitto,
) -> None:
    b = broker.client("ST-B", "st-b")
    assert connect(b, broker.port) == "connected"
    try:
        b.publish("recdock/ST-B/status", b"retained-b", qos=1, retain=True).wait_for_publish(10)
    finally:
        stop(b)
    # ST-A subscribes to everything: it is given only its own topics
    seen: list[str] = []
    subscribed = threading.Event()
    a = broker.client("ST-A", "st-a")
    a.on_subscribe = lambda *args: subscribed.set()
    a.on_message = lambda c, u, msg: seen.append(msg.topic)
    assert connect(a, broker.port) == "connected"
    try:
        a.subscribe("#", qos=1)
        assert subscribed.wait(10)
        a.publish("elsewhere/topic", b"x", qos=1).wait_for_publish(10)
        a.publish("recdock/ST-A/marker", b"m", qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: "recdock/ST-A/marker" in seen, what="ST-A's own message")
    finally:
        stop(a)
    assert "recdock/ST-B/status" not in seen, "a station read another station's topic"
    assert "elsewhere/topic" not in seen


def test_the_central_store_reads_every_station_and_writes_nothing_of_theirs(
    broker: Mosquitto,
) -> None:
    station = broker.client("ST-A", "st-a")
    assert connect(station, broker.port) == "connected"
    central = broker.client(CENTRAL, "central-writer")
    assert connect(central, broker.port) == "connected"
    try:
        forged = delivered(
            broker,
            (central, "recdock/ST-A/event", b"from the centre"),
            (station, "recdock/ST-A/marker"),
        )
        read = delivered(
            broker, (station, "recdock/ST-A/event", b"read me"), (station, "recdock/ST-A/m2")
        )
    finally:
        stop(station)
        stop(central)
    assert forged == [], "the central store's identity wrote under a station"
    assert read == [b"read me"], "the central store reads the stations"


def test_the_central_store_writes_commands_that_only_their_station_reads(
    broker: Mosquitto,
) -> None:
    central = broker.client(CENTRAL, "central-commander")
    assert connect(central, broker.port) == "connected"
    a = Subscriber(broker, "recdock/ST-A/command/#", client_id="st-a-sub", identity="ST-A")
    b = Subscriber(broker, "recdock/+/command/#", client_id="st-b-sub", identity="ST-B")
    try:
        topic = "recdock/ST-A/command/fault/f1"
        central.publish(topic, b"ack", qos=1, retain=True).wait_for_publish(10)
        central.publish("recdock/ST-B/command/fault/m", b"marker", qos=1).wait_for_publish(10)
        wait_for(lambda: a.on(topic), what="ST-A's command")
        wait_for(lambda: b.on("recdock/ST-B/command/fault/m"), what="ST-B's own marker")
        assert [p for p, _ in a.on(topic)] == [b"ack"]
        assert b.on(topic) == [], "a station read another station's command"
        central.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clears it
    finally:
        a.close()
        b.close()
        stop(central)


def test_a_message_over_the_size_limit_reaches_nobody(broker: Mosquitto) -> None:
    limit = int(re.search(r"^message_size_limit (\d+)$", broker.conf.read_text(), re.M)[1])
    a = broker.client("ST-A", "st-a")
    assert connect(a, broker.port) == "connected"
    try:
        big = delivered(
            broker, (a, "recdock/ST-A/event", b"x" * (limit + 1)), (a, "recdock/ST-A/marker")
        )
        fits = delivered(
            broker, (a, "recdock/ST-A/event", b"y" * limit), (a, "recdock/ST-A/marker2")
        )
    finally:
        stop(a)
    assert big == [], "an oversize message was delivered"
    assert fits == [b"y" * limit]
