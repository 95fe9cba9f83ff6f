"""The rejected messages (table ``rejected``): the last invalid messages, kept for diagnosis.

Only the newest 1000 are kept, each payload cut to its first 4 KiB.
"""

from __future__ import annotations

from central.catalog.db import Connection

REJECTED_KEPT = 1000
PAYLOAD_KEPT = 4096

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rejected (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB
    )""",
]


def record(conn: Connection, topic: str, reason: str, payload: bytes, at: str) -> None:
    """Keep one rejected message and drop those older than the newest :data:`REJECTED_KEPT`."""
    conn.execute(
        "INSERT INTO rejected (at, topic, reason, payload) VALUES (?, ?, ?, ?)",
        (at, topic, reason, payload[:PAYLOAD_KEPT]),
    )
    conn.execute(
        "DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - ?",
        (REJECTED_KEPT,),
    )


def count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
