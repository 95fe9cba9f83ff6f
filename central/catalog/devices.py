"""The recorders across stations (table ``devices``): each serial's latest report, wherever it
docked (an officer may dock at any station).

Kept from every recorder health message (``recdock/<station>/recorder/<serial>``) whose ``at``
is newer than the one held: the station and bay it docked at, when, the verdict and reasons of
its pre-shift checks, battery, free space, clock offset, officer and unit as the station read
them. ``recorders`` keeps the last report per station; this table answers "where and how is
this recorder now" for the dashboard's list of 1,000 recorders in one indexed query.
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog import paging
from central.catalog.db import Connection
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices (
        serial TEXT PRIMARY KEY,
        station TEXT NOT NULL,
        bay INTEGER,
        at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        ready INTEGER,
        reasons TEXT NOT NULL DEFAULT '[]',
        battery_pct REAL,
        free_bytes INTEGER,
        total_bytes INTEGER,
        clock_offset_s REAL,
        officer TEXT,
        unit TEXT,
        model TEXT,
        firmware TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS devices_station ON devices (station, serial)",
    "CREATE INDEX IF NOT EXISTS devices_unit ON devices (unit, serial)",
    "CREATE INDEX IF NOT EXISTS devices_at ON devices (at)",
]

FIELDS = ("battery_pct", "free_bytes", "total_bytes", "clock_offset_s", "officer", "unit")


def record(conn: Connection, station: str, doc: dict[str, Any], received_at: str) -> None:
    """A recorder's health report; kept when newer than the one held."""
    ready = doc.get("ready")
    conn.execute(
        "INSERT INTO devices (serial, station, bay, at, received_at, ready, reasons, battery_pct,"
        " free_bytes, total_bytes, clock_offset_s, officer, unit, model, firmware)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (serial) DO UPDATE SET station = excluded.station, bay = excluded.bay,"
        " at = excluded.at, received_at = excluded.received_at, ready = excluded.ready,"
        " reasons = excluded.reasons, battery_pct = excluded.battery_pct,"
        " free_bytes = excluded.free_bytes, total_bytes = excluded.total_bytes,"
        " clock_offset_s = excluded.clock_offset_s, officer = excluded.officer,"
        " unit = excluded.unit, model = excluded.model, firmware = excluded.firmware"
        " WHERE excluded.at > devices.at",
        (
            doc["device_serial"],
            station,
            doc.get("bay"),
            doc["at"],
            received_at,
            None if ready is None else int(bool(ready)),
            canonical(list(doc.get("reasons") or [])),
            *(doc.get(f) for f in FIELDS),
            doc.get("model"),
            doc.get("firmware"),
        ),
    )


def _view(r: Any) -> dict[str, Any]:
    out = dict(r)
    out["ready"] = None if r["ready"] is None else bool(r["ready"])
    out["reasons"] = json.loads(r["reasons"])
    return out


def listing(conn: Connection, *, station: str | None = None) -> list[dict[str, Any]]:
    """Every recorder's latest report by serial (of those last docked at ``station``)."""
    sql, params = "SELECT * FROM devices", []
    if station is not None:
        sql, params = sql + " WHERE station = ?", [station]
    return [_view(r) for r in conn.execute(sql + " ORDER BY serial", params)]


def of(conn: Connection, serials: list[str]) -> dict[str, dict[str, Any]]:
    """The latest report of each of ``serials`` that has one (a page of the fleet list)."""
    if not serials:
        return {}
    sql = f"SELECT * FROM devices WHERE serial IN ({', '.join('?' for _ in serials)})"  # noqa: S608
    return {r["serial"]: _view(r) for r in conn.execute(sql, serials)}


# The fleet's recorders: those reported (devices) and those registered (the register's rows,
# read here, never written); the unit is the register's when it names one, else the report's.
_FLEET = (
    "SELECT s.serial FROM (SELECT serial FROM devices UNION SELECT serial FROM register) s"
    " LEFT JOIN devices d ON d.serial = s.serial LEFT JOIN register g ON g.serial = s.serial"
    " WHERE (CAST(:unit AS TEXT) IS NULL OR coalesce(nullif(g.unit, ''), d.unit) = :unit)"
    " AND (CAST(:station AS TEXT) IS NULL OR d.station = :station)"
)


def fleet_serials(
    conn: Connection,
    *,
    unit: str | None = None,
    station: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[str]:
    """Serials of the recorders reported or registered (of one unit, or last docked at one
    station), by serial, a page at a time."""
    sql = _FLEET + " ORDER BY s.serial LIMIT :limit OFFSET :offset"
    page = dict(zip(("limit", "offset"), paging.params(limit, offset), strict=True))
    return [r[0] for r in conn.execute(sql, {"unit": unit, "station": station, **page})]


def fleet_count(conn: Connection, *, unit: str | None = None, station: str | None = None) -> int:
    found = conn.execute(f"SELECT count(*) FROM ({_FLEET}) f", {"unit": unit, "station": station})
    return found.fetchone()[0]


def one(conn: Connection, serial: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM devices WHERE serial = ?", (serial,)).fetchone()
    return _view(row) if row else None


def not_seen_since(conn: Connection, before: str) -> list[dict[str, Any]]:
    """Recorders whose last report is older than ``before``."""
    return [
        _view(r) for r in conn.execute("SELECT * FROM devices WHERE at < ? ORDER BY at", (before,))
    ]


def count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM devices").fetchone()[0]
