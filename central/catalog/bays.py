"""The bays (table ``bays``): what each station's bays showed last, as their retained topics say.

An empty retained payload (the bay's topic cleared) removes the bay.
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog.db import Connection
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS bays (
        station TEXT NOT NULL,
        bay INTEGER NOT NULL,
        state TEXT NOT NULL,
        payload TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, bay)
    )""",
]


def record(conn: Connection, station: str, bay: int, doc: dict[str, Any] | None, at: str) -> None:
    """The bay's retained payload, or its clearing (``doc`` None)."""
    if doc is None:
        conn.execute("DELETE FROM bays WHERE station = ? AND bay = ?", (station, bay))
        return
    conn.execute(
        "INSERT INTO bays (station, bay, state, payload, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, bay) DO UPDATE SET"
        " state = excluded.state, payload = excluded.payload,"
        " updated_at = excluded.updated_at",
        (station, bay, doc["state"], canonical(doc), doc.get("at") or at),
    )


def listing(conn: Connection, station: str) -> list[dict[str, Any]]:
    return [
        {
            "station": r["station"],
            "bay": r["bay"],
            "state": r["state"],
            "updated_at": r["updated_at"],
            "detail": json.loads(r["payload"]),
        }
        for r in conn.execute(
            "SELECT * FROM bays WHERE station = ? ORDER BY bay", (station,)
        ).fetchall()
    ]


def summary(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per station: how many bays report, and how many are in each state."""
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute("SELECT station, state, count(*) FROM bays GROUP BY station, state"):
        entry = out.setdefault(r[0], {"bays": 0, "states": {}})
        entry["bays"] += r[2]
        entry["states"][r[1]] = r[2]
    return out
