"""Named leases (table ``leases``): which worker of a group does a job that only one may do at
a time, such as publishing the centre's commands (:mod:`central.commands`).

A lease is a name, its holder and the time it runs out (seconds since the epoch). :func:`take`
is one conditional upsert: it succeeds when nobody holds the name, when the holder asks again
(a renewal) or when the lease ran out (its holder stopped or was killed). Portable SQL
(SQLite and PostgreSQL).
"""

from __future__ import annotations

import sqlite3

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        held_until REAL NOT NULL
    )""",
]


def take(conn: sqlite3.Connection, name: str, holder: str, *, now: float, until: float) -> bool:
    """Take or renew ``name`` for ``holder`` until ``until``; False while another holds it."""
    cur = conn.execute(
        "INSERT INTO leases (name, holder, held_until) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " held_until = excluded.held_until"
        " WHERE leases.holder = excluded.holder OR leases.held_until < ?",
        (name, holder, until, now),
    )
    return cur.rowcount == 1


def holder(conn: sqlite3.Connection, name: str, *, now: float) -> str | None:
    """Who holds ``name`` now, or None."""
    row = conn.execute(
        "SELECT holder FROM leases WHERE name = ? AND held_until >= ?", (name, now)
    ).fetchone()
    return None if row is None else str(row[0])
