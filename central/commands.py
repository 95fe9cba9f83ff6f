"""The centre's command publisher: the ``commands`` outbox onto the broker, signed.

Commands are queued in the central catalog (:mod:`central.catalog.commands`) in the same
transaction as the decision they carry. A publisher thread (``central-commands``) signs each
with the centre's key (:func:`sync.wire.commands.sign_command`), publishes it retained at QoS 1
through the consumer's own MQTT connection (the broker lets only ``recdock-central`` write
``recdock/+/command/#``), waits for the broker's acknowledgement and only then marks it
published: a command survives a broker that is away and a centre that restarts. Once the
station's signed event names a command as applied, the retained topic is cleared (an empty
payload), unless a newer command holds it. It runs when woken (a decision, a batch of station
messages, a reconnection) and every ``interval`` seconds; tests call :meth:`flush`.

Several workers (docs/central.md, "Several workers") each run a publisher; only the one that
holds the ``commands`` lease (:mod:`central.catalog.leases`, renewed before every publish)
publishes, so a command is never published out of turn after a newer one on its topic, nor
published again after its topic was cleared. When that worker stops or is killed, another
takes the lease once it runs out (:data:`LEASE_S`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.catalog import CentralCatalog, leases, now_utc
from central.catalog import commands as outbox
from sync.wire.commands import sign_command

logger = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 10.0
LEASE = "commands"
LEASE_S = 3 * PUBACK_TIMEOUT_S  # renewed before every publish, which waits at most PUBACK_TIMEOUT_S


class CommandPublisher:
    """Publishes the catalog's pending commands through ``client`` (a connected paho client,
    the consumer's) while ``connected()`` says so. Without ``key`` nothing is published: the
    commands wait, and a warning says why."""

    def __init__(
        self,
        catalog: CentralCatalog,
        key: Ed25519PrivateKey | None,
        client,  # paho.mqtt.client.Client  # noqa: ANN001
        *,
        connected: Callable[[], bool],
        interval: float = 5.0,
        holder: str = "recdock-central",
    ) -> None:
        self.catalog = catalog
        self.holder = holder  # the worker, in the commands lease
        self.lease_s = LEASE_S
        self.key = key
        self.client = client
        self.connected = connected
        self.interval = interval
        self.published = 0
        self.cleared = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.key is None:
            logger.warning(
                "central commands: no signing key (--signing-key, or the credential "
                "central-signing-key): commands to stations wait in the catalog, unsent"
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="central-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(PUBACK_TIMEOUT_S + 5)

    def wake(self) -> None:
        """Publish what is pending soon (after a decision or a batch of station messages)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # the next round tries again; the commands stay queued
                logger.exception("central commands: a publishing round failed; retrying")

    def flush(self) -> int:
        """One round: publish every pending command, then clear the applied ones; returns how
        many topics were written. Stops at the first the broker does not acknowledge."""
        if self.key is None or not self.connected() or not self._lead():
            return 0
        with self._lock:
            done = 0
            for item in outbox.unpublished(self.catalog.conn):
                payload = sign_command(self.key, item["topic"], item["doc"])
                if not self._lead() or not self._publish(item["topic"], payload):
                    return done
                with self.catalog.tx() as conn:
                    outbox.mark_published(conn, item["seq"], now_utc())
                self.published += 1
                done += 1
            for item in outbox.to_clear(self.catalog.conn):
                if not self._lead():
                    return done
                if item["latest"] and not self._publish(item["topic"], b""):
                    return done
                with self.catalog.tx() as conn:
                    outbox.mark_cleared(conn, item["seq"], now_utc())
                self.cleared += int(item["latest"])
                done += int(item["latest"])
            return done

    def _lead(self) -> bool:
        """Take or renew the ``commands`` lease: False while another worker holds it."""
        now = time.time()
        with self.catalog.tx() as conn:
            return leases.take(conn, LEASE, self.holder, now=now, until=now + self.lease_s)

    def _publish(self, topic: str, payload: bytes) -> bool:
        """Publish retained at QoS 1 and wait for the broker's acknowledgement."""
        info = self.client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            logger.warning("central commands: %s not published (%s); retrying later", topic, exc)
            return False
        if not info.is_published():
            logger.warning("central commands: no acknowledgement for %s; retrying later", topic)
            return False
        return True
