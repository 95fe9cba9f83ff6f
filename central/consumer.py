"""The central store's MQTT consumer: every station's topics into :mod:`central.catalog`.

It subscribes ``recdock/+/#`` at QoS 1 with paho-mqtt 2.x (VERSION2 callbacks, ``loop_start``)
and handles each topic kind (docs/mqtt.md). Every payload is checked against its JSON Schema
(``sync/schemas``) and against its topic (the station in the payload must be the station in
the topic); an invalid message is logged, counted, kept in the ``rejected`` table and dropped,
never a crash.

Delivery: paho's network thread only queues each message; a writer thread stores whatever has
arrived in one transaction and only then acknowledges those messages (``manual_ack``), so a
crash between receipt and commit makes the broker deliver them again, and the catalog pays one
fsync per batch rather than per message. Its
session is persistent (``clean_session=False``, or an MQTT 5 session expiry), so with a
broker that keeps sessions (Mosquitto ``persistence true``) messages published while the
central store is down are delivered when it returns. Duplicates (replays from a station's
outbox, redeliveries) are dropped by ``event_id``.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.catalog import CentralCatalog, now_utc
from sync.wire.payloads import load_schema, topic_kind

logger = logging.getLogger(__name__)

SUBSCRIPTION = "recdock/+/#"
SESSION_EXPIRY_S = 7 * 24 * 3600
BATCH_MAX = 1000


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    retained: bool
    mid: int
    qos: int


class InvalidMessage(ValueError):
    """A message that does not follow docs/mqtt.md; the text says what is wrong."""


class PayloadValidator:
    """JSON Schema validation of every payload kind (jsonschema, Draft 2020-12)."""

    def __init__(self) -> None:
        from jsonschema import Draft202012Validator, FormatChecker

        self._validators = {
            kind: Draft202012Validator(load_schema(kind), format_checker=FormatChecker())
            for kind in ("status", "bay", "recorder", "event", "fault")
        }

    def check(self, kind: str, doc: Any) -> None:
        errors = sorted(self._validators[kind].iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(top level)"
            raise InvalidMessage(f"{kind} payload: {where}: {first.message}")


@dataclass(frozen=True)
class ConsumerSettings:
    """How the central store reaches the broker."""

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


class MqttConsumer:
    """Subscribe to every station and keep the central catalog up to date."""

    def __init__(self, catalog: CentralCatalog, settings: ConsumerSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.validator = PayloadValidator()
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.RLock()
        self._queue: queue.Queue[_Incoming] = queue.Queue()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
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
        self._writer = threading.Thread(target=self._write_loop, name="central-mqtt-writer")
        self._writer.start()
        self.client.connect_async(s.host, s.port, s.keepalive, **kwargs)
        self.client.loop_start()

    def stop(self) -> None:
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

    # -- paho callbacks ------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            logger.error("central consumer: %s", self.last_error)
            return
        self._connected.set()
        self.last_error = None
        client.subscribe(SUBSCRIPTION, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        if any(rc.is_failure for rc in reason_codes):
            logger.error("central consumer: subscription to %s refused", SUBSCRIPTION)
            return
        self._subscribed.set()
        logger.info("central consumer: subscribed to %s", SUBSCRIPTION)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()
        self._subscribed.clear()
        logger.warning("central consumer: disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        self._queue.put(
            _Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.mid), msg.qos)
        )

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
            while True:
                try:
                    with self.catalog.tx():
                        for m in batch:
                            self.handle(m.topic, m.payload, retained=m.retained)
                    break
                except Exception:
                    # the catalog could not store them (disk full, I/O error, locked): no
                    # acknowledgement, and the same batch is tried again (not dropped: the
                    # broker would not send it again before a reconnect, and its in-flight
                    # window would stay full)
                    self.stats["errors"] += len(batch)
                    logger.exception(
                        "central consumer: could not store %d messages; retrying in %.1f s",
                        len(batch),
                        delay,
                    )
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, 30.0)
            for m in batch:
                if m.qos > 0:
                    self.client.ack(m.mid, m.qos)

    # -- one message (no broker needed: tests call this directly) --------------------------

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> str:
        """Validate and store one message; returns what happened (``stored``, ``duplicate``,
        ``cleared`` or ``rejected``).

        A message that cannot be stored for what it contains (invalid, or one that makes any
        step fail other than the catalog itself) is rolled back to its own savepoint and kept
        as rejected: one bad message never holds up the others. Raises only for a catalog
        that cannot store anything now (``sqlite3.OperationalError``: locked, disk full).
        """
        with self._lock, self.catalog.tx():
            self.stats["received"] += 1
            try:
                with self.catalog.savepoint():
                    outcome = self._handle(topic, payload, retained)
            except sqlite3.OperationalError:
                raise  # rolled back to the savepoint; the catalog cannot store anything now
            except Exception as exc:  # InvalidMessage, or content no check foresaw
                self.stats["rejected"] += 1
                reason = str(exc) if isinstance(exc, InvalidMessage) else f"{type(exc).__name__}"
                logger.warning("central consumer: dropped a message on %s: %s", topic, reason)
                self.catalog.record_rejected(topic, reason, payload)
                return "rejected"
            self.stats[outcome] += 1
            return outcome

    def _handle(self, topic: str, payload: bytes, retained: bool) -> str:
        parsed = topic_kind(topic)
        if parsed is None:
            raise InvalidMessage(f"unknown topic {topic!r} (see docs/mqtt.md)")
        station, kind, key = parsed
        doc = _decode(payload)
        received_at = now_utc()
        if doc is None:
            if kind in ("status", "bay", "recorder", "fault"):
                return self._cleared(station, kind, key, received_at)
            raise InvalidMessage(f"{kind} message with an empty payload")
        self.validator.check(kind, doc)
        if doc.get("station") != station:
            raise InvalidMessage(
                f"payload station {doc.get('station')!r} differs from the topic's {station!r}"
            )
        for field in ("at", "opened_at"):
            if field in doc and not _is_time(doc[field]):
                raise InvalidMessage(f"{field} {str(doc[field])[:40]!r} is not an ISO 8601 time")
        if kind == "event":
            if not str(doc.get("event_id", "")).startswith(f"{station}:"):
                raise InvalidMessage(
                    f"event_id {str(doc.get('event_id'))[:60]!r} does not start with {station!r}:"
                )
            return self.catalog.record_event(doc, received_at=received_at)
        if kind == "status":
            self.catalog.record_status(station, doc, live=not retained, received_at=received_at)
        elif kind == "bay":
            if str(doc["bay"]) != key:
                raise InvalidMessage(f"payload bay {doc['bay']} differs from the topic's {key}")
            self.catalog.record_bay(station, doc["bay"], doc, received_at=received_at)
        elif kind == "recorder":
            self.catalog.record_recorder(station, doc, received_at=received_at)
        elif kind == "fault":
            if doc["id"] != key:
                raise InvalidMessage(f"payload fault id {doc['id']!r} differs from {key!r}")
            self.catalog.record_fault(station, doc["id"], doc, received_at=received_at)
        return "stored"

    def _cleared(self, station: str, kind: str, key: str | None, at: str) -> str:
        if kind == "status":
            self.catalog.record_status(station, None, live=False, received_at=at)
        elif kind == "bay":
            if key is None or not (key.isascii() and key.isdigit()):
                raise InvalidMessage(f"bay topic level {key!r} is not a number")
            self.catalog.record_bay(station, int(key), None, received_at=at)
        elif kind == "fault":
            assert key is not None
            self.catalog.record_fault(station, key, None, received_at=at)
        # a cleared recorder topic keeps the last health we saw
        return "cleared"


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _decode(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError too
        raise InvalidMessage(f"payload is not UTF-8 JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise InvalidMessage("payload is not a JSON object")
    return doc
