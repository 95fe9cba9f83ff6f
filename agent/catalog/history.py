"""Each recorder's history of dockings (table ``recorder_history``): when it was docked and taken
out, its battery and its clock at docking, and the battery read again while it stayed docked
(table ``battery_readings``; the last reading also on the docking's row). The fault rules that
look at a trend compare a docking with the ones before it (agent/checks/faults.py); the overdue
rule reads the last undocking; the charge rule the readings (agent/station/charge.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.catalog import now_utc

if TYPE_CHECKING:
    from agent.catalog import Catalog


@dataclass(frozen=True)
class Docked:
    id: int
    device_serial: str
    session_id: str | None
    docked_at: str
    undocked_at: str | None
    battery_pct: float | None
    device_clock: str | None
    clock_offset_s: float | None
    clock_offset_after_s: float | None
    battery_last_pct: float | None = None  # the last reading while it stayed docked
    battery_last_at: str | None = None


def _docked(r: dict) -> Docked:
    return Docked(**{k: r[k] for k in Docked.__dataclass_fields__ if k in r})


def record(
    catalog: Catalog,
    serial: str,
    *,
    session_id: str | None,
    docked_at: str,
    battery_pct: float | None,
    device_clock: str | None,
    clock_offset_s: float | None,
    clock_offset_after_s: float | None,
) -> int:
    """One docking's values (own transaction: a history row is no state change of its own)."""
    with catalog.tx() as conn:
        cur = conn.execute(
            "INSERT INTO recorder_history (device_serial, session_id, docked_at, battery_pct,"
            " device_clock, clock_offset_s, clock_offset_after_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                serial,
                session_id,
                docked_at,
                battery_pct,
                device_clock,
                clock_offset_s,
                clock_offset_after_s,
            ),
        )
        return int(cur.lastrowid or 0)


def undocked(catalog: Catalog, serial: str, at: str | None = None) -> None:
    """The recorder left its bay: its open docking ends now."""
    with catalog.tx() as conn:
        conn.execute(
            "UPDATE recorder_history SET undocked_at = ? WHERE device_serial = ?"
            " AND undocked_at IS NULL",
            (at or now_utc(), serial),
        )


def recent(catalog: Catalog, serial: str, limit: int) -> list[Docked]:
    """The recorder's newest dockings, newest first."""
    rows = catalog.query(
        "SELECT * FROM recorder_history WHERE device_serial = ? ORDER BY id DESC LIMIT ?",
        (serial, limit),
    )
    return [_docked(r) for r in rows]


def last_undocked(catalog: Catalog, serials: list[str]) -> dict[str, Docked | None]:
    """Each recorder's newest docking (None: never docked here)."""
    return {s: next(iter(recent(catalog, s, 1)), None) for s in serials}


def docked_now(catalog: Catalog, serial: str) -> Docked | None:
    """The recorder's open docking (not taken out yet), or None."""
    rows = catalog.query(
        "SELECT * FROM recorder_history WHERE device_serial = ? AND undocked_at IS NULL"
        " ORDER BY id DESC LIMIT 1",
        (serial,),
    )
    return _docked(rows[0]) if rows else None


def record_reading(
    catalog: Catalog, docking_id: int, at: str, battery_pct: float | None, charging: bool | None
) -> None:
    """A battery reading taken while the recorder stayed docked; the docking keeps the last."""
    with catalog.tx() as conn:
        conn.execute(
            "INSERT INTO battery_readings (history_id, at, battery_pct, charging)"
            " VALUES (?, ?, ?, ?)",
            (docking_id, at, battery_pct, None if charging is None else int(charging)),
        )
        if battery_pct is not None:
            conn.execute(
                "UPDATE recorder_history SET battery_last_pct = ?, battery_last_at = ?"
                " WHERE id = ?",
                (battery_pct, at, docking_id),
            )


def readings(catalog: Catalog, docking_id: int, limit: int = 20) -> list[dict]:
    """A docking's newest battery readings (at, battery_pct, charging), oldest first."""
    rows = catalog.query(
        "SELECT at, battery_pct, charging FROM battery_readings WHERE history_id = ?"
        " ORDER BY id DESC LIMIT ?",
        (docking_id, limit),
    )
    return rows[::-1]
