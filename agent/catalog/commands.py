"""The centre's commands this station applied (table ``commands_applied``), by ``command_id``:
each is applied once, however often the broker delivers it (it is retained, and QoS 1 may
deliver twice). Written in the transaction of what the command changed (rule 3)."""

from __future__ import annotations

import sqlite3

from agent.catalog import now_utc


def applied(conn: sqlite3.Connection, command_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM commands_applied WHERE command_id = ?", (command_id,)
    ).fetchone()
    return row is not None


def record(
    conn: sqlite3.Connection, command_id: str, *, topic: str, kind: str, action: str, outcome: str
) -> None:
    """Keep the command as applied, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO commands_applied (command_id, topic, kind, action, outcome, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (command_id, topic, kind, action, outcome, now_utc()),
    )
