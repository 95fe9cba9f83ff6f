"""The station's MQTT side: a small publish interface, paho behind it, and the outbox publisher.

Three pieces, each small:

* :class:`Link` is the interface the rest of the station sees: ``publish()`` returns a token
  (or None when the message was not taken), and a :class:`LinkListener` hears about
  connection changes and acknowledgements. :class:`MemoryLink` implements it in memory, so
  most tests need no broker; :class:`MqttLink` implements it on paho-mqtt 2.x.
* :class:`MqttLink` keeps the retained station status (``recdock/<station>/status``): the Last
  Will is ``offline``; ``online`` is published on every connect; a clean stop publishes
  ``stopped``. ``connect_async`` + ``loop_start``, VERSION2 callbacks, QoS 1, TLS and
  credentials from :class:`sync.settings.MqttConfig`.
* :class:`OutboxPublisher` is a thread with its own catalog connection. It sends outbox rows in
  id order and deletes a row only after the broker acknowledged it (PUBACK for QoS 1). paho
  keeps unacknowledged QoS 1 messages in memory and re-sends them after a reconnect; a process
  restart replays the whole outbox. A message may therefore arrive more than once, never zero
  times; receivers drop duplicates by ``event_id``.

Why tokens rather than mids straight from paho's callback: ``on_publish`` runs in paho's
network thread, can fire before ``publish()`` has returned the mid to us, and runs while paho
holds its message lock. The listener only appends ``(mid, ok)`` to a queue; the publisher thread
maps mid -> row id after ``publish()`` returned, so an early PUBACK is never lost, and it
deletes rows with its own connection.

Run a station's publisher on its own with ``python -m sync.mqtt --home DIR --config FILE``.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.errors import ConfigError, RecdockError
from agent.signals import SignalRelay
from sync import outbox, topics
from sync.settings import MqttConfig

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
PAYLOAD_KINDS = ("status", "bay", "recorder", "event", "fault")
STATUS_STATES = ("online", "offline", "stopped")


class LinkError(ConfigError):
    """The MQTT link could not be set up (missing or unreadable TLS files): a config error."""


# -- payloads and their schemas ---------------------------------------------------------------


def status_payload(station: str, state: str, *, client_id: str | None = None) -> bytes:
    """The retained station status. The Last Will (``offline``) carries no time: the broker
    publishes it when it notices the silence, and the receiver notes when it arrived."""
    if state not in STATUS_STATES:
        raise ValueError(f"status state must be one of {STATUS_STATES}, not {state!r}")
    doc: dict[str, Any] = {"station": station, "state": state}
    if state != "offline":
        doc["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    if client_id:
        doc["client_id"] = client_id
    return outbox.encode(doc).encode("utf-8")


def decode_payload(payload: bytes) -> Any:
    """A payload as JSON; an empty payload (a cleared retained topic) is None."""
    if not payload:
        return None
    return json.loads(payload.decode("utf-8"))


def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one payload kind (``status``, ``bay``, ``recorder``, ``event``,
    ``fault``), from ``sync/schemas/<kind>.json``."""
    if kind not in PAYLOAD_KINDS:
        raise ValueError(f"unknown payload kind {kind!r}; one of {PAYLOAD_KINDS}")
    return json.loads((SCHEMA_DIR / f"{kind}.json").read_text(encoding="utf-8"))


