"""A real Mosquitto on loopback for tests, running the broker configuration recdock ships.

``Mosquitto`` starts ``mosquitto -c conf`` as a subprocess with ``deploy/mosquitto/recdock.conf``
and its ACL file exactly as shipped: only the listener's port and the folder
``/etc/mosquitto/recdock/`` are replaced (by a free loopback port and the test's work folder).
So every MQTT test talks TLS, presents a client certificate and is confined by the ACL: a
station's identity (its certificate's common name) is its station id, the central store's is
``recdock-central``. The certificates come from a test CA made by the openssl CLI
(:class:`TestPki`). Ahead of the shipped file come the lines Debian's own mosquitto.conf holds
(persistence, logging), which the test chooses.

Persistence is off by default (a stop loses the broker's sessions and retained messages, the
harshest case for the station). ``persistence=True`` keeps them in the work folder, as
Debian's configuration does: then the central store's persistent session survives a broker
restart. The port is chosen free once and kept across stop/start, so clients reconnect to the
same address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "recdock.conf"
SHIPPED_ACL = ROOT / "deploy" / "mosquitto" / "recdock.acl"
SHIPPED_FOLDER = "/etc/mosquitto/recdock/"
SHIPPED_PORT = 8883
CENTRAL = "recdock-central"

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_server(proc: subprocess.Popen, port: int, timeout: float, poll: float = 0.02) -> None:
    """SIGTERM a test broker (a SIGKILL if it does not end within ``timeout``), then wait
    until its port no longer listens: the next start may take the same port."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(poll)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ClientTls:
    """What a client needs to connect: the CA that signed the broker, its certificate, its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


class TestPki:
    """A test CA (openssl CLI, EC P-256 keys), the broker's certificate for 127.0.0.1 and
    localhost, and a client certificate per identity on demand (common name = identity)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path, name: str = "recdock test") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_file = folder / "ca.crt"
        self._lock = threading.Lock()
        self._openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
            "-subj", f"/CN={name} CA",
        )  # fmt: skip
        ext = folder / "broker.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
        self.broker = self._issue("broker", "localhost", extfile=ext)

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.folder, check=True, capture_output=True)

    def _issue(self, stem: str, common_name: str, *, extfile: Path | None = None) -> ClientTls:
        self._openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={common_name}",
        )  # fmt: skip
        extra = ["-extfile", str(extfile)] if extfile else []
        self._openssl(
            "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{stem}.crt", *extra,
        )  # fmt: skip
        key = self.folder / f"{stem}.key"
        key.chmod(0o600)
        return ClientTls(self.ca_file, self.folder / f"{stem}.crt", key)

    def client(self, identity: str) -> ClientTls:
        """The certificate and key of ``identity`` (made once, then reused)."""
        stem = f"client-{identity}"
        with self._lock:
            if not (self.folder / f"{stem}.crt").exists():
                return self._issue(stem, identity)
        return ClientTls(self.ca_file, self.folder / f"{stem}.crt", self.folder / f"{stem}.key")


def shipped_config(folder: Path, port: int) -> str:
    """The shipped recdock.conf with its port and its folder replaced, nothing else."""
    text = SHIPPED_CONF.read_text(encoding="utf-8")
    assert f"\nlistener {SHIPPED_PORT}\n" in text, "the shipped listener line changed"
    text = text.replace(f"\nlistener {SHIPPED_PORT}\n", f"\nlistener {port} 127.0.0.1\n")
    return text.replace(SHIPPED_FOLDER, f"{folder}/")


