"""The centre's commands to stations (table ``commands``): an outbox, and what became of each.

A command is issued in the same transaction as the decision it carries (a fault acknowledged,
a register entry changed, a station's fault received), as a row holding its payload without
signature (``doc``); :class:`central.commands.CommandPublisher` signs it with the centre's key
and publishes it retained at QoS 1 on its topic, and marks it ``published_at`` once the broker
acknowledged it (a command is never lost to a broker that was away: it waits here). When the
station's signed event names the ``command_id`` as applied, the row gets ``applied_at``; the
publisher then clears the retained topic (empty payload) unless a newer command holds it, and
marks ``cleared_at``. Every function takes the thread's connection; writes join the caller's
transaction.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from central.catalog.db import Connection
from sync.wire import commands as wire
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY,
        command_id TEXT NOT NULL UNIQUE,
        station TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        action TEXT NOT NULL,
        topic TEXT NOT NULL,
        doc TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        issued_by TEXT NOT NULL,
        published_at TEXT,
        applied_at TEXT,
        cleared_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS commands_topic ON commands (topic, seq)",
    "CREATE INDEX IF NOT EXISTS commands_key ON commands (station, kind, key, issued_at)",
    "CREATE INDEX IF NOT EXISTS commands_unpublished ON commands (seq) WHERE published_at IS NULL",
    "CREATE INDEX IF NOT EXISTS commands_to_clear ON commands (seq)"
    " WHERE applied_at IS NOT NULL AND cleared_at IS NULL",
]


def issue(
    conn: Connection,
    *,
    station: str,
    kind: str,
    key: str,
    action: str,
    by: str,
    at: str,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Queue one command (its payload without ``sig``); returns that payload."""
    if action not in wire.ACTIONS.get(kind, ()):
        raise ValueError(f"command {kind!r} has no action {action!r}")
    doc = {
        **(fields or {}),
        "command_id": uuid.uuid4().hex,
        "kind": kind,
        "station": station,
        "action": action,
        "at": at,
        "by": by,
    }
    conn.execute(
        "INSERT INTO commands (command_id, station, kind, key, action, topic, doc, issued_at,"
        " issued_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            doc["command_id"],
            station,
            kind,
            key,
            action,
            wire.topic(station, kind, key),
            canonical(doc),
            at,
            by,
        ),
    )
    return doc


def unpublished(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Commands not yet acknowledged by the broker, oldest first: (seq, topic, doc)."""
    rows = conn.execute(
        "SELECT seq, topic, doc FROM commands WHERE published_at IS NULL ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [{"seq": r["seq"], "topic": r["topic"], "doc": json.loads(r["doc"])} for r in rows]


def mark_published(conn: Connection, seq: int, at: str) -> None:
    conn.execute("UPDATE commands SET published_at = ? WHERE seq = ?", (at, seq))


def mark_applied(conn: Connection, station: str, command_id: str, at: str) -> bool:
    """The station says it applied ``command_id``; False when the centre never sent it to
    that station."""
    cur = conn.execute(
        "UPDATE commands SET applied_at = coalesce(applied_at, ?),"
        " published_at = coalesce(published_at, ?) WHERE command_id = ? AND station = ?",
        (at, at, command_id, station),
    )
    return cur.rowcount > 0


def settle(conn: Connection, station: str, kind: str, key: str, at: str) -> int:
    """Every command on (station, kind, key) is done with (the station resolved the fault
    itself): treated as applied, so its retained topic is cleared. Returns how many."""
    cur = conn.execute(
        "UPDATE commands SET applied_at = ?, published_at = coalesce(published_at, ?)"
        " WHERE station = ? AND kind = ? AND key = ? AND applied_at IS NULL",
        (at, at, station, kind, key),
    )
    return cur.rowcount


def to_clear(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Applied commands whose retained copy is still at the broker, each with ``latest``:
    whether it is still the newest command on its topic (only then is the topic cleared)."""
    rows = conn.execute(
        "SELECT c.seq, c.topic, c.published_at,"
        " NOT EXISTS (SELECT 1 FROM commands n WHERE n.topic = c.topic AND n.seq > c.seq)"
        " AS latest FROM commands c"
        " WHERE c.applied_at IS NOT NULL AND c.cleared_at IS NULL ORDER BY c.seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "seq": r["seq"],
            "topic": r["topic"],
            "published": r["published_at"] is not None,
            "latest": bool(r["latest"]),
        }
        for r in rows
    ]


def mark_cleared(conn: Connection, seq: int, at: str) -> None:
    conn.execute("UPDATE commands SET cleared_at = ? WHERE seq = ?", (at, seq))


def listing(conn: Connection, station: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` commands (of one station, or all), newest first."""
    sql = "SELECT * FROM commands"
    params: tuple[Any, ...] = ()
    if station is not None:
        sql, params = sql + " WHERE station = ?", (station,)
    rows = conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
    return [
        {
            "command_id": r["command_id"],
            "station": r["station"],
            "kind": r["kind"],
            "key": r["key"],
            "action": r["action"],
            "topic": r["topic"],
            "doc": json.loads(r["doc"]),
            "issued_at": r["issued_at"],
            "issued_by": r["issued_by"],
            "published_at": r["published_at"],
            "applied_at": r["applied_at"],
            "cleared_at": r["cleared_at"],
        }
        for r in rows
    ]


def register_missing(conn: Connection) -> list[tuple[str, str]]:
    """(station, serial) pairs where the station was sent no ``register`` command since the
    register entry last changed (a new entry, a changed one, a station new to the centre)."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT s.station, g.serial FROM stations s CROSS JOIN register g"
            " WHERE NOT EXISTS (SELECT 1 FROM commands c WHERE c.station = s.station"
            " AND c.kind = 'register' AND c.key = g.serial AND c.issued_at >= g.updated_at)"
            " ORDER BY s.station, g.serial"
        )
    ]
