"""The recorders (table ``recorders``): each recorder's health as its station last reported it.

A cleared recorder topic changes nothing here: the last health seen is kept.
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog import paging
from central.catalog.db import Connection
from sync.wire.chain import canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS recorders (
        station TEXT NOT NULL,
        serial TEXT NOT NULL,
        ready INTEGER,
        health TEXT NOT NULL,
        at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, serial)
    )""",
]


INDEXES = [
    # each serial's newest report (newest, the dashboard's recorder list)
    "CREATE INDEX IF NOT EXISTS recorders_serial_at ON recorders (serial, at)",
]


def _row(r: Any) -> dict[str, Any]:
    return {
        "station": r["station"],
        "serial": r["serial"],
        "ready": None if r["ready"] is None else bool(r["ready"]),
        "at": r["at"],
        "updated_at": r["updated_at"],
        "health": json.loads(r["health"]),
    }


def record(conn: Connection, station: str, doc: dict[str, Any], at: str) -> None:
    ready = doc.get("ready")
    conn.execute(
        "INSERT INTO recorders (station, serial, ready, health, at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station, serial) DO UPDATE SET"
        " ready = excluded.ready, health = excluded.health, at = excluded.at,"
        " updated_at = excluded.updated_at",
        (
            station,
            doc["device_serial"],
            None if ready is None else int(bool(ready)),
            canonical(doc),
            doc.get("at"),
            at,
        ),
    )


def listing(
    conn: Connection,
    station: str | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every recorder, or one station's, by station and serial; a page at a time."""
    sql, params = _where(station)
    sql = "SELECT * FROM recorders" + sql + " ORDER BY station, serial" + paging.SQL
    return [_row(r) for r in conn.execute(sql, (*params, *paging.params(limit, offset)))]


def count(conn: Connection, station: str | None = None) -> int:
    sql, params = _where(station)
    return conn.execute("SELECT count(*) FROM recorders" + sql, params).fetchone()[0]


def _where(station: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if station is None else (" WHERE station = ?", (station,))


def newest(
    conn: Connection,
    *,
    station: str | None = None,
    unit: str | None = None,
    serial: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Each recorder's newest report (by its ``at``; the first station by id on a tie), of
    those last docked at ``station`` and reporting ``unit`` (or the one ``serial``), by
    serial, a page at a time."""
    sql, params = _newest_where(conn, station, unit, serial)
    sql = "SELECT * FROM recorders r" + sql + " ORDER BY r.serial" + paging.SQL
    return [_row(r) for r in conn.execute(sql, (*params, *paging.params(limit, offset)))]


def newest_count(
    conn: Connection,
    *,
    station: str | None = None,
    unit: str | None = None,
    serial: str | None = None,
) -> int:
    sql, params = _newest_where(conn, station, unit, serial)
    return conn.execute("SELECT count(*) FROM recorders r" + sql, params).fetchone()[0]


def newest_choices(conn: Connection) -> tuple[list[str], list[str]]:
    """The stations and units the newest reports name (a page's filter choices)."""
    sql = _newest_where(conn, None, None, None)[0]
    unit = conn.dialect.json_text("r.health", "unit")
    stations = [r[0] for r in conn.execute(
        f"SELECT DISTINCT r.station FROM recorders r{sql} ORDER BY 1")]  # fmt: skip
    units = [r[0] for r in conn.execute(
        f"SELECT DISTINCT u FROM (SELECT {unit} AS u FROM recorders r{sql}) n"
        " WHERE u IS NOT NULL AND u != '' ORDER BY 1")]  # fmt: skip
    return stations, units


_NEWEST = (
    " WHERE NOT EXISTS (SELECT 1 FROM recorders n WHERE n.serial = r.serial AND"
    " (coalesce(n.at, '') > coalesce(r.at, '') OR"
    " (coalesce(n.at, '') = coalesce(r.at, '') AND n.station < r.station)))"
)


def _newest_where(
    conn: Connection, station: str | None, unit: str | None, serial: str | None
) -> tuple[str, tuple[str, ...]]:
    sql, params = _NEWEST, ()
    if serial is not None:
        sql, params = sql + " AND r.serial = ?", (*params, serial)
    if station is not None:
        sql, params = sql + " AND r.station = ?", (*params, station)
    if unit is not None:
        unit_sql = conn.dialect.json_text("r.health", "unit")
        sql, params = sql + f" AND {unit_sql} = ?", (*params, unit)
    return sql, params
