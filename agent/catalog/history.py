"""Each recorder's history of dockings (table ``recorder_history``): when it was docked and taken
out, its battery and its clock at docking. The fault rules that look at a trend compare a
docking with the ones before it (agent/checks/faults.py); the overdue rule reads the last
undocking."""

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


def _docked(r: dict) -> Docked:
    return Docked(**{k: r[k] for k in Docked.__dataclass_fields__})


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
