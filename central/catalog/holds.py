"""Every station's holds, as the centre knows them (table ``holds``; rule clause 12).

One row per hold and station (``station``, ``hold_id``): a station's own hold arrives in its
signed event stream (``hold.placed``: the whole hold; ``hold.released``), so the centre keeps it
only under that station's signature (rule 9, docs/architecture.md) and one station's events
never touch another station's row. A hold placed at the centre (central/actions.py) is a row
for each station it is sent to, made when a supervisor decides it (``placed_at``, ``origin``
``centre``, the ``place_command``); the station's ``hold.placed`` event naming that command
confirms it (``station_placed_at``). Releasing works the same way: the centre's decision
(``released_at``, ``release_command``), the station's ``hold.released`` confirming it
(``station_released_at``). A hold is **active** while ``released_at`` is empty.

What a hold covers: ``scope`` (``recording``, ``session``, ``device``, ``officer``) and its
target: the recording's store path (``recording``: the ``file.stored`` event's subject) and
the station's own ``recording_id``, the ``session_id``, the ``device_serial`` or the
``officer_id``, with ``from_at``/``to_at`` for a recorder or an officer.

Events arrive validly signed but their content is the station's: a ``hold.*`` event this
module cannot read is logged and kept as an event, never refused (refusing it would cut the
station's chain). Every write joins the caller's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from central.catalog.db import Connection
from sync.wire.commands import HOLD_REASONS, HOLD_SCOPES

logger = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS holds (
        station TEXT NOT NULL,
        hold_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        recording TEXT,
        recording_id INTEGER,
        session_id TEXT,
        device_serial TEXT,
        officer_id TEXT,
        from_at TEXT,
        to_at TEXT,
        reason TEXT NOT NULL,
        reason_text TEXT,
        case_name TEXT,
        case_number TEXT,
        origin TEXT NOT NULL,
        placed_by TEXT,
        placed_at TEXT NOT NULL,
        place_command TEXT,
        station_placed_at TEXT,
        released_at TEXT,
        released_by TEXT,
        release_reason TEXT,
        release_command TEXT,
        station_released_at TEXT,
        PRIMARY KEY (station, hold_id)
    )""",
    # the listing's order (newest first, then station and id: stable for paging)
    "CREATE INDEX IF NOT EXISTS holds_placed ON holds (placed_at DESC, station, hold_id)",
    "CREATE INDEX IF NOT EXISTS holds_case ON holds (case_number, placed_at)",
    "CREATE INDEX IF NOT EXISTS holds_station ON holds (station, placed_at)",
    "CREATE INDEX IF NOT EXISTS holds_device ON holds (device_serial, placed_at)",
    "CREATE INDEX IF NOT EXISTS holds_hold ON holds (hold_id)",
]

#: What a hold says of what it covers, as the ``hold.placed`` event and the command carry it.
TARGET_FIELDS = (
    "recording",
    "recording_id",
    "session_id",
    "device_serial",
    "officer_id",
    "from_at",
    "to_at",
)
TEXT_FIELDS = ("reason_text", "case_name", "case_number", "placed_by")
MAX_TEXT = 500
_COLUMNS = (
    "station",
    "hold_id",
    "scope",
    *TARGET_FIELDS,
    "reason",
    *TEXT_FIELDS,
    "origin",
    "placed_at",
    "place_command",
    "station_placed_at",
    "released_at",
    "released_by",
    "release_reason",
    "release_command",
    "station_released_at",
)

# -- writes ------------------------------------------------------------------------------------


def place(conn: Connection, station: str, hold: dict[str, Any]) -> None:
    """Keep a hold the centre decided for ``station`` (``hold_id``, scope, target, reason,
    case, ``origin``, ``placed_by``, ``placed_at``, ``place_command``)."""
    row = {k: hold.get(k) for k in _COLUMNS if k != "station"}
    conn.execute(
        f"INSERT INTO holds (station, {', '.join(row)})"  # noqa: S608
        f" VALUES (?, {', '.join('?' for _ in row)})",
        (station, *row.values()),
    )


def request_release(
    conn: Connection,
    station: str,
    hold_id: str,
    *,
    by: str,
    reason: str,
    at: str,
    command_id: str,
) -> bool:
    """The centre releases an active hold at ``station``; False when it is not active."""
    cur = conn.execute(
        "UPDATE holds SET released_at = ?, released_by = ?, release_reason = ?,"
        " release_command = ? WHERE station = ? AND hold_id = ? AND released_at IS NULL",
        (at, by, reason, command_id, station, hold_id),
    )
    return cur.rowcount == 1


def from_event(conn: Connection, station: str, doc: dict[str, Any]) -> None:
    """A stored event of ``station``: ``hold.placed`` and ``hold.released`` update its holds;
    other kinds change nothing."""
    kind, data = doc.get("kind"), doc.get("data")
    if kind not in ("hold.placed", "hold.released"):
        return
    problem = _unreadable(kind, data)
    if problem:
        logger.warning(
            "station %s: event %s (%s) is kept, but its hold cannot be read: %s",
            station,
            doc.get("seq"),
            kind,
            problem,
        )
        return
    if kind == "hold.placed":
        _placed(conn, station, data, doc["at"])
    else:
        _released(conn, station, data, doc["at"])


