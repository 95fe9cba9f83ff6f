"""An MQTT :class:`~sync.mqtt.link.Link` in memory, for tests only: most need no broker.

The test-only fake of the MQTT seam; tests/test_link_contract.py runs the same suite against
it and against :class:`~sync.mqtt.link.MqttLink` on a real Mosquitto.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sync.mqtt.link import LinkListener


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