class BrokerClients:
    """What a client of a test broker needs (``pki`` and ``port`` are the broker's): the
    station's settings, the central store's, a paho client. Shared by :class:`Mosquitto` and
    tests/rabbitmq.py's RabbitMQ; ``protocol`` is the MQTT version both sides speak to it."""

    pki: TestPki
    port: int
    protocol = "3.1.1"

    def tls(self, identity: str) -> ClientTls:
        return self.pki.client(identity)

    def mqtt_config(self, station: str, **kw: Any):  # -> agent.config.links.MqttConfig
        """A station's ``[mqtt]`` settings for this broker, with its client certificate."""
        from agent.config.links import MqttConfig, MqttTls

        files = self.tls(station)
        tls = MqttTls(ca_file=files.ca_file, cert_file=files.cert_file, key_file=files.key_file)
        kw.setdefault("keepalive", 5)
        kw.setdefault("protocol", self.protocol)
        return MqttConfig(enabled=True, host="127.0.0.1", port=self.port, tls=tls, **kw)

    def mqtt_toml(self, station: str, **extra: object) -> str:
        """The same as TOML, for a station's config file: ``[mqtt]`` (with ``extra`` settings,
        values as TOML text) and ``[mqtt.tls]``."""
        files = self.tls(station)
        lines = ["[mqtt]", "enabled = true", 'host = "127.0.0.1"', f"port = {self.port}"]
        lines += [f"{k} = {v}" for k, v in extra.items()]
        lines += ["[mqtt.tls]", f'ca_file = "{files.ca_file}"', f'cert_file = "{files.cert_file}"']
        lines += [f'key_file = "{files.key_file}"']
        return "\n".join(lines) + "\n"

    def consumer_settings(self, **kw: Any):  # -> central.consumer.ConsumerSettings
        """The central store's consumer settings: identity ``recdock-central``."""
        from central.consumer import ConsumerSettings

        files = self.tls(CENTRAL)
        return ConsumerSettings(
            host="127.0.0.1",
            port=self.port,
            ca_file=files.ca_file,
            cert_file=files.cert_file,
            key_file=files.key_file,
            **{"protocol": self.protocol, **kw},
        )

    def client(self, identity: str, client_id: str, **kw: Any):  # -> paho Client
        """A paho client (not connected) with ``identity``'s certificate."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        files = self.tls(identity)
        kw.setdefault("protocol", mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kw)
        client.tls_set(
            ca_certs=str(files.ca_file),
            certfile=str(files.cert_file),
            keyfile=str(files.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        return client


class Mosquitto(BrokerClients):
    """One broker running the shipped configuration; ``start()``/``stop()`` may repeat."""

    def __init__(self, workdir: Path, *, persistence: bool = False, pki: TestPki | None = None):
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.pki = pki or TestPki(workdir / "pki")
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        etc = workdir / "etc"
        etc.mkdir(exist_ok=True)
        shutil.copyfile(SHIPPED_ACL, etc / "acl")
        shutil.copyfile(self.pki.ca_file, etc / "ca.crt")
        shutil.copyfile(self.pki.broker.cert_file, etc / "broker.crt")
        shutil.copyfile(self.pki.broker.key_file, etc / "broker.key")
        # what Debian's /etc/mosquitto/mosquitto.conf says before it includes conf.d/
        lines = [
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to 'mosquitto': no writing here
        text = "\n".join(lines) + "\n\n" + shipped_config(etc, self.port)
        self.conf.write_text(text, encoding="utf-8")

    # -- the process ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_server(proc, self.port, timeout)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is acknowledged."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


class Subscriber:
    """A real paho subscriber that records every message (for assertions).

    It connects as ``identity`` (by default the central store's, which may read ``recdock/#``).
    """

    def __init__(
        self,
        broker: Mosquitto,
        pattern: str = "recdock/#",
        *,
        client_id: str = "test-sub",
        identity: str = CENTRAL,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = broker.client(identity, client_id)

        def on_connect(client, userdata, flags, rc, props):  # noqa: ANN001
            client.subscribe(pattern, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props):  # noqa: ANN001
            self._subscribed.set()

        def on_message(client, userdata, msg):  # noqa: ANN001
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", broker.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber did not subscribe within 10s")

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