def topic_kind(topic: str) -> tuple[str, str, str | None] | None:
    """``recdock/<station>/<kind>[/<key>]`` -> (station, kind, key), or None when not ours."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != topics.PREFIX:
        return None
    station, kind = parts[1], parts[2]
    if kind in ("status", "event") and len(parts) == 3:
        return station, kind, None
    if kind in ("bay", "recorder", "fault") and len(parts) == 4 and parts[3]:
        return station, kind, parts[3]
    return None


# -- the interface in front of paho ------------------------------------------------------------


class LinkListener(Protocol):
    def link_connected(self) -> None: ...

    def link_disconnected(self) -> None: ...

    def link_acked(self, token: int, ok: bool, reason: str) -> None: ...


class Link(Protocol):
    """What the station needs from an MQTT client."""

    def add_listener(self, listener: LinkListener) -> None: ...

    def is_connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> int | None:
        """Hand one message to the client: a token that a later ``link_acked`` names, or None
        when the message was not taken (not connected, queue full). Never blocks on the
        network."""
        ...


@dataclass
class Delivered:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool = False


@dataclass
class MemoryBroker:
    """An in-memory stand-in for a broker, for tests: retained values, subscribers, a log."""

    retained: dict[str, bytes] = field(default_factory=dict)
    log: list[Delivered] = field(default_factory=list)
    subscribers: list[tuple[str, Callable[[Delivered], None]]] = field(default_factory=list)

    def subscribe(self, pattern: str, handler: Callable[[Delivered], None]) -> None:
        self.subscribers.append((pattern, handler))
        for topic, payload in list(self.retained.items()):
            if _matches(pattern, topic):
                handler(Delivered(topic, payload, 1, True))

    def deliver(self, message: Delivered) -> None:
        self.log.append(message)
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message.payload
            else:
                self.retained.pop(message.topic, None)
        for pattern, handler in list(self.subscribers):
            if _matches(pattern, message.topic):
                handler(Delivered(message.topic, message.payload, message.qos, False, message.dup))


def _matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    p_parts, t_parts = pattern.split("/"), topic.split("/")
    for i, p in enumerate(p_parts):
        if p == "#":
            return True
        if i >= len(t_parts) or (p != "+" and not fnmatch.fnmatchcase(t_parts[i], p)):
            return False
    return len(p_parts) == len(t_parts)


class MemoryLink:
    """A :class:`Link` in memory. Acknowledgements are immediate unless ``hold_acks`` is set,
    in which case :meth:`release_acks` sends them. Like paho, it keeps unacknowledged messages
    across a disconnect and sends them again (``dup``) on reconnect; ``capacity`` caps them."""

    def __init__(self, broker: MemoryBroker | None = None, *, capacity: int = 100) -> None:
        self.broker = broker or MemoryBroker()
        self.capacity = capacity
        self.hold_acks = False
        self._connected = False
        self._listeners: list[LinkListener] = []
        self._unacked: dict[int, Delivered] = {}
        self._sent: set[int] = set()
        self._next = 0
        self._lock = threading.RLock()

    def add_listener(self, listener: LinkListener) -> None:
        self._listeners.append(listener)

    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        with self._lock:
            self._connected = True
            resend = list(self._unacked.items())
        for token, message in resend:
            message.dup = True
            self._send(token, message)
        for listener in self._listeners:
            listener.link_connected()

    def disconnect(self) -> None:
        with self._lock:
            self._connected = False
            self._sent.clear()
        for listener in self._listeners:
            listener.link_disconnected()

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> int | None:
        with self._lock:
            if not self._connected or len(self._unacked) >= self.capacity:
                return None
            self._next = self._next % 65535 + 1
            token = self._next
            self._unacked[token] = Delivered(topic, payload, qos, retain)
            self._send(token, self._unacked[token])
            return token

    def _send(self, token: int, message: Delivered) -> None:
        self.broker.deliver(message)
        self._sent.add(token)
        if not self.hold_acks:
            self._ack(token)

    def _ack(self, token: int) -> None:
        with self._lock:
            if token not in self._unacked:
                return
            del self._unacked[token]
        for listener in self._listeners:
            listener.link_acked(token, True, "Success")

    def release_acks(self) -> int:
        """Acknowledge every message the broker has received on this connection."""
        with self._lock:
            tokens = [t for t in self._unacked if t in self._sent]
        for token in tokens:
            self._ack(token)
        return len(tokens)

    @property
    def unacked(self) -> int:
        return len(self._unacked)


# -- paho --------------------------------------------------------------------------------------


class MqttLink:
    """A :class:`Link` on paho-mqtt 2.x, with the retained station status and its Last Will."""

    def __init__(self, config: MqttConfig, station_id: str) -> None:
        self.config = config
        self.station_id = station_id
        self.client_id = config.resolved_client_id(station_id)
        self.status_topic = topics.status(station_id)
        self._listeners: list[LinkListener] = []
        self._connected = threading.Event()
        self.last_error: str | None = None
        self.connects = 0
        protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = True
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol, **kwargs
        )
        client.enable_logger(logging.getLogger("paho.mqtt"))
        client.max_inflight_messages_set(config.max_inflight)
        client.max_queued_messages_set(config.max_queued)
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        client.will_set(
            self.status_topic,
            status_payload(station_id, "offline", client_id=self.client_id),
            qos=1,
            retain=True,
        )
        self._set_tls(client)
        password = config.resolved_password()
        if config.username is not None:
            client.username_pw_set(config.username, password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client

    def _set_tls(self, client: mqtt.Client) -> None:
        tls = self.config.tls
        insecure = self.config.tls_insecure_skip_verify
        if not (tls.active or insecure):
            return
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path is not None and not Path(path).is_file():
                raise LinkError(f"mqtt.tls.{name}: {path} is not a readable file")
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise LinkError(f"mqtt.tls: cannot load the TLS files: {exc}") from exc
        if insecure:
            client.tls_insecure_set(True)
            logger.warning(
                "mqtt: tls_insecure_skip_verify is set: the broker's certificate and host name "
                "are NOT checked; anyone on the path can read and alter station telemetry"
            )

    # -- Link ----------------------------------------------------------------------------

    def add_listener(self, listener: LinkListener) -> None:
        self._listeners.append(listener)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> int | None:
        if not self._connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return None
        # MQTT_ERR_NO_CONN: the connection dropped just now; paho keeps the QoS 1 message and
        # sends it after reconnecting, so the token stays valid.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.warning("mqtt: publish to %s not taken: %s", topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        logger.info(
            "mqtt: connecting to %s:%d as %s (MQTT %s%s)",
            self.config.host,
            self.config.port,
            self.client_id,
            self.config.protocol,
            ", TLS" if self.config.tls.active or self.config.tls_insecure_skip_verify else "",
        )
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Clean stop: retained ``stopped`` (waited for up to ``timeout``), disconnect, stop the
        loop. Returns whether the broker acknowledged ``stopped``."""
        acknowledged = False
        if self._connected.is_set():
            info = self.client.publish(
                self.status_topic,
                status_payload(self.station_id, "stopped", client_id=self.client_id),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout)
                acknowledged = info.is_published()
            except (ValueError, RuntimeError):
                logger.exception("mqtt: the 'stopped' status could not be published")
            if not acknowledged:
                logger.warning(
                    "mqtt: the broker did not acknowledge 'stopped' within %.1fs; it will show "
                    "the Last Will 'offline' instead",
                    timeout,
                )
        self._connected.clear()
        self.client.disconnect()
        self.client.loop_stop()
        return acknowledged

    # -- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            logger.error(
                "mqtt: %s:%d refused the connection: %s (check username/password and ACLs)",
                self.config.host,
                self.config.port,
                reason_code,
            )
            return
        self.connects += 1
        self.last_error = None
        client.publish(
            self.status_topic,
            status_payload(self.station_id, "online", client_id=self.client_id),
            qos=1,
            retain=True,
        )
        self._connected.set()
        logger.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        for listener in self._listeners:
            listener.link_connected()

    def _on_connect_fail(self, client, userdata) -> None:  # noqa: ANN001
        # paho calls this inside its `except OSError:` block: the exception is current
        exc = sys.exc_info()[1]
        self.last_error = f"cannot connect to {self.config.host}:{self.config.port}: {exc}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            logger.error(
                "mqtt: %s (check mqtt.tls.ca_file: it must hold the CA that signed the broker's "
                "certificate, and mqtt.host must match the certificate's name)",
                self.last_error,
            )
        else:
            logger.warning("mqtt: %s; retrying", self.last_error)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            logger.warning("mqtt: disconnected (%s); paho reconnects", reason_code)
        for listener in self._listeners:
            listener.link_disconnected()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        ok = not reason_code.is_failure
        for listener in self._listeners:
            listener.link_acked(int(mid), ok, str(reason_code))


