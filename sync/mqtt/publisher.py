"""The outbox publisher: outbox rows to the broker, each deleted only after its PUBACK.

A thread with its own catalog connection. It sends outbox rows in id order and deletes a row
only after the broker acknowledged it (PUBACK for QoS 1; rule 4, docs/architecture.md). paho
keeps unacknowledged QoS 1 messages in memory and re-sends them after a reconnect; a process
restart replays the whole outbox. A message may therefore arrive more than once, never zero
times; receivers drop duplicates by ``event_id``.

Every message is signed where it leaves the station: when a row is handed to the link
(:meth:`OutboxPublisher._signed`, with the station's Ed25519 key and the rules of
sync/wire/signing.py), whatever queued it. The outbox keeps rows unsigned, so a replay after a
re-key is signed with the new key.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.catalog import outbox
from sync.mqtt.link import Link
from sync.wire.signing import sign_payload

logger = logging.getLogger(__name__)


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
    ``retry_after_s``. Each row is signed with ``signing_key`` as it is handed over; one whose
    signed payload exceeds ``max_message_bytes`` (the broker would drop it) stays in the outbox.
    """

    def __init__(
        self,
        catalog_path: Path,
        station_id: str,
        link: Link,
        *,
        signing_key: Any,  # cryptography's Ed25519PrivateKey
        max_message_bytes: int = 256 * 1024,
        max_inflight: int = 20,
        batch: int = 200,
        retry_after_s: float = 30.0,
        idle_poll_s: float = 0.5,
    ) -> None:
        super().__init__(name=f"outbox-publisher-{station_id}", daemon=True)
        self.catalog_path = Path(catalog_path)
        self.station_id = station_id
        self.link = link
        self.signing_key = signing_key
        self.max_message_bytes = max_message_bytes
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
                elif not outbox.is_empty(catalog.conn):
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

    def _signed(self, row: outbox.OutboxMessage) -> bytes:
        """The row's payload as it leaves the station: signed (sync/wire/signing.py). Raises
        ValueError for a row that can never be published (not a JSON object, too large)."""
        payload = sign_payload(self.signing_key, row.topic, row.payload)
        if len(payload) > self.max_message_bytes:
            raise ValueError(
                f"{len(payload)} bytes signed, over mqtt.max_message_bytes "
                f"({self.max_message_bytes})"
            )
        return payload

    def _offer(self, row: outbox.OutboxMessage) -> bool:
        try:
            payload = self._signed(row)
            token = self.link.publish(row.topic, payload, qos=row.qos, retain=row.retain)
        except ValueError:
            # not signable, too large, or paho refuses it for good (a wildcard in the topic):
            # keep the row (only an acknowledgement may drop it), skip it, and say so
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
