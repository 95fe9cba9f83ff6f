"""The operators' actions (table ``operator_actions``): who did what to a station's record, when
and why: re-baselining a broken audit chain (``recdock-central rebaseline``), acknowledging or
resolving a fault, changing the recorder register (central/actions.py).

Rows are only added, never changed or removed; the JSON API shows a station's actions with its
chain (``GET /api/stations/{id}/chain``).
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog.db import Connection
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS operator_actions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        station TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
]


def record(
    conn: Connection,
    at: str,
    operator: str,
    action: str,
    station: str,
    detail: dict[str, Any],
) -> None:
    conn.execute(
        "INSERT INTO operator_actions (at, operator, action, station, detail)"
        " VALUES (?, ?, ?, ?, ?)",
        (at, operator, action, station, canonical(detail)),
    )


def listing(conn: Connection, station: str, action: str | None = None) -> list[dict[str, Any]]:
    """The station's actions in order (only those of ``action`` when given)."""
    sql, params = "SELECT * FROM operator_actions WHERE station = ?", [station]
    if action is not None:
        sql, params = sql + " AND action = ?", [*params, action]
    return [
        {
            "at": r["at"],
            "operator": r["operator"],
            "action": r["action"],
            **json.loads(r["detail"]),
        }
        for r in conn.execute(sql + " ORDER BY id", params)
    ]
