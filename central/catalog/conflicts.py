"""The chain conflicts (table ``chain_conflicts``): a second event the station validly signed
at a seq already held, with other content.

Two validly signed events that disagree are the one thing that marks a station's chain
``broken`` (:mod:`central.catalog.events`); the second one cannot take the first one's place in
``events``, so it is kept here, signature and all, as the evidence.
"""

from __future__ import annotations

from typing import Any

from central.catalog.db import Connection
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS chain_conflicts (
        id INTEGER PRIMARY KEY,
        station TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chain_conflicts_station ON chain_conflicts (station, seq)",
]


def record(conn: Connection, epoch: int, doc: dict[str, Any], received_at: str) -> None:
    conn.execute(
        "INSERT INTO chain_conflicts (station, epoch, seq, event_id, hash, payload, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            doc["station"],
            epoch,
            int(doc["seq"]),
            doc["event_id"],
            doc["hash"],
            canonical(doc),
            received_at,
        ),
    )


def count(conn: Connection, station: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM chain_conflicts WHERE station = ?", (station,)
    ).fetchone()[0]
