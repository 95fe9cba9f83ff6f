"""The recorders (table ``recorders``): each recorder's health as its station last reported it.

A cleared recorder topic changes nothing here: the last health seen is kept.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS recorders (
        station TEXT NOT NULL,
        serial TEXT NOT NULL,
        ready INTEGER,
        health TEXT NOT NULL,
        at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, serial)
    )""",
]


def record(conn: sqlite3.Connection, station: str, doc: dict[str, Any], at: str) -> None:
    ready = doc.get("ready")
    conn.execute(
        "INSERT INTO recorders (station, serial, ready, health, at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station, serial) DO UPDATE SET"
        " ready = excluded.ready, health = excluded.health, at = excluded.at,"
        " updated_at = excluded.updated_at",
        (
            station,
            doc["device_serial"],
            None if ready is None else int(bool(ready)),
            canonical(doc),
            doc.get("at"),
            at,
        ),
    )


def listing(conn: sqlite3.Connection, station: str | None = None) -> list[dict[str, Any]]:
    """Every recorder, or one station's, by station and serial."""
    sql = "SELECT * FROM recorders"
    params: tuple[str, ...] = ()
    if station is not None:
        sql, params = sql + " WHERE station = ?", (station,)
    return [
        {
            "station": r["station"],
            "serial": r["serial"],
            "ready": None if r["ready"] is None else bool(r["ready"]),
            "at": r["at"],
            "updated_at": r["updated_at"],
            "health": json.loads(r["health"]),
        }
        for r in conn.execute(sql + " ORDER BY station, serial", params).fetchall()
    ]
