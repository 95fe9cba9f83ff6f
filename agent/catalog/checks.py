"""The pre-shift checks (table ``checks``): one row per check of a recorder, at a bay or by hand.

A check is stored in one transaction: its row, the session's clock drift, an audit entry and
the retained recorder-health message (rule 3, docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.catalog import audit, outbox, sessions
from sync.wire import topics

if TYPE_CHECKING:
    from agent.catalog import Catalog


def record(
    catalog: Catalog,
    *,
    at: str,
    device_serial: str,
    session_id: str | None,
    bay: int | None,
    ready: bool,
    results: list[dict[str, Any]],
    clock_offset_s: float | None,
    clock_offset_after_s: float | None,
    audit_data: dict[str, Any],
    health: dict[str, Any],
) -> int:
    """Store one check; returns its id. ``health`` is the retained recorder-health message."""
    with catalog.tx() as conn:
        cur = conn.execute(
            "INSERT INTO checks (session_id, device_serial, bay, at, ready, results,"
            " clock_offset_s, clock_offset_after_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                device_serial,
                bay,
                at,
                1 if ready else 0,
                outbox.encode(results),
                clock_offset_s,
                clock_offset_after_s,
            ),
        )
        check_id = int(cur.lastrowid or 0)
        if session_id is not None and clock_offset_s is not None:
            sessions.set_clock_offset(conn, session_id, clock_offset_s)
        audit.append(
            catalog,
            "checks",
            device_serial,
            {**audit_data, "check_id": check_id, "session_id": session_id, "bay": bay},
        )
        outbox.enqueue(
            conn,
            topics.recorder(catalog.station_id, device_serial),
            health,
            event_id=f"{catalog.station_id}:{catalog.catalog_id}:health:{check_id}",
            retain=True,
        )
    return check_id


def last_at_bay(catalog: Catalog, bay: int) -> dict[str, Any] | None:
    """The newest check made at ``bay``."""
    rows = catalog.query("SELECT * FROM checks WHERE bay = ? ORDER BY id DESC LIMIT 1", (bay,))
    return rows[0] if rows else None


def recent_of_device(catalog: Catalog, device_serial: str, limit: int) -> list[dict[str, Any]]:
    """The recorder's newest checks, newest first (``results`` decoded)."""
    import json

    rows = catalog.query(
        "SELECT id, at, ready, results FROM checks WHERE device_serial = ?"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (device_serial, limit),
    )
    return [{**r, "results": json.loads(r["results"])} for r in rows]
