"""The recorder register at the centre (table ``register``): each recorder's lifecycle, officer
and unit, kept by an administrator (central/actions.py, ``recdock-central register``) and
pushed to every station as ``register``/``set`` commands.

Lifecycles: ``in_service``, ``in_maintenance``, ``lost``, ``retired``. Every change is also an
``operator_actions`` row (who, when, what it was before).
"""

from __future__ import annotations

from typing import Any

from central.catalog import paging
from central.catalog.db import Connection

LIFECYCLES = ("in_service", "in_maintenance", "lost", "retired")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS register (
        serial TEXT PRIMARY KEY,
        lifecycle TEXT NOT NULL CHECK (lifecycle IN
            ('in_service', 'in_maintenance', 'lost', 'retired')),
        officer TEXT,
        unit TEXT,
        note TEXT,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS register_unit ON register (unit, serial)",
]


def put(conn: Connection, entry: dict[str, Any], by: str, at: str) -> None:
    """Add or replace ``entry`` (serial, lifecycle, officer, unit, note)."""
    conn.execute(
        "INSERT INTO register (serial, lifecycle, officer, unit, note, updated_at, updated_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET"
        " lifecycle = excluded.lifecycle, officer = excluded.officer, unit = excluded.unit,"
        " note = excluded.note, updated_at = excluded.updated_at,"
        " updated_by = excluded.updated_by",
        (
            entry["serial"],
            entry["lifecycle"],
            entry.get("officer"),
            entry.get("unit"),
            entry.get("note"),
            at,
            by,
        ),
    )


def one(conn: Connection, serial: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM register WHERE serial = ?", (serial,)).fetchone()
    return dict(row) if row else None


def listing(
    conn: Connection, unit: str | None = None, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """The entries by serial (of one unit), a page at a time."""
    where, params = _where(unit)
    sql = "SELECT * FROM register" + where + " ORDER BY serial" + paging.SQL
    return [dict(r) for r in conn.execute(sql, (*params, *paging.params(limit, offset)))]


def count(conn: Connection, unit: str | None = None) -> int:
    where, params = _where(unit)
    return conn.execute("SELECT count(*) FROM register" + where, params).fetchone()[0]


def _where(unit: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if unit is None else (" WHERE unit = ?", (unit,))


def by_serial(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r["serial"]: r for r in listing(conn)}


def of(conn: Connection, serials: list[str]) -> dict[str, dict[str, Any]]:
    """The entries of those of ``serials`` that are registered."""
    if not serials:
        return {}
    sql = f"SELECT * FROM register WHERE serial IN ({', '.join('?' for _ in serials)})"  # noqa: S608
    return {r["serial"]: dict(r) for r in conn.execute(sql, serials)}
