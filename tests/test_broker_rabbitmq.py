"""recdock on a second, clusterable broker: RabbitMQ 3.10's MQTT plugin (deploy/rabbitmq/).

One real RabbitMQ node per session (tests/rabbitmq.py), running deploy/rabbitmq/rabbitmq.conf
as shipped, its users made by deploy/rabbitmq/recdock-users; clients log in with certificates
of a test CA (common name = user name), over TLS, with MQTT 3.1.1.

What Mosquitto's ACL says (tests/test_broker.py), RabbitMQ's permissions say too, but it
answers a refused publish or subscription by closing the connection (MQTT 3.1.1 has no
refusal for either); the tests assert that. Two things of RabbitMQ's MQTT plugin differ from
Mosquitto and are shown as they are (docs/deployment.md, "Brokers"): a ``.`` inside a topic
level arrives as ``/`` (a topic is an AMQP routing key), and a retained message reaches only
a subscription naming its topic exactly. The end-to-end tests run the station's own link
and outbox publisher and the central store's own consumer and command publisher; the last
joins a second node to the first, a cluster of two.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.catalog import Catalog, audit, outbox
from agent.catalog.faults import report_fault
from central.catalog import CentralCatalog
from central.consumer import MqttConsumer
from central.enrolment import StationKeys
from sync.mqtt.link import MqttLink
from sync.mqtt.publisher import OutboxPublisher
from sync.wire import commands, topics
from sync.wire.signing import parse_public_key, public_key_text
from tests.mosquitto import CENTRAL, Subscriber, TestPki
from tests.rabbitmq import INSTALLED, SHIPPED_CONF, SHIPPED_USERS, TEST_LIMITS, RabbitMQ
from tests.recorders import wait_for
from tests.signing_keys import new_key, register
from tests.test_broker import connect, stop
from tests.test_mqtt import add_events, needs_openssl

pytestmark = [
    needs_openssl,
    pytest.mark.skipif(
        not INSTALLED and not os.environ.get("CI"), reason="rabbitmq-server not installed"
    ),
]

A, B = "ST-RA", "ST-RB"  # two stations for the permission tests
STATION = "ST-R1"  # the end-to-end station
KEY = new_key()  # its signing key
CENTRE_KEY = new_key()


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    broker = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"), [A, B, STATION])
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


class Client:
    """A connected paho client that records what became of it (acks, disconnects)."""

    def __init__(self, broker: RabbitMQ, identity: str, client_id: str) -> None:
        self.acked: list[int] = []
        self.subacked = threading.Event()
        self.dropped = threading.Event()
        self.paho = broker.client(identity, client_id, reconnect_on_failure=False)
        self.paho.on_publish = lambda c, u, mid, rc, p: self.acked.append(mid)
        self.paho.on_subscribe = lambda c, u, mid, rcs, p: self.subacked.set()
        outcome = connect(self.paho, broker.port)
        assert outcome == "connected", outcome
        self.paho.on_disconnect = lambda c, u, f, rc, p: self.dropped.set()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        return self.paho.publish(topic, payload, qos=1, retain=retain).mid

    def close(self) -> None:
        stop(self.paho)


@pytest.fixture
def clients(rabbit: RabbitMQ) -> Iterator[dict[str, Client]]:
    """Connected as station A, station B and the centre; closed after the test."""
    made = {
        A: Client(rabbit, A, f"recdock-{A}"),
        B: Client(rabbit, B, f"recdock-{B}"),
        CENTRAL: Client(rabbit, CENTRAL, "recdock-central-test"),
    }
    yield made
    for c in made.values():
        c.close()


def watch(rabbit: RabbitMQ, pattern: str = "recdock/#") -> Subscriber:
    """The centre's reading of ``pattern``, under a client id of the centre's."""
    return Subscriber(rabbit, pattern, client_id="recdock-central-watch")


# -- the configuration under test is the shipped one -------------------------------------------


def test_the_tests_run_the_shipped_configuration_with_only_port_and_folder_replaced(
    rabbit: RabbitMQ,
) -> None:
    shipped = SHIPPED_CONF.read_text(encoding="utf-8")
    running = rabbit.conf.read_text(encoding="utf-8")
    replaced = shipped.replace(
        "mqtt.listeners.ssl.default = 8883", f"mqtt.listeners.ssl.default = 127.0.0.1:{rabbit.port}"
    ).replace("/etc/rabbitmq/recdock/", f"{rabbit.workdir / 'etc'}/")
    assert running == replaced + TEST_LIMITS
    for line in (
        "listeners.tcp = none",
        "mqtt.listeners.tcp = none",
        "ssl_options.fail_if_no_peer_cert = true",
        "mqtt.ssl_cert_login = true",
        "mqtt.allow_anonymous = false",
    ):
        assert f"\n{line}\n" in shipped, line
    users = rabbit.ctl("list_users", "--quiet", "--no-table-headers").split()
    assert "guest" not in users and {CENTRAL, A, B} <= set(users)


def test_recdock_users_refuses_a_station_id_with_a_dot() -> None:
    """Its topics would come back with '/' for '.' (below): refused, with what to do."""
    done = subprocess.run(
        [sys.executable, str(SHIPPED_USERS), "--print", "ST-1", "st.02"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert "'st.02'" in done.stderr and "without one" in done.stderr


# -- who may connect -------------------------------------------------------------------------


def test_without_a_client_certificate_or_tls_nobody_connects(
    rabbit: RabbitMQ, tmp_path: Path
) -> None:
    bare = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous")
    bare.tls_set(ca_certs=str(rabbit.pki.ca_file))
    rogue_files = TestPki(tmp_path / "rogue", "rogue").client(A)
    rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recdock-{A}")
    rogue.tls_set(
        ca_certs=str(rabbit.pki.ca_file),
        certfile=str(rogue_files.cert_file),
        keyfile=str(rogue_files.key_file),
    )
    outcomes = {}
    for name, client in (("no certificate", bare), ("another CA", rogue)):
        try:
            outcomes[name] = connect(client, rabbit.port, timeout=5)
        finally:
            stop(client)
    assert "connected" not in outcomes.values(), outcomes
    with socket.create_connection(("127.0.0.1", rabbit.port), timeout=5) as s:
        s.sendall(bytes.fromhex("101000044d5154540402003c0004746573") + b"t")  # plain CONNECT
        try:
            answer = s.recv(4)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), "a CONNACK came back over plain TCP"


@pytest.mark.parametrize(
    ("identity", "username", "password"),
    [
        ("nobody", None, None),  # a certificate of the CA, but no such user: no anonymous login
        (A, A, "wrong"),  # a station's own name with a password: the users have none
        (A, "guest", "guest"),  # the default user is gone
        (A, B, None),  # A's certificate claiming B's name
        (A, CENTRAL, "any"),
    ],
    ids=["unknown-user", "wrong-password", "guest", "other-station", "centre"],
)
def test_only_the_certificates_own_name_logs_in(
    rabbit: RabbitMQ, identity: str, username: str | None, password: str | None
) -> None:
    client = rabbit.client(identity, f"recdock-{identity}-probe")
    if username is not None:
        client.username_pw_set(username, password)
    try:
        outcome = connect(client, rabbit.port, timeout=5)
    finally:
        stop(client)
    assert outcome.startswith("refused"), outcome
    assert "user name or password" in outcome.lower(), outcome


# -- where they may write and read -------------------------------------------------------------


def test_a_station_publishes_its_own_topics_and_the_centre_reads_them(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    sub = watch(rabbit)
    try:
        mid = clients[A].publish(f"recdock/{A}/event", b"mine")
        wait_for(lambda: mid in clients[A].acked, what="the PUBACK")
        assert wait_for(lambda: sub.on(f"recdock/{A}/event"), what="the centre got it")
    finally:
        sub.close()


@pytest.mark.parametrize("topic", [f"recdock/{B}/event", "recdock/elsewhere", "other/topic"])
def test_a_station_writing_outside_its_topics_is_disconnected_and_nothing_arrives(
    rabbit: RabbitMQ, clients: dict[str, Client], topic: str
) -> None:
    sub = watch(rabbit)
    try:
        mid = clients[A].publish(topic, b'{"forged": true}')
        assert clients[A].dropped.wait(10), "RabbitMQ closes the connection of a refused publish"
        assert mid not in clients[A].acked
        clients[B].publish(f"recdock/{B}/marker", b"marker")  # B's own: delivered in order
        wait_for(lambda: sub.on(f"recdock/{B}/marker"), what="the marker")
        assert sub.on(topic) == []
    finally:
        sub.close()


@pytest.mark.parametrize("pattern", [f"recdock/{B}/command/#", "recdock/+/command/#", "#"])
def test_a_station_cannot_read_another_stations_topics(
    rabbit: RabbitMQ, clients: dict[str, Client], pattern: str
) -> None:
    clients[A].paho.subscribe(pattern, qos=1)
    assert clients[A].dropped.wait(10), "RabbitMQ closes the connection of a refused subscription"
    assert not clients[A].subacked.is_set()


def test_a_station_reads_its_own_commands_and_the_centre_writes_only_commands(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    inbox = Subscriber(rabbit, f"recdock/{A}/command/#", client_id=f"recdock-{A}", identity=A)
    try:
        topic = f"recdock/{A}/command/fault/k1"
        clients[CENTRAL].publish(topic, b"a command")
        wait_for(lambda: inbox.on(topic), what="the command at the station")
        mid = clients[CENTRAL].publish(f"recdock/{A}/event", b"the centre forging an event")
        assert clients[CENTRAL].dropped.wait(10)
        assert mid not in clients[CENTRAL].acked
    finally:
        inbox.close()


def test_a_station_cannot_take_the_centres_client_id_and_its_queue(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    """A station connecting with the centre's client id is refused the centre's queue, so a
    clean session cannot delete what waits there for the central store."""
    durable = rabbit.client(CENTRAL, "recdock-central-durable", clean_session=False)
    subscribed = threading.Event()
    durable.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    assert connect(durable, rabbit.port) == "connected"
    durable.subscribe("recdock/#", qos=1)
    assert subscribed.wait(10)
    stop(durable)
    thief = rabbit.client(A, "recdock-central-durable")  # clean session: delete its queue
    try:
        outcome = connect(thief, rabbit.port, timeout=5)
    finally:
        stop(thief)
    queues = rabbit.ctl("list_queues", "-p", "recdock", "name", "--quiet", "--no-table-headers")
    assert outcome.startswith("refused"), outcome
    assert "mqtt-subscription-recdock-central-durableqos1" in queues.split()
    owner = rabbit.client(CENTRAL, "recdock-central-durable")  # the centre ends its session
    assert connect(owner, rabbit.port) == "connected"
    stop(owner)


# -- what RabbitMQ 3.10's MQTT plugin does differently -------------------------------------------


def test_a_dot_in_a_topic_level_arrives_as_a_slash(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    """MQTT's '/' is the routing key's '.', and every '.' comes back as '/': the topic the
    station signed is not the topic the centre gets (docs/deployment.md, "Brokers")."""
    sub = watch(rabbit)
    try:
        clients[A].publish(f"recdock/{A}/fault/store.full-store-1a2b3c4d", b"x")
        wait_for(lambda: sub.on(f"recdock/{A}/fault/store/full-store-1a2b3c4d"), what="it")
        assert sub.on(f"recdock/{A}/fault/store.full-store-1a2b3c4d") == []
    finally:
        sub.close()


def test_a_retained_message_reaches_only_a_subscription_naming_its_topic(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    topic = f"recdock/{A}/status"
    mid = clients[A].publish(topic, b"online", retain=True)
    wait_for(lambda: mid in clients[A].acked, what="the PUBACK")
    exact = watch(rabbit, topic)
    wildcard = Subscriber(rabbit, f"recdock/{A}/#", client_id="recdock-central-wild")
    try:
        wait_for(lambda: exact.on(topic), what="the retained message on the exact topic")
        assert exact.on(topic) == [(b"online", True)]
        clients[A].publish(f"recdock/{A}/marker", b"marker")
        wait_for(lambda: wildcard.on(f"recdock/{A}/marker"), what="the marker")
        assert wildcard.on(topic) == [], "RabbitMQ 3.10 sends no retained message to a wildcard"
    finally:
        exact.close()
        wildcard.close()


def test_a_command_retained_while_the_station_was_away_does_not_reach_it(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    """The station subscribes ``recdock/<id>/command/#`` with a clean session: what the centre
    published (retained) while it was offline is not sent when it comes back."""
    topic = f"recdock/{B}/command/fault/while-away"
    mid = clients[CENTRAL].publish(topic, b"a command", retain=True)
    wait_for(lambda: mid in clients[CENTRAL].acked, what="the PUBACK")
    clients[B].close()  # the station B of the fixture leaves its client id free
    inbox = Subscriber(rabbit, f"recdock/{B}/command/#", client_id=f"recdock-{B}", identity=B)
    try:
        clients[CENTRAL].publish(topic, b"marker")
        wait_for(lambda: inbox.on(topic), what="the marker")
        assert inbox.on(topic) == [(b"marker", False)]
    finally:
        inbox.close()
        clients[CENTRAL].publish(topic, b"", retain=True)  # cleared, as the centre would


# -- end to end: the station's own code and the central store's --------------------------------


def station_link(rabbit: RabbitMQ, **kw: object) -> MqttLink:
    return MqttLink(rabbit.mqtt_config(STATION, reconnect_max_s=1, **kw), STATION, signing_key=KEY)


_sessions = itertools.count(1)


def centre(rabbit: RabbitMQ, tmp_path: Path) -> MqttConsumer:
    """The central store's consumer, under a client id of its own: each test's persistent
    session (a durable queue) holds nothing an earlier test left."""
    keys = StationKeys(register({STATION: KEY}))
    client_id = f"recdock-central-e2e{next(_sessions)}"
    settings = rabbit.consumer_settings(client_id=client_id, reconnect_max_s=1)
    return MqttConsumer(
        CentralCatalog(tmp_path / "central.db"), settings, keys=keys, signing_key=CENTRE_KEY
    )


def end_session(rabbit: RabbitMQ, consumer: MqttConsumer) -> None:
    """Connect once more with a clean session: the broker drops the consumer's queue."""
    client = rabbit.client(CENTRAL, consumer.settings.client_id)
    assert connect(client, rabbit.port) == "connected"
    stop(client)


