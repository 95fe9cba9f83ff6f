"""The central store's MQTT consumer: every station's topics into :mod:`central.catalog`.

It subscribes ``recdock/+/#`` at QoS 1 with paho-mqtt 2.x (VERSION2 callbacks, ``loop_start``);
in a worker group (``shared_group``: several ``recdock-central`` processes sharing the work,
docs/central.md "Several workers") it subscribes the event stream through the MQTT 5 shared
subscription ``$share/<group>/recdock/+/event`` (each event goes to one worker of the group)
and the retained state topics with an ordinary subscription in every worker (a shared
subscription gets no retained messages, and their upserts are idempotent) (:func:`subscriptions`);
:mod:`central.messages` verifies each message against the station's enrolled key and its JSON
Schema and stores it, or keeps it apart as a security alert or a rejected message (never a
crash).

Delivery: paho's network thread only queues each message; a writer thread stores whatever has
arrived in one transaction and only then counts and acknowledges those messages
(:meth:`MqttConsumer.store_batch`, ``manual_ack``), so a crash between receipt and commit
makes the broker deliver them again, a failed commit counts nothing twice, and the catalog
pays one fsync per batch rather than per message. Its session is persistent
(``clean_session=False``, or an MQTT 5 session expiry), so with a broker that keeps sessions
(Mosquitto ``persistence true``) messages published while the central store is down are
delivered when it returns.
Duplicates (replays from a station's outbox, redeliveries) are dropped.

Limits, beside the broker's ``message_size_limit``: a payload over ``max_payload_bytes`` is
dropped at once (acknowledged, never queued nor stored) and counted (``oversize`` in
``/api/health``); the queue between paho's thread and the writer holds at most ``queue_max``
messages: when it is full, paho's thread waits (the broker keeps what it has not delivered),
so memory stays bounded by ``queue_max`` x ``max_payload_bytes``.

Commands to stations (:mod:`central.commands`) leave through the same connection: its
:class:`~central.commands.CommandPublisher` (``consumer.commands``) runs with the consumer and
is woken after every stored batch (a station's fault asks for a ``received`` command; an
applied command's topic is cleared) and after every connection.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.catalog import CentralCatalog
from central.commands import CommandPublisher
from central.enrolment import StationKeys
from central.messages import InvalidMessage, MessageHandler, PayloadValidator

__all__ = ["ConsumerSettings", "InvalidMessage", "MqttConsumer", "PayloadValidator"]

logger = logging.getLogger(__name__)

SUBSCRIPTION = "recdock/+/#"
# what every worker of a group subscribes besides the shared event stream: the retained state
# topics (sync/wire/topics.py), which a shared subscription would never send at subscribe
STATE_TOPICS = ("status", "health", "bay/+", "recorder/+", "fault/+")
SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH_MAX = 1000
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    retained: bool
    mid: int
    qos: int


@dataclass(frozen=True)
class ConsumerSettings:
    """How the central store reaches the broker, and its limits."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "recdock-central"
    protocol: str = "3.1.1"
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool = False
    persistent_session: bool = True
    reconnect_max_s: int = 30
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    queue_max: int = BATCH_MAX
    shared_group: str | None = None  # a worker group: MQTT 5 shared event stream


def subscriptions(shared_group: str | None) -> list[tuple[str, int]]:
    """The topic filters (QoS 1) of a consumer alone, or of one worker of ``shared_group``."""
    if not shared_group:
        return [(SUBSCRIPTION, 1)]
    return [(f"$share/{shared_group}/recdock/+/event", 1)] + [
        (f"recdock/+/{topic}", 1) for topic in STATE_TOPICS
    ]


