"""Each recorder's history of reports (table ``recorder_history``): one row per health report,
whatever station sent it, for the trends the centre watches and the dashboard draws.

A row keeps what a trend needs: battery at docking, clock offset before and after the
station set the clock, free space, the verdict, and how many recordings were offloaded late.
The same report again (a replay, a redelivery) is kept once (serial, station, at).
"""

from __future__ import annotations

from typing import Any

from central.catalog.db import Connection

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS recorder_history (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL,
        station TEXT NOT NULL,
        at TEXT NOT NULL,
        ready INTEGER,
        battery_pct REAL,
        clock_offset_s REAL,
        clock_offset_after_s REAL,
        free_bytes INTEGER,
        late INTEGER NOT NULL DEFAULT 0,
        unit TEXT,
        UNIQUE (serial, station, at)
    )""",
    "CREATE INDEX IF NOT EXISTS recorder_history_serial ON recorder_history (serial, at)",
    "CREATE INDEX IF NOT EXISTS recorder_history_at ON recorder_history (at)",
]


def record(conn: Connection, station: str, doc: dict[str, Any]) -> None:
    ready = doc.get("ready")
    conn.execute(
        "INSERT INTO recorder_history (serial, station, at, ready, battery_pct,"
        " clock_offset_s, clock_offset_after_s, free_bytes, late, unit)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            doc["device_serial"],
            station,
            doc["at"],
            None if ready is None else int(bool(ready)),
            doc.get("battery_pct"),
            doc.get("clock_offset_s"),
            doc.get("clock_offset_after_s"),
            doc.get("free_bytes"),
            len(doc.get("late") or []),
            doc.get("unit"),
        ),
    )


def series(conn: Connection, serial: str, limit: int = 500) -> list[dict[str, Any]]:
    """The recorder's last ``limit`` reports, oldest first."""
    rows = conn.execute(
        "SELECT station, at, ready, battery_pct, clock_offset_s, clock_offset_after_s,"
        " free_bytes, late FROM recorder_history WHERE serial = ? ORDER BY at DESC LIMIT ?",
        (serial, limit),
    ).fetchall()
    out = [dict(r) for r in reversed(rows)]
    for r in out:
        r["ready"] = None if r["ready"] is None else bool(r["ready"])
    return out


def late_by_unit(conn: Connection, since: str) -> dict[str, dict[str, Any]]:
    """Recordings offloaded late since ``since``, per unit: the count and the serials."""
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(
        "SELECT coalesce(unit, '') AS unit, serial, sum(late) AS late FROM recorder_history"
        " WHERE at >= ? AND late > 0 GROUP BY coalesce(unit, ''), serial",
        (since,),
    ):
        entry = out.setdefault(r["unit"], {"late": 0, "serials": []})
        entry["late"] += r["late"]
        entry["serials"].append(r["serial"])
    return out