def commands_at(received: list[tuple[str, bytes]], action: str) -> list[dict]:
    public = parse_public_key(public_key_text(CENTRE_KEY))
    docs = [commands.verify_command(public, t, p) for t, p in list(received) if p]
    return [d for d in docs if d["action"] == action]


class Running:
    """The station's link and outbox publisher (with a command inbox) and the central store's
    consumer and command publisher, all on ``rabbit``; stopped on exit."""

    def __init__(self, rabbit: RabbitMQ, home: Path, tmp_path: Path) -> None:
        self.rabbit = rabbit
        self.consumer = centre(rabbit, tmp_path)
        self.station = Catalog(home / "catalog.db", station_id=STATION)
        self.link = station_link(rabbit)
        self.received: list[tuple[str, bytes]] = []
        inbox = f"recdock/{STATION}/command/#"
        self.link.subscribe(inbox, lambda t, p: self.received.append((t, p)))
        self.publisher = OutboxPublisher(
            self.station.path, STATION, self.link, signing_key=KEY, idle_poll_s=0.05
        )

    def __enter__(self) -> Running:
        self.consumer.start()
        assert self.consumer.wait_subscribed(15)
        self.publisher.start()
        self.link.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.publisher.stop()
        self.link.stop()
        self.consumer.stop()
        if self.rabbit.running:
            end_session(self.rabbit, self.consumer)

    def all_events_at_the_centre(self, timeout: float = 10.0) -> None:
        head = audit.head(self.station)[0]
        wait_for(
            lambda: len(self.consumer.catalog.event_ids(STATION)) == head,
            timeout=timeout,
            what=f"the station's {head} events at the central store",
        )


