"""The centre's register of recorders (table ``central_register``), as its signed ``register``
commands set it: each recorder's lifecycle (in_service, in_maintenance, lost, retired), officer
and unit. The station's own ``[[devices]]`` still work when the centre is away; where the two
disagree the station shows the conflict (agent/station/register.py), never picks one."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog


def set_entry(
    conn: sqlite3.Connection,
    serial: str,
    *,
    lifecycle: str,
    officer: str | None,
    unit: str | None,
    command_id: str,
    by: str | None,
    at: str,
) -> None:
    """Keep the centre's entry for ``serial``, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO central_register (serial, lifecycle, officer, unit, command_id, set_by, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO UPDATE SET"
        " lifecycle = excluded.lifecycle, officer = excluded.officer, unit = excluded.unit,"
        " command_id = excluded.command_id, set_by = excluded.set_by, at = excluded.at",
        (serial, lifecycle, officer, unit, command_id, by, at),
    )


def entry(catalog: Catalog, serial: str) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM central_register WHERE serial = ?", (serial,))
    return rows[0] if rows else None


def entries(catalog: Catalog) -> list[dict[str, Any]]:
    return catalog.query("SELECT * FROM central_register ORDER BY serial")