class MqttConsumer:
    """Subscribe to every station and keep the central catalog up to date."""

    def __init__(
        self,
        catalog: CentralCatalog,
        settings: ConsumerSettings,
        *,
        keys: StationKeys,
        signing_key=None,  # Ed25519PrivateKey | None: the centre's, for its commands  # noqa: ANN001
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.stats: Counter[str] = Counter()
        self.handler = MessageHandler(catalog, keys, self.stats)
        self.last_error: str | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._queue: queue.Queue[_Incoming] = queue.Queue(maxsize=max(1, settings.queue_max))
        self._stop = threading.Event()
        self._closing = threading.Event()  # paho's thread stops waiting for room in the queue
        self._writer: threading.Thread | None = None
        if settings.shared_group and settings.protocol != "5":
            raise ValueError("a worker group needs MQTT 5 (shared subscriptions)")
        v5 = settings.protocol == "5"
        kwargs: dict[str, Any] = {}
        if not v5:
            kwargs["clean_session"] = not settings.persistent_session
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=True,
            **kwargs,
        )
        client.enable_logger(logging.getLogger("paho.mqtt"))
        client.reconnect_delay_set(1, max(1, settings.reconnect_max_s))
        if settings.tls or settings.ca_file or settings.cert_file:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        self.commands = CommandPublisher(
            catalog,
            signing_key,
            client,
            connected=self._subscribed.is_set,
            holder=settings.client_id,
        )

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        logger.info("central consumer: connecting to %s:%d as %s", s.host, s.port, s.client_id)
        kwargs: dict[str, Any] = {}
        if s.protocol == "5" and s.persistent_session:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs = {"clean_start": False, "properties": props}
        self._stop.clear()
        self._closing.clear()
        self._writer = threading.Thread(target=self._write_loop, name="central-mqtt-writer")
        self._writer.start()
        self.client.connect_async(s.host, s.port, s.keepalive, **kwargs)
        self.client.loop_start()
        self.commands.start()

    def stop(self) -> None:
        self._closing.set()
        self.commands.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        if self._writer is not None:
            self._writer.join(30)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    # -- paho callbacks ------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            logger.error("central consumer: %s", self.last_error)
            return
        self._connected.set()
        self.last_error = None
        client.subscribe(subscriptions(self.settings.shared_group))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        wanted = [t for t, _ in subscriptions(self.settings.shared_group)]
        if any(rc.is_failure for rc in reason_codes):
            logger.error("central consumer: subscription to %s refused", ", ".join(wanted))
            return
        self._subscribed.set()
        logger.info("central consumer: subscribed to %s", ", ".join(wanted))
        self.commands.wake()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()
        self._subscribed.clear()
        logger.warning("central consumer: disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        size = len(msg.payload)
        if size > self.settings.max_payload_bytes:
            self.stats["oversize"] += 1
            logger.warning(
                "central consumer: dropped a %d-byte message on %s (limit %d bytes)",
                size,
                msg.topic[:200],
                self.settings.max_payload_bytes,
            )
            if msg.qos > 0:
                client.ack(msg.mid, msg.qos)
            return
        item = _Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.mid), msg.qos)
        waited = False
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not waited:
                    self.stats["queue_full"] += 1
                    waited = True
        # stopping: not acknowledged, so the broker delivers it again to the next session

    def _write_loop(self) -> None:
        """Store queued messages in batches; acknowledge each batch after its commit."""
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            delay = 0.5
            while not self.store_batch(batch):
                # not dropped: the broker would not send it again before a reconnect, and its
                # in-flight window would stay full
                logger.warning("central consumer: retrying %d messages in %.1fs", len(batch), delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)
            self.commands.wake()

    def store_batch(self, batch: list[_Incoming]) -> bool:
        """Store ``batch`` in one transaction; only once it is committed, count its outcomes
        in ``stats`` and acknowledge its messages (QoS 1: ``client.ack``). False when the
        catalog could not store it (disk full, I/O error, locked): nothing is counted but
        ``errors``, nothing acknowledged, and the caller tries the same batch again."""
        counted: Counter[str] = Counter()
        self.handler.stats = counted
        try:
            self.handler.handle_batch([(m.topic, m.payload, m.retained) for m in batch])
        except Exception:
            self.stats["errors"] += len(batch)
            logger.exception("central consumer: could not store %d messages", len(batch))
            return False
        finally:
            self.handler.stats = self.stats
        self.stats.update(counted)
        for m in batch:
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        return True

    # -- one message (no broker needed: tests call this directly) --------------------------

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> str:
        """Verify and store one message (:meth:`central.messages.MessageHandler.handle`)."""
        return self.handler.handle(topic, payload, retained=retained)