def test_the_station_and_the_centre_over_rabbitmq(
    rabbit: RabbitMQ, home: Path, tmp_path: Path
) -> None:
    """Signed events, the retained status and a fault reach the central store and are stored;
    the centre's signed command for the fault reaches the station."""
    with Running(rabbit, home, tmp_path) as run:
        ids = add_events(run.station, 25)
        fault = report_fault(run.station, "storage", "store", "the store reached its reserve")
        run.all_events_at_the_centre()
        got = wait_for(lambda: commands_at(run.received, "received"), what="the command")
        assert got[0]["fault_id"] == fault.id
        central = run.consumer.catalog
        assert [f["id"] for f in central.faults(station=STATION)] == [fault.id]
        view = central.station(STATION)
        assert view["status"] == "online" and view["chain"]["state"] == "ok"
        assert set(ids) < set(central.event_ids(STATION))
        assert run.consumer.stats["rejected"] == run.consumer.stats["security_alerts"] == 0


def test_a_fault_whose_id_has_a_dot_survives_rabbitmq(
    rabbit: RabbitMQ, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ turns a '.' in a topic into '/' (test above), so topic levels carry no dot
    (sync/wire/topics.py level()): a ``store.full`` fault's retained message is stored at the
    centre under its own id, and the centre's command for it reaches the station under the
    topic it was signed for, and verifies."""
    with Running(rabbit, home, tmp_path) as run:
        fault = report_fault(run.station, "store.full", "store", "the store reached its reserve")
        assert "." in fault.id
        run.all_events_at_the_centre()
        wait_for(lambda: run.received, what="the centre's command at the station")
        topic, payload = run.received[0]
        assert topic == f"recdock/{STATION}/command/fault/{topics.level(fault.id)}"
        assert "." not in topic
        doc = commands.verify_command(parse_public_key(public_key_text(CENTRE_KEY)), topic, payload)
        assert doc["fault_id"] == fault.id
        assert [f["id"] for f in run.consumer.catalog.faults(station=STATION)] == [fault.id]
        assert run.consumer.stats["rejected"] == 0, caplog.text
        assert run.consumer.stats["security_alerts"] == 0


def test_events_queued_while_the_broker_restarts_all_arrive(
    rabbit: RabbitMQ, home: Path, tmp_path: Path
) -> None:
    """The station keeps its outbox while the broker is away; the centre's persistent session
    (a durable queue) outlives the restart: every event arrives, once."""
    try:
        with Running(rabbit, home, tmp_path) as run:
            ids = add_events(run.station, 10)
            run.all_events_at_the_centre()
            rabbit.stop()
            wait_for(lambda: not run.link.is_connected(), what="the station notices")
            ids += add_events(run.station, 40, start=10)
            assert outbox.backlog(run.station.conn) == 40, "nothing leaves without a broker"
            rabbit.start()
            wait_for(lambda: outbox.backlog(run.station.conn) == 0, timeout=60, what="drained")
            run.all_events_at_the_centre(timeout=60)
            got = run.consumer.catalog.event_ids(STATION)
            assert sorted(got) == sorted(ids), "each event once, none lost"
            assert run.consumer.catalog.station(STATION)["chain"]["state"] == "ok"
    finally:
        if not rabbit.running:
            rabbit.start()


def test_a_message_over_the_size_limit_reaches_nobody(
    rabbit: RabbitMQ, clients: dict[str, Client]
) -> None:
    """max_message_size: RabbitMQ refuses the publish (its log says so) and sends no PUBACK;
    the MQTT connection stays open (unlike a refused topic)."""
    sub = watch(rabbit)
    try:
        mid = clients[A].publish(f"recdock/{A}/event", b"x" * 300_000)
        refusal = "message size 300000 is larger than configured max size 262144"
        wait_for(lambda: refusal in rabbit.log.read_text(errors="replace"), what="the refusal")
        assert mid not in clients[A].acked, "refused: no PUBACK, so a station would keep it"
        clients[B].publish(f"recdock/{B}/marker", b"marker")
        wait_for(lambda: sub.on(f"recdock/{B}/marker"), what="the marker")
        assert sub.on(f"recdock/{A}/event") == []
    finally:
        sub.close()


# -- a cluster of two nodes --------------------------------------------------------------------


@pytest.fixture
def second_node(rabbit: RabbitMQ, tmp_path: Path) -> Iterator[RabbitMQ]:
    """A second node, clustered with the session's (which stands alone again afterwards)."""
    node = RabbitMQ(tmp_path / "node2", rabbit.stations, peer=rabbit)
    try:
        node.start()
        node.join()
        yield node
    finally:
        node.close()


def test_a_two_node_cluster_shares_users_and_routes_but_not_retained_messages(
    rabbit: RabbitMQ, second_node: RabbitMQ
) -> None:
    """A station on the second node (its user made once, on the first) reaches the centre on
    the first; its retained message is kept by the second node only (docs/deployment.md,
    "The path to a clustered broker")."""
    assert second_node.node in rabbit.ctl("cluster_status", "--formatter", "json")
    station = Client(second_node, A, f"recdock-{A}")
    centre = watch(rabbit)
    topic = f"recdock/{A}/bay/7"
    try:
        mid = station.publish(topic, b"retained on node 2", retain=True)
        wait_for(lambda: mid in station.acked, what="the PUBACK")
        wait_for(lambda: centre.on(topic), what="the message across the cluster")
        here = Subscriber(second_node, topic, client_id="recdock-central-node2")
        there = Subscriber(rabbit, topic, client_id="recdock-central-node1")
        try:
            wait_for(lambda: here.on(topic), what="the retained copy on node 2")
            assert here.on(topic) == [(b"retained on node 2", True)]
            station.publish(topic, b"marker")
            wait_for(lambda: (b"marker", False) in there.on(topic), what="the marker on node 1")
            assert there.on(topic) == [(b"marker", False)], "node 1 keeps no retained copy"
        finally:
            here.close()
            there.close()
    finally:
        centre.close()
        station.close()
