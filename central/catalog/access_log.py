"""The centre's access log (table ``access_log``; rule clauses 13 and 35): every request made,
every decision (``approve``, ``refuse``) and every refused decision (``approve.refused``),
every download (``download``) and refused download (``download.refused``), every export
(``export``), refused export (``export.refused``) and failed export (``export.failed``); each
row with who, when, which request, which object (station and recording) and why.

Rows are only added, never changed. Every write joins the caller's transaction.
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog.db import Connection

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS access_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        by TEXT NOT NULL,
        action TEXT NOT NULL,
        request_id TEXT,
        station TEXT,
        recording TEXT,
        reason TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS access_log_request ON access_log (request_id, id)",
]

ACTIONS = (
    "request",
    "approve",
    "refuse",
    "approve.refused",
    "download",
    "download.refused",
    "export",
    "export.refused",
    "export.failed",
)


def record(
    conn: Connection,
    action: str,
    *,
    at: str,
    by: str,
    request_id: str | None = None,
    station: str | None = None,
    recording: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Add one row; returns its id."""
    if action not in ACTIONS:
        raise ValueError(f"access log action {action!r} is not one of {', '.join(ACTIONS)}")
    cur = conn.execute(
        "INSERT INTO access_log (at, by, action, request_id, station, recording, reason, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            at,
            by,
            action,
            request_id,
            station,
            recording,
            reason,
            json.dumps(detail or {}, sort_keys=True, ensure_ascii=False),
        ),
    )
    return int(cur.fetchone()[0])


def listing(
    conn: Connection,
    *,
    request_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows newest first (by id: stable for paging), of one request or all."""
    where, params = (" WHERE request_id = ?", (request_id,)) if request_id else ("", ())
    rows = conn.execute(
        f"SELECT * FROM access_log{where} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
        (*params, limit, offset),
    ).fetchall()
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
