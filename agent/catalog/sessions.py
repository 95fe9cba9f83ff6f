"""The offload sessions (table ``sessions``): one row per docking's offload, from start to end.

A session without ``ended_at`` whose lock no live process holds was interrupted; the next
offload recovers it (agent/offload/recovery.py).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog

COLUMNS = (
    "id",
    "station_id",
    "device_serial",
    "officer_id",
    "unit",
    "profile",
    "source",
    "store_dir",
    "started_at",
    "device_info",
    "files_seen",
    "problems",
    "clock_offset_s",
)


def insert(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    """Open a session inside the caller's transaction."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"sessions: unknown columns {sorted(unknown)}")
    names = [c for c in COLUMNS if c in row]
    conn.execute(
        f"INSERT INTO sessions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [row[c] for c in names],
    )


def get(catalog: Catalog, session_id: str) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM sessions WHERE id = ?", (session_id,))
    return rows[0] if rows else None


def unfinished(catalog: Catalog) -> list[dict[str, Any]]:
    """Sessions not ended, oldest first (running now, or left by a dead process)."""
    return catalog.query("SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at")


def is_open(catalog: Catalog, session_id: str) -> bool:
    return bool(
        catalog.query("SELECT 1 FROM sessions WHERE id = ? AND ended_at IS NULL", (session_id,))
    )


def store_dirs(catalog: Catalog) -> dict[str, str]:
    """Session id -> its folder in the store."""
    return {r["id"]: r["store_dir"] for r in catalog.query("SELECT id, store_dir FROM sessions")}


def add_stored(conn: sqlite3.Connection, session_id: str, files: int, size: int) -> None:
    conn.execute(
        "UPDATE sessions SET files_stored = files_stored + ?,"
        " bytes_stored = bytes_stored + ? WHERE id = ?",
        (files, size, session_id),
    )


def set_clock_offset(conn: sqlite3.Connection, session_id: str, offset_s: float) -> None:
    conn.execute("UPDATE sessions SET clock_offset_s = ? WHERE id = ?", (offset_s, session_id))


def end(conn: sqlite3.Connection, session_id: str, state: str, at: str) -> bool:
    """Mark the session ended; False when it had ended already (one end per session)."""
    cur = conn.execute(
        "UPDATE sessions SET state = ?, ended_at = ? WHERE id = ? AND ended_at IS NULL",
        (state, at, session_id),
    )
    return cur.rowcount == 1
