"""The durable outbox: messages for the broker, kept in the catalog until acknowledged.

A message is queued in the same SQLite transaction as the state change it reports
(the caller's transaction: these functions never commit). The publisher
(sync/mqtt/__init__.py) sends rows in id order and deletes a row only when the broker has
acknowledged it (PUBACK for QoS 1). Every message carries an ``event_id``, its
idempotency key, so a receiver drops the duplicates a replay may produce.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.wire.chain import canonical


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
) -> None:
    """Queue one message inside the caller's open transaction.

    A retained topic keeps only its newest queued value: an older value of the same
    retained topic is superseded, even one already handed to the broker and not yet
    acknowledged (the broker keeps only the newest retained value anyway). This is the one
    exception to "a row leaves the outbox only on PUBACK": it applies to retained state
    (status, bays, recorder health, faults), never to events. The superseded value is found
    through the partial index ``outbox_retained`` (retained rows only): O(log n) however
    many events wait for a broker.
    """
    if not conn.in_transaction:
        raise RuntimeError("outbox.enqueue must run inside the caller's transaction")
    text = payload if isinstance(payload, str) else encode(payload)
    if retain:
        conn.execute("DELETE FROM outbox WHERE topic = ? AND retain = 1", (topic,))
    conn.execute(
        "INSERT OR IGNORE INTO outbox (event_id, topic, payload, qos, retain, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (event_id, topic, text, qos, 1 if retain else 0, datetime.now(UTC).isoformat()),
    )


def pending(conn: sqlite3.Connection, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
    rows = conn.execute(
        "SELECT id, event_id, topic, payload, qos, retain FROM outbox WHERE id > ?"
        " ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [
        OutboxMessage(r[0], r[1], r[2], r[3].encode("utf-8"), int(r[4]), bool(r[5])) for r in rows
    ]


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
