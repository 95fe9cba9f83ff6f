"""The fleet's MQTT side: one client per station, each with the station's own identity.

This module keeps the connections of the simulated fleet (bench/fleet.py) to the broker and
the pacing of a phase. Every station is one paho client with its own client id and its own
certificate (common name = station id: its user in the shipped ACL, so it may write only
``recdock/<its id>/#``) and its Last Will the signed ``offline`` as a station's link sets it.
The 500 clients are driven by one thread on epoll (:class:`Loop`; paho's own loop cannot
watch more than some 340 sockets in one process). Messages are handed to the station's
client at QoS 1; on_publish counts the broker's PUBACKs. One pacer thread hands each
scheduled slot over at its time and notes how late it was: the generator's own limit shows
there, not in the centre's figures. :meth:`Wire.ceiling` measures that limit with the broker
alone.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fleet import Message, SimStation, Slot

from sync.wire import topics


@dataclass
class Pace:
    """What the pacer did: messages handed over, how late against the schedule, probes."""

    sent: int = 0
    events: int = 0
    late_s: list[float] = field(default_factory=list)
    seconds: float = 0.0


def issue_certificates(pki, names: list[str]) -> None:  # noqa: ANN001
    """Each name's client certificate, signed by the test CA (tests/mosquitto.py's TestPki)
    and put where ``pki.client(name)`` finds it: the same certificates TestPki makes with the
    openssl CLI (EC P-256, common name = identity), made in process (1 ms each, not 90)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = pki.folder
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    now = datetime.now(UTC)
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .sign(ca_key, hashes.SHA256())
        )
        key_file = folder / f"client-{name}.key"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        key_file.chmod(0o600)
        (folder / f"client-{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Loop:
    """Every station's client driven by one thread on epoll (paho's external-loop calls:
    ``loop_read``, ``loop_write``, ``loop_misc``). paho's own loop waits in ``select()``,
    which cannot watch a descriptor numbered above 1024: some 340 clients in one process.
    All socket I/O happens in this thread; a publish from another thread only asks for a
    write (``on_socket_register_write``) and wakes it."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)  # a full buffer means a wake-up is pending already
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.writers: set = set()
        self.clients: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, client) -> None:  # noqa: ANN001
        client.on_socket_register_write = self._want_write

    def watch(self, client) -> None:  # noqa: ANN001
        """After ``connect()``: its socket is watched for reading."""
        with self._lock:
            self.sel.register(client.socket(), selectors.EVENT_READ, client)
            self.clients.append(client)
        self._want_write(client, None, None)

    def _want_write(self, client, userdata, sock) -> None:  # noqa: ANN001
        with self._lock:
            self.writers.add(client)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.wake_w.send(b"x")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(30)

    def _run(self) -> None:
        misc = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                writers, self.writers = self.writers, set()
            for client in writers:
                if client.socket() is not None:
                    client.loop_write()
                    if client.want_write():
                        with self._lock:
                            self.writers.add(client)
            timeout = 0.0 if self.writers else 0.5
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self.wake_r.recv(4096)
                    continue
                self._read(key.data)
            if time.monotonic() - misc > 1.0:
                misc = time.monotonic()
                with self._lock:
                    clients = list(self.clients)
                for client in clients:
                    client.loop_misc()

    @staticmethod
    def _read(client) -> None:  # noqa: ANN001
        client.loop_read()
        sock = client.socket()
        while sock is not None and sock.pending():  # TLS records already decrypted
            client.loop_read()
            sock = client.socket()


class Wire:
    """The fleet's connections to one broker (tests/mosquitto.py's)."""

    def __init__(self, broker, stations: list[SimStation]) -> None:  # noqa: ANN001
        self.broker = broker
        self.stations = stations
        self.clients: dict = {}
        self.loop = Loop()
        self.closing = False
        self.dropped: list[str] = []
        self.acked = 0
        self._lock = threading.Lock()
        self._up = threading.Semaphore(0)

    def connect(self, timeout: float = 120.0) -> float:
        """Connect every station (each connect a blocking TLS handshake, one after the
        other), then wait for every CONNACK; seconds until all are connected."""
        t0 = time.perf_counter()
        self.loop.start()
        for st in self.stations:
            self.clients[st.name] = self._client(st)
        deadline = time.monotonic() + timeout
        for _ in self.stations:
            if not self._up.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise SystemExit("not every station connected to the broker in time")
        return time.perf_counter() - t0

    def _client(self, st: SimStation):  # noqa: ANN202
        client = self.broker.client(st.name, client_id=f"recdock-{st.name}")
        client.max_queued_messages_set(0)
        client.connect_timeout = 30.0
        client.will_set(topics.status(st.name), st.last_will(), qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p: self._up.release() if not rc.is_failure else None
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.loop.add(client)
        client.connect("127.0.0.1", self.broker.port, keepalive=60)
        self.loop.watch(client)
        return client

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not self.closing:
            self.dropped.append(f"{client._client_id!r}: {reason_code}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        with self._lock:
            self.acked += 1

    def send(self, messages: list[Message]) -> None:
        for m in messages:
            self.clients[m.station].publish(m.topic, m.payload, qos=1, retain=m.retain)

    def wait_acked(self, total: int, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"the broker acknowledged {self.acked} of {total} messages")
            time.sleep(0.01)

    def close(self) -> None:
        self.closing = True
        for client in self.clients.values():
            client.disconnect()
        self.loop.stop()

    def ceiling(self, messages: list[Message]) -> float:
        """Messages a second the generator hands over and the broker acknowledges, unpaced:
        ``messages`` re-addressed to ``recdock/<station>/bench-ceiling`` (no subscriber: the
        broker acknowledges and drops them). Run before the centre subscribes."""
        copies = [Message(m.station, topics.status(m.station) + "-bench-ceiling", m.payload,
                          False) for m in messages]  # fmt: skip
        start = self.acked
        t0 = time.perf_counter()
        self.send(copies)
        self.wait_acked(start + len(copies))
        return len(copies) / (time.perf_counter() - t0)

    def pace(
        self, slots: list[Slot], seconds: float, on_probe: Callable[[object, float], None]
    ) -> Pace:
        """Hand each slot over at its time (seconds from now) for ``seconds`` in all;
        ``on_probe(probe, monotonic)`` once a probe's docking is handed over."""
        pace = Pace()
        t0 = time.monotonic()
        for slot in slots:
            due = t0 + slot.t
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)  # pacing to the schedule, not waiting for a result
            pace.late_s.append(max(0.0, time.monotonic() - due))
            self.send(slot.messages)
            pace.sent += len(slot.messages)
            pace.events += sum(m.is_event for m in slot.messages)
            if slot.probe is not None:
                on_probe(slot.probe, time.monotonic())
        rest = t0 + seconds - time.monotonic()
        if rest > 0:
            time.sleep(rest)  # the phase lasts its length, whatever its last slot
        pace.seconds = time.monotonic() - t0
        return pace