def _unreadable(kind: str, data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        return "no hold id"
    if kind == "hold.released":
        return None
    if data.get("scope") not in HOLD_SCOPES:
        return f"scope {str(data.get('scope'))[:40]!r} is not one of {', '.join(HOLD_SCOPES)}"
    if data.get("reason") not in HOLD_REASONS:
        return f"reason {str(data.get('reason'))[:40]!r} is not one of {', '.join(HOLD_REASONS)}"
    return None


def _placed(conn: Connection, station: str, data: dict[str, Any], at: str) -> None:
    """The station holds it: confirm the centre's row, or keep the station's own hold."""
    cur = conn.execute(
        "UPDATE holds SET station_placed_at = coalesce(station_placed_at, ?),"
        " recording_id = coalesce(recording_id, ?) WHERE station = ? AND hold_id = ?",
        (at, _int(data.get("recording_id")), station, data["id"]),
    )
    if cur.rowcount:
        return
    row: dict[str, Any] = {
        "hold_id": data["id"][:64],
        "scope": data["scope"],
        "reason": data["reason"],
        "origin": _text(data.get("origin")) or "station",
        "placed_at": _text(data.get("placed_at")) or at,
        "station_placed_at": at,
        "place_command": _text(data.get("command_id")),
    }
    for name in TARGET_FIELDS + TEXT_FIELDS:
        row[name] = _int(data.get(name)) if name == "recording_id" else _text(data.get(name))
    place(conn, station, row)


def _released(conn: Connection, station: str, data: dict[str, Any], at: str) -> None:
    """The station released it (of its own, or on the centre's command)."""
    conn.execute(
        "UPDATE holds SET station_released_at = coalesce(station_released_at, ?),"
        " released_at = coalesce(released_at, ?), released_by = coalesce(released_by, ?),"
        " release_reason = coalesce(release_reason, ?),"
        " release_command = coalesce(release_command, ?) WHERE station = ? AND hold_id = ?",
        (
            at,
            _text(data.get("released_at")) or at,
            _text(data.get("released_by")),
            _text(data.get("release_reason")),
            _text(data.get("command_id")),
            station,
            data["id"],
        ),
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:MAX_TEXT] or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- reads -------------------------------------------------------------------------------------


def listing(
    conn: Connection,
    *,
    station: str | None = None,
    case_number: str | None = None,
    device: str | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Holds newest first (then by station and id, so pages never overlap), filtered in SQL:
    of one station, one case number, covering one recorder by serial (a device hold, or a
    recording or session hold the station placed on that recorder's footage is not known by
    serial here), active or released."""
    where, params = _where(station=station, case_number=case_number, device=device, active=active)
    rows = conn.execute(
        f"SELECT * FROM holds{where} ORDER BY placed_at DESC, station, hold_id"  # noqa: S608
        " LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [view(r) for r in rows]


def count(conn: Connection, **filters: Any) -> int:
    where, params = _where(**filters)
    return conn.execute(f"SELECT count(*) FROM holds{where}", params).fetchone()[0]  # noqa: S608


def _where(
    *,
    station: str | None = None,
    case_number: str | None = None,
    device: str | None = None,
    active: bool | None = None,
) -> tuple[str, tuple[Any, ...]]:
    terms, params = [], []
    for column, value in (
        ("station", station),
        ("case_number", case_number),
        ("device_serial", device),
    ):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if active is not None:
        terms.append("released_at IS NULL" if active else "released_at IS NOT NULL")
    return (" WHERE " + " AND ".join(terms) if terms else ""), tuple(params)


def missing_at(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
    """(station, hold) for every active hold placed at the centre on a recorder or an officer
    that a known station has not been sent (a station new to the centre): the decision's
    fields only."""
    decided = ("hold_id", "scope", *TARGET_FIELDS, "reason", *TEXT_FIELDS, "origin", "placed_at")
    rows = conn.execute(
        "SELECT s.station AS target, h.* FROM stations s JOIN holds h ON h.station = ("
        " SELECT min(a.station) FROM holds a WHERE a.hold_id = h.hold_id)"
        " AND h.origin = 'centre'"
        " AND h.scope IN ('device', 'officer') AND h.released_at IS NULL"
        " WHERE NOT EXISTS (SELECT 1 FROM holds x WHERE x.station = s.station"
        " AND x.hold_id = h.hold_id) ORDER BY s.station, h.placed_at"
    ).fetchall()
    return [(r["target"], {k: r[k] for k in decided}) for r in rows]


def of_hold(conn: Connection, hold_id: str) -> list[dict[str, Any]]:
    """One hold at every station that holds it (a centre hold sent to several), by station."""
    rows = conn.execute("SELECT * FROM holds WHERE hold_id = ? ORDER BY station", (hold_id,))
    return [view(r) for r in rows]


def view(row: Any) -> dict[str, Any]:
    """A row with its ``state``: ``sent`` (the centre placed it; the station has not yet
    confirmed), ``held``, ``release_sent`` (released at the centre; the station has not yet
    confirmed), ``released``."""
    out = {k: row[k] for k in _COLUMNS}
    if out["released_at"] is None:
        out["state"] = "held" if out["station_placed_at"] else "sent"
    else:
        confirmed = out["station_released_at"] or not out["station_placed_at"]
        out["state"] = "released" if confirmed else "release_sent"
    out["active"] = out["released_at"] is None
    return out
