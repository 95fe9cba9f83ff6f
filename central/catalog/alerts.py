"""The security alerts (table ``security_alerts``): messages the centre did not take as a
station's, kept apart.

A message from a station id that is not enrolled, an unsigned one, or one whose signature does
not verify with the station's enrolled key is never stored as that station's history (rule 9,
docs/architecture.md): it takes no event id, changes no fault and marks no chain broken. It is
kept here instead, for whoever investigates: the newest :data:`ALERTS_KEPT`, each payload cut
to its first 4 KiB.
"""

from __future__ import annotations

from typing import Any

from central.catalog import paging
from central.catalog.db import Connection

ALERTS_KEPT = 10_000
PAYLOAD_KEPT = 4096

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS security_alerts (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        station TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB
    )""",
    "CREATE INDEX IF NOT EXISTS security_alerts_station ON security_alerts (station, id)",
]


def record(
    conn: Connection, station: str, topic: str, reason: str, payload: bytes, at: str
) -> None:
    """Keep one alert and drop those older than the newest :data:`ALERTS_KEPT`."""
    conn.execute(
        "INSERT INTO security_alerts (at, station, topic, reason, payload) VALUES (?, ?, ?, ?, ?)",
        (at, station[:128], topic[:512], reason[:1024], payload[:PAYLOAD_KEPT]),
    )
    conn.execute(
        "DELETE FROM security_alerts WHERE id <= (SELECT max(id) FROM security_alerts) - ?",
        (ALERTS_KEPT,),
    )


def count(conn: Connection, station: str | None = None) -> int:
    if station is None:
        return conn.execute("SELECT count(*) FROM security_alerts").fetchone()[0]
    return conn.execute(
        "SELECT count(*) FROM security_alerts WHERE station = ?", (station,)
    ).fetchone()[0]


def listing(
    conn: Connection, station: str | None = None, limit: int | None = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The alerts newest first, ``limit`` from ``offset``; the payload as text (invalid UTF-8
    replaced)."""
    sql = "SELECT * FROM security_alerts"
    params: tuple[Any, ...] = ()
    if station is not None:
        sql, params = sql + " WHERE station = ?", (station,)
    sql += " ORDER BY id DESC" + paging.SQL
    rows = conn.execute(sql, (*params, *paging.params(limit, offset))).fetchall()
    return [
        {
            "id": r["id"],
            "at": r["at"],
            "station": r["station"],
            "topic": r["topic"],
            "reason": r["reason"],
            "payload": bytes(r["payload"] or b"").decode("utf-8", "replace"),
        }
        for r in rows
    ]
