"""The durable outbox: messages for the broker, kept in the catalog until acknowledged.

A message is queued in the same SQLite transaction as the state change it reports
(the caller's transaction: these functions never commit). The publisher
(sync/mqtt/__init__.py) sends rows in id order and deletes a row only when the broker has
acknowledged it (PUBACK for QoS 1). Every message carries an ``event_id``, its
idempotency key, so a receiver drops the duplicates a replay may produce.

An event (an audit entry) is queued as a reference: the row keeps its topic, its id and
``audit_seq``, and :func:`pending` builds the payload from the audit entry when it is sent, so
a station without a broker keeps each entry once, in the audit log (migration m041). Retained
values keep their payload in the row (one row per topic).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.wire.chain import canonical

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    event_id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool


def encode(payload: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept."""
    return canonical(payload)


def enqueue(
    conn: sqlite3.Connection,
    topic: str,
    payload: Any,
    *,
    event_id: str,
    retain: bool = False,
    qos: int = 1,
    audit_seq: int | None = None,
) -> None:
    """Queue one message inside the caller's open transaction.

    A retained topic keeps only its newest queued value: an older value of the same
    retained topic is superseded, even one already handed to the broker and not yet
    acknowledged (the broker keeps only the newest retained value anyway). This is the one
    exception to "a row leaves the outbox only on PUBACK": it applies to retained state
    (status, bays, recorder health, faults), never to events. The superseded value is found
    through the partial index ``outbox_retained`` (retained rows only): O(log n) however
    many events wait for a broker.

    ``audit_seq`` queues audit entry ``audit_seq`` as the event ``payload`` stands for: the row
    keeps no copy of it (``payload`` is not stored), :func:`pending` rebuilds it.
    """
    if not conn.in_transaction:
        raise RuntimeError("outbox.enqueue must run inside the caller's transaction")
    if audit_seq is not None:
        text = ""  # the audit entry is the payload's one copy (``payload`` is not used)
    else:
        text = payload if isinstance(payload, str) else encode(payload)
    if retain:
        conn.execute("DELETE FROM outbox WHERE topic = ? AND retain = 1", (topic,))
    conn.execute(
        "INSERT OR IGNORE INTO outbox"
        " (event_id, topic, payload, qos, retain, created_at, audit_seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, topic, text, qos, 1 if retain else 0, datetime.now(UTC).isoformat(), audit_seq),
    )


def pending(conn: sqlite3.Connection, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
    """The next ``limit`` messages after ``after_id``, in id order, each event's payload built
    from its audit entry. An event whose entry is gone from the audit log (a cut log: `recdock
    verify` names it) cannot be sent: it is logged and left queued."""
    rows = conn.execute(
        "SELECT o.id, o.event_id, o.topic, o.payload, o.qos, o.retain, o.audit_seq,"
        " a.seq, a.at, a.kind, a.subject, a.data, a.prev_hash, a.hash"
        " FROM outbox o LEFT JOIN audit a ON a.seq = o.audit_seq"
        " WHERE o.id > ? ORDER BY o.id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    out = []
    for r in rows:
        text = r[3] if r[6] is None else _event_payload(r[1], r[7:])
        if text is None:
            log.error(
                "outbox: event %s refers to audit entry %s, which is gone from the catalog; it "
                "cannot be sent (run `recdock verify`)",
                r[1],
                r[6],
            )
            continue
        out.append(OutboxMessage(r[0], r[1], r[2], text.encode("utf-8"), int(r[4]), bool(r[5])))
    return out


def _event_payload(event_id: str, entry: tuple[Any, ...]) -> str | None:
    """The event of an audit entry, as docs/mqtt.md has it; None when the entry is gone.
    An event id is ``<station>:<catalog id>:<seq>`` and a station id has no ``:``."""
    seq, at, kind, subject, data, prev_hash, digest = entry
    if seq is None:
        return None
    return encode(
        {
            "event_id": event_id,
            "station": event_id.split(":", 1)[0],
            "seq": seq,
            "at": at,
            "kind": kind,
            "subject": subject,
            "data": json.loads(data),
            "prev_hash": prev_hash,
            "hash": digest,
        }
    )


def acknowledge(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Drop messages the broker acknowledged (one statement: atomic on its own)."""
    if not ids:
        return
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)


def backlog(conn: sqlite3.Connection) -> int:
    """How many messages wait: kept by triggers (migration m040), O(1) at any size."""
    return int(conn.execute("SELECT n FROM outbox_size").fetchone()[0])


def is_empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT min(id) FROM outbox").fetchone()[0] is None


def oldest_created_at(conn: sqlite3.Connection) -> str | None:
    """When the oldest message still waiting for the broker was queued (by id: the primary key)."""
    row = conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
    return row[0] if row else None
