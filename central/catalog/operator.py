"""The operators' actions (table ``operator_actions``): who did what to a station's record, when
and why. Today: re-baselining a broken audit chain (``recdock-central rebaseline``).

Rows are only added, never changed or removed; the JSON API shows a station's actions with its
chain (``GET /api/stations/{id}/chain``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

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
    conn: sqlite3.Connection,
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


def listing(conn: sqlite3.Connection, station: str) -> list[dict[str, Any]]:
    return [
        {
            "at": r["at"],
            "operator": r["operator"],
            "action": r["action"],
            **json.loads(r["detail"]),
        }
        for r in conn.execute(
            "SELECT * FROM operator_actions WHERE station = ? ORDER BY id", (station,)
        )
    ]
