"""A real RabbitMQ node on loopback for tests, running the broker configuration recdock ships.

``RabbitMQ`` starts Debian's ``rabbitmq-server`` (3.10) as a plain process, never the system
service: its node name, Erlang distribution port, epmd port, data, logs, enabled plugins
(``rabbitmq_mqtt``), environment file and ``HOME`` (where Erlang keeps its cookie) are all
in the test's work folder, its ports are free ones on loopback. Its configuration is
``deploy/rabbitmq/rabbitmq.conf`` as shipped: only the MQTT listener's port (bound to
127.0.0.1) and the folder ``/etc/rabbitmq/recdock/`` are replaced, and two limits for a
shared test machine are appended (memory and disk alarms). Once the MQTT listener answers,
``deploy/rabbitmq/recdock-users`` creates the users, as an operator would; clients then log in
with certificates of a test CA (:class:`tests.mosquitto.TestPki`), common name = identity.

Erlang takes seconds to start: tests/test_broker_rabbitmq.py starts one node per session and
stops it at the end. The node's data survive ``stop()``/``start()`` (durable queues, users,
retained messages on disk), as on a server that restarts. A node that cannot start fails the
test with its log. A second node made with ``peer=`` shares the first's CA, epmd and Erlang
cookie and joins its cluster (:meth:`RabbitMQ.join`); closing it leaves the first alone again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.mosquitto import ROOT, BrokerClients, TestPki, _listening, free_port, stop_server

SHIPPED_CONF = ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf"
SHIPPED_USERS = ROOT / "deploy" / "rabbitmq" / "recdock-users"
SHIPPED_FOLDER = "/etc/rabbitmq/recdock/"
SHIPPED_LISTENER = "mqtt.listeners.ssl.default = 8883"
BIN = Path("/usr/lib/rabbitmq/bin")  # Debian's; /usr/sbin's wrappers switch to the service user
SERVER = BIN / "rabbitmq-server"
CTL = BIN / "rabbitmqctl"
INSTALLED = SERVER.exists() and shutil.which("epmd") is not None

# a node of a shared test machine: alarms only when something is really wrong
TEST_LIMITS = "vm_memory_high_watermark.absolute = 1GiB\ndisk_free_limit.absolute = 10MB\n"


def _port_below(limit: int) -> int:
    """A free port below ``limit``: rabbitmqctl's own distribution ports are the node's + 10000."""
    while (port := free_port()) >= limit:
        pass
    return port


def shipped_config(folder: Path, port: int) -> str:
    """The shipped rabbitmq.conf with its listener and its folder replaced, nothing else."""
    text = SHIPPED_CONF.read_text(encoding="utf-8")
    assert f"\n{SHIPPED_LISTENER}\n" in text, "the shipped listener line changed"
    text = text.replace(SHIPPED_LISTENER, f"mqtt.listeners.ssl.default = 127.0.0.1:{port}")
    return text.replace(SHIPPED_FOLDER, f"{folder}/")


class RabbitMQ(BrokerClients):
    """One RabbitMQ node with the MQTT plugin; ``start()``/``stop()`` may repeat."""

    protocol = "3.1.1"  # RabbitMQ 3.10's MQTT plugin has no MQTT 5

    def __init__(self, workdir: Path, stations: list[str], *, peer: RabbitMQ | None = None):
        """``peer``: a running node this one will join (:meth:`join`): they share the test CA,
        epmd and the Erlang cookie, and the users are the cluster's."""
        if not INSTALLED:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.peer = peer
        self.pki = peer.pki if peer else TestPki(workdir / "pki")
        self.stations = stations
        self.port = free_port()
        self.epmd_port = peer.epmd_port if peer else free_port()
        self.dist_port = _port_below(55000)
        self.node = f"recdock-test-{os.getpid()}{'-2' if peer else ''}@localhost"
        self.home = peer.home if peer else workdir / "home"
        self.conf = workdir / "rabbitmq.conf"
        self.log = workdir / "rabbitmq.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._users_made = False
        self.joined = False
        etc = workdir / "etc"
        etc.mkdir(exist_ok=True)
        shutil.copyfile(self.pki.ca_file, etc / "ca.crt")
        shutil.copyfile(self.pki.broker.cert_file, etc / "broker.crt")
        shutil.copyfile(self.pki.broker.key_file, etc / "broker.key")
        self.conf.write_text(shipped_config(etc, self.port) + TEST_LIMITS, encoding="utf-8")
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n", encoding="utf-8")
        (workdir / "rabbitmq-env.conf").write_text("", encoding="utf-8")  # not /etc's
        self.home.mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        """The environment of the node and of its rabbitmqctl: everything in the work folder."""
        w = self.workdir
        return {
            **os.environ,
            "HOME": str(self.home),  # the Erlang cookie: the node's, its CLI's, its peer's
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.conf),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(w / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_CRASH_DUMP": str(w / "erl_crash.dump"),
        }

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl`` against this node; its output."""
        done = subprocess.run(
            [str(CTL), *args], env=self.env(), capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def make_users(self) -> None:
        """The shipped recdock-users, run as an operator would, against this node."""
        cmd = [sys.executable, str(SHIPPED_USERS), "--rabbitmqctl", str(CTL), *self.stations]
        subprocess.run(cmd, env=self.env(), check=True, capture_output=True, timeout=120)
        self._users_made = True

    # -- the process ---------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        assert self.proc is None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SERVER)], env=self.env(), cwd=self.workdir, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"rabbitmq-server exited:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"rabbitmq did not listen within {timeout}s:\n{self._log_tail()}"
                )
            time.sleep(0.1)
        if not (self._users_made or self.peer):
            self.make_users()

    def join(self) -> None:
        """Join the peer's cluster (as an operator would: stop_app, reset, join_cluster,
        start_app) and wait until this node's MQTT listener is back."""
        assert self.peer is not None and self.running
        for args in (("stop_app",), ("reset",), ("join_cluster", self.peer.node), ("start_app",)):
            self.ctl(*args)
        self.joined = True
        deadline = time.monotonic() + 60
        while not _listening(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq: no listener after joining:\n{self._log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to rabbitmq-server, which stops the node cleanly (its own trap)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_server(proc, self.port, timeout, poll=0.05)

    def close(self) -> None:
        """Stop the node and the epmd it started on its own port (a peer's node leaves epmd to
        the first)."""
        self.stop()
        if self.peer is not None:
            if self.joined:  # the first node stands alone again, and restarts alone
                self.peer.ctl("forget_cluster_node", self.node)
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["epmd", "-port", str(self.epmd_port), "-kill"],
                env=self.env(),
                capture_output=True,
                timeout=10,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
