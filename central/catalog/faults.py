"""The faults (table ``faults``): what each station reports open, and when it was resolved.

A fault's state changes only through the station's signed events (``fault.open``,
``fault.resolved``: :mod:`central.catalog.events`), which reach the central store even when it
was away while a retained topic changed. Its signed retained payload (``repair_by`` and the
rest) is attached to the fault the events opened, nothing more; an empty retained payload only
clears the broker's copy and changes nothing here. A resolution newer than an opening that
arrives late keeps the fault resolved. An open fault is overdue after the 24-hour repair limit.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from sync.wire.chain import canonical

REPAIR_LIMIT_HOURS = 24.0

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS faults (
        station TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        kind TEXT,
        subject TEXT,
        severity TEXT,
        detail TEXT,
        opened_at TEXT NOT NULL,
        resolved_at TEXT,
        payload TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, id)
    )""",
    "CREATE INDEX IF NOT EXISTS faults_state ON faults (state, opened_at)",
]


def age_hours(opened_at: str, now: datetime | None = None) -> float:
    opened = datetime.fromisoformat(opened_at)
    if opened.tzinfo is None:
        opened = opened.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - opened).total_seconds() / 3600


# -- writes (the MQTT consumer) --------------------------------------------------------------


def attach(conn: sqlite3.Connection, station: str, fault_id: str, doc: dict[str, Any]) -> None:
    """The fault's signed retained payload, kept with the fault its events opened (if any)."""
    conn.execute(
        "UPDATE faults SET payload = ? WHERE station = ? AND id = ?",
        (canonical(doc), station, fault_id),
    )


def open_fault(
    conn: sqlite3.Connection, station: str, fid: str, doc: dict[str, Any], at: str
) -> None:
    opened_at = doc.get("opened_at") or at
    conn.execute(
        "INSERT INTO faults (station, id, state, kind, subject, severity, detail, opened_at,"
        " payload, updated_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (station, id) DO UPDATE SET"
        " state = CASE WHEN faults.state = 'resolved' AND faults.resolved_at >= ?"
        "   THEN 'resolved' ELSE 'open' END,"
        " resolved_at = CASE WHEN faults.state = 'resolved' AND faults.resolved_at >= ?"
        "   THEN faults.resolved_at ELSE NULL END,"
        " kind = excluded.kind, subject = excluded.subject, severity = excluded.severity,"
        " detail = excluded.detail, opened_at = excluded.opened_at,"
        " payload = coalesce(excluded.payload, faults.payload),"
        " updated_at = excluded.updated_at",
        (
            station,
            fid,
            doc.get("kind"),
            doc.get("subject"),
            doc.get("severity"),
            doc.get("detail"),
            opened_at,
            canonical(doc) if "repair_by" in doc else None,
            at,
            opened_at,
            opened_at,
        ),
    )


def resolve(conn: sqlite3.Connection, station: str, fid: str, at: str) -> None:
    conn.execute(
        "UPDATE faults SET state = 'resolved', resolved_at = ?, updated_at = ?"
        " WHERE station = ? AND id = ? AND state = 'open'",
        (at, at, station, fid),
    )


# -- reads (the JSON API) --------------------------------------------------------------------


def listing(
    conn: sqlite3.Connection, *, include_resolved: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Open faults (and resolved ones with ``include_resolved``), oldest first, each with its
    age and whether it is past the repair limit."""
    sql = "SELECT * FROM faults"
    if not include_resolved:
        sql += " WHERE state = 'open'"
    out = []
    for r in conn.execute(sql + " ORDER BY opened_at").fetchall():
        age = age_hours(r["opened_at"], now)
        out.append(
            {
                "station": r["station"],
                "id": r["id"],
                "state": r["state"],
                "kind": r["kind"],
                "subject": r["subject"],
                "severity": r["severity"],
                "detail": r["detail"],
                "opened_at": r["opened_at"],
                "resolved_at": r["resolved_at"],
                "age_hours": round(age, 2),
                "overdue": r["state"] == "open" and age >= REPAIR_LIMIT_HOURS,
            }
        )
    return out


def open_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM faults WHERE state = 'open'").fetchone()[0]