# -- the outbox publisher ----------------------------------------------------------------------


@dataclass
class PublisherStats:
    published: int = 0
    acknowledged: int = 0
    rejected: int = 0
    not_taken: int = 0


class OutboxPublisher(threading.Thread):
    """Sends the catalog's outbox through a :class:`Link`; deletes a row only on its PUBACK.

    Replays the whole outbox at start (rows are sent in id order). At most ``max_inflight``
    rows are handed to the link and not yet acknowledged. A row the broker rejects (an MQTT 5
    PUBACK with a failure reason) stays in the outbox and is offered again after
    ``retry_after_s``.
    """

    def __init__(
        self,
        catalog_path: Path,
        station_id: str,
        link: Link,
        *,
        max_inflight: int = 20,
        batch: int = 200,
        retry_after_s: float = 30.0,
        idle_poll_s: float = 0.5,
    ) -> None:
        super().__init__(name=f"outbox-publisher-{station_id}", daemon=True)
        self.catalog_path = Path(catalog_path)
        self.station_id = station_id
        self.link = link
        self.max_inflight = max_inflight
        self.batch = batch
        self.retry_after_s = retry_after_s
        self.idle_poll_s = idle_poll_s
        self.stats = PublisherStats()
        self.error: BaseException | None = None
        self.iterations = 0  # passes of the loop (tests wait on it instead of sleeping)
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque[tuple[int, bool, str]] = collections.deque()
        self._inflight: dict[int, int] = {}  # link token (mid) -> outbox row id
        self._cursor = 0  # highest row id handed to the link in this process
        self._retry: dict[int, float] = {}  # row id -> monotonic time it may be sent again
        self._drained = threading.Event()
        # flush(): a request is answered only by an "empty" seen in a pass that began after
        # it, so rows committed before flush() was called cannot be missed
        self._flushes = threading.Condition()
        self._flush_asked = 0
        self._flush_seen = 0
        self._pass_flush = 0  # the requests this pass of the loop answers
        link.add_listener(self)

    # -- LinkListener (called from the link's thread: queue and wake, nothing more) -------

    def link_connected(self) -> None:
        self._wake.set()

    def link_disconnected(self) -> None:
        self._wake.set()

    def link_acked(self, token: int, ok: bool, reason: str) -> None:
        self._acks.append((token, ok, reason))
        self._wake.set()

    # -- control -------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        self._wake.set()
        self.join(timeout)

    def flush(self, timeout: float) -> bool:
        """Send what is queued now; True once the outbox was seen empty, all acknowledged.

        Unlike :meth:`wait_drained` it does not trust an earlier "empty": rows queued since
        (a clean stop's last bay states and status) are waited for.
        """
        with self._flushes:
            self._flush_asked += 1
            want = self._flush_asked
        self._wake.set()
        with self._flushes:
            return self._flushes.wait_for(lambda: self._flush_seen >= want, timeout)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox was seen empty with nothing in flight."""
        return self._drained.wait(timeout)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- the thread ----------------------------------------------------------------------

    def run(self) -> None:
        from agent.catalog import Catalog  # the catalog's owner; one connection per thread

        try:
            catalog = Catalog(self.catalog_path, station_id=self.station_id, create=False)
        except BaseException as exc:
            self.error = exc
            logger.exception("outbox publisher: cannot open %s", self.catalog_path)
            return
        try:
            backlog = outbox.backlog(catalog.conn)
            if backlog:
                logger.info("outbox publisher: replaying %d queued messages", backlog)
            while not self._stop_event.is_set():
                self._wake.wait(self.idle_poll_s)
                self._wake.clear()
                with self._flushes:
                    self._pass_flush = self._flush_asked
                self.iterations += 1
                self._apply_acks(catalog)
                if self._stop_event.is_set():
                    break
                if self.link.is_connected():
                    self._send_more(catalog)
                elif catalog.conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone():
                    self._drained.clear()
        except BaseException as exc:
            self.error = exc
            logger.exception("outbox publisher stopped on an error; queued messages stay")
            raise
        finally:
            catalog.close()

    def _apply_acks(self, catalog: Any) -> None:
        done: list[int] = []
        while self._acks:
            token, ok, reason = self._acks.popleft()
            row_id = self._inflight.pop(token, None)
            if row_id is None:
                continue  # not ours (the link's own status messages)
            if ok:
                done.append(row_id)
            else:
                self.stats.rejected += 1
                self._retry[row_id] = time.monotonic() + self.retry_after_s
                logger.error(
                    "outbox: the broker rejected message %d (%s); it stays queued and is sent "
                    "again in %.0fs (check the broker's ACL for this station's topics)",
                    row_id,
                    reason,
                    self.retry_after_s,
                )
        if done:
            with catalog.tx() as conn:
                outbox.acknowledge(conn, done)
            self.stats.acknowledged += len(done)

    def _send_more(self, catalog: Any) -> None:
        while True:
            room = self.max_inflight - len(self._inflight)
            if room <= 0:
                return  # the window is full: wait for acknowledgements
            rows = self._due_retries(catalog, room)
            if len(rows) < room:
                rows += outbox.pending(
                    catalog.conn, limit=min(room - len(rows), self.batch), after_id=self._cursor
                )
            if not rows:
                if not self._inflight and not self._retry:
                    self._drained.set()
                    with self._flushes:
                        self._flush_seen = max(self._flush_seen, self._pass_flush)
                        self._flushes.notify_all()
                return
            self._drained.clear()
            for row in rows:
                if not self._offer(row):
                    return  # not connected, or paho's queue is full: again on the next wake

    def _offer(self, row: outbox.OutboxMessage) -> bool:
        try:
            token = self.link.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
        except ValueError:
            # paho refuses it for good (a wildcard in the topic, a payload over 256 MB): keep
            # the row (only an acknowledgement may drop it), skip it, and say so
            logger.exception(
                "outbox: message %d on %r can never be published; it stays in the outbox",
                row.id,
                row.topic,
            )
            self._retry.pop(row.id, None)
            self._cursor = max(self._cursor, row.id)
            return True
        if token is None:
            self.stats.not_taken += 1
            return False
        self._retry.pop(row.id, None)
        self._inflight[token] = row.id
        self._cursor = max(self._cursor, row.id)
        self.stats.published += 1
        return True

    def _due_retries(self, catalog: Any, room: int) -> list[outbox.OutboxMessage]:
        if not self._retry:
            return []
        now = time.monotonic()
        due = sorted(rid for rid, at in self._retry.items() if at <= now)[:room]
        rows = []
        for rid in due:
            found = outbox.pending(catalog.conn, limit=1, after_id=rid - 1)
            if found and found[0].id == rid:
                rows.append(found[0])
            else:
                del self._retry[rid]  # superseded (a newer retained value) or gone
        return rows


# -- a station's publisher as a process ---------------------------------------------------------


def run_publisher(
    catalog_path: Path, station_id: str, config: MqttConfig, *, stop: threading.Event
) -> int:
    """Run link + publisher until ``stop`` is set; then stop cleanly ("stopped" status)."""
    link = MqttLink(config, station_id)
    publisher = OutboxPublisher(
        catalog_path,
        station_id,
        link,
        max_inflight=config.max_inflight,
        batch=config.publish_batch,
    )
    publisher.start()
    link.start()
    try:
        while not stop.wait(0.5):
            if not publisher.is_alive():
                logger.error("outbox publisher ended: %s", publisher.error)
                return 1
    finally:
        publisher.stop()
        link.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sync.mqtt --home DIR [--config FILE]``: publish a station's outbox."""
    import argparse

    from agent.config import load_config, resolve_home

    parser = argparse.ArgumentParser(
        prog="python -m sync.mqtt",
        description="Publish the station's outbox to the MQTT broker of its [mqtt] config "
        "until SIGTERM/SIGINT, then publish the retained 'stopped' status.",
    )
    parser.add_argument("--home", type=Path, default=None, help="Station data folder.")
    parser.add_argument("--config", type=Path, default=None, help="Station TOML config.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"recdock: {exc}", file=sys.stderr)
        return exc.exit_code
    mqtt_config: MqttConfig = config.mqtt  # type: ignore[attr-defined]
    if not mqtt_config.enabled:
        print("recdock: mqtt.enabled is false: nothing to publish to", file=sys.stderr)
        return 78
    stop = threading.Event()
    home = resolve_home(args.home)
    # SIGTERM/SIGINT set stop from a relay thread: run_publisher waits in stop.wait() on this
    # thread, and a handler setting it there could deadlock (agent/signals.py)
    with SignalRelay(stop.set):
        try:
            return run_publisher(home / "catalog.db", config.station_id, mqtt_config, stop=stop)
        except RecdockError as exc:
            print(f"recdock: {exc}", file=sys.stderr)
            return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
