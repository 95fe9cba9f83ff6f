"""The station's MQTT link: a small publish interface (:class:`Link`), paho behind it.

:class:`MqttLink` keeps the retained station status (``recdock/<station>/status``): the Last
Will is ``offline``; ``online`` is published on every connect; a clean stop publishes
``stopped``. Each of the three is signed with the station's key like every other message
(sync/wire/signing.py), the Last Will when it is set at connect. ``connect_async`` +
``loop_start``, VERSION2 callbacks, QoS 1, TLS and credentials from
:class:`agent.config.links.MqttConfig`. The in-memory link the tests use instead lives in
tests/memory_link.py; tests/test_link_contract.py runs one suite against both.

Why tokens rather than mids straight from paho's callback: ``on_publish`` runs in paho's
network thread, can fire before ``publish()`` has returned the mid to us, and runs while paho
holds its message lock. The listener only appends ``(mid, ok)`` to a queue; the publisher thread
maps mid -> row id after ``publish()`` returned, so an early PUBACK is never lost.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.config.links import MqttConfig
from agent.errors import ConfigError
from sync.wire import topics
from sync.wire.payloads import status_payload
from sync.wire.signing import sign_payload

logger = logging.getLogger(__name__)


class LinkError(ConfigError):
    """The MQTT link could not be set up (missing or unreadable TLS files): a config error."""


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


# -- paho --------------------------------------------------------------------------------------


class MqttLink:
    """A :class:`Link` on paho-mqtt 2.x, with the retained station status and its Last Will."""

    def __init__(self, config: MqttConfig, station_id: str, *, signing_key: Any) -> None:
        self.config = config
        self.station_id = station_id
        self.signing_key = signing_key  # cryptography's Ed25519PrivateKey
        self.client_id = config.resolved_client_id(station_id)
        self.status_topic = topics.status(station_id)
        self._listeners: list[LinkListener] = []
        self._subscriptions: list[tuple[str, Callable[[str, bytes], None]]] = []
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
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self._set_tls(client)
        if config.insecure_lab:
            logger.warning(
                "mqtt: insecure_lab is set: a user name and password may go to the broker "
                "without TLS, readable by anyone on the network"
            )
        password = config.resolved_password()
        if config.username is not None:
            client.username_pw_set(config.username, password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
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

    def _status(self, state: str) -> bytes:
        payload = status_payload(self.station_id, state, client_id=self.client_id)
        return sign_payload(self.signing_key, self.status_topic, payload)

    # -- Link ----------------------------------------------------------------------------

    def add_listener(self, listener: LinkListener) -> None:
        self._listeners.append(listener)

    def subscribe(self, pattern: str, handler: Callable[[str, bytes], None]) -> None:
        """Receive ``pattern``'s messages (QoS 1), subscribed again at every connect (the
        session is clean). ``handler(topic, payload)`` runs in paho's network thread: it must
        only queue. Call before :meth:`start`."""
        self._subscriptions.append((pattern, handler))

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
                self.status_topic, self._status("stopped"), qos=1, retain=True
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
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        for pattern, _handler in self._subscriptions:
            client.subscribe(pattern, qos=1)
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

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        for pattern, handler in self._subscriptions:
            if mqtt.topic_matches_sub(pattern, message.topic):
                handler(message.topic, bytes(message.payload))
