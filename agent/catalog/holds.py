"""Holds (table ``holds``): what keeps footage past its retention, and why (rule clause 12).

A hold covers one recording, one session (a docking's offload), or a recorder (by serial) or an
officer over a time range ``[from_at, to_at)`` of the recordings' own time (their recorded start,
or when they were offloaded where the recorder gave none; an open end runs on). It carries a
reason from the clause (:data:`REASONS`), a case name and number, where it was placed
(:data:`ORIGINS`) and by whom; releasing it keeps the row with who, when and why. A recording is
held while any unreleased hold covers it: retention never purges it (docs/retention.md) and an
export by hold or case takes it (docs/export.md).

The write functions take the open connection inside :meth:`Catalog.tx` and never commit; the
caller audits the change in the same transaction (rule 3, docs/architecture.md).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

from agent.catalog import audit, now_utc

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: Rule clause 12's reasons for keeping footage long term, and the recorder's own mark.
REASONS = (
    "complaint",  # the party objects, or an objection or complaint is expected
    "obstruction",  # obstruction of, or assault on, officers
    "major_case",  # a major or sensitive case
    "marked_on_recorder",  # the recorder marked the file important (its profile reads the mark)
    "other",  # any other reason, stated in reason_text
)
SCOPES = ("recording", "session", "device", "officer")
ORIGINS = ("station", "centre", "recorder")

#: The recording's own time, as a hold's range compares it: in UTC (SQLite's datetime() reads
#: the offset), since a recorder's start carries its own offset (+08:00) and offloaded_at UTC's.
_REC_TIME = "datetime(COALESCE({r}.recorded_start, {r}.offloaded_at))"
#: An unreleased hold ``h`` covers recording ``r``.
_COVERS = (
    "h.released_at IS NULL AND ("
    "(h.scope = 'recording' AND h.recording_id = {r}.id)"
    " OR (h.scope = 'session' AND h.session_id = {r}.session_id)"
    " OR (h.scope IN ('device', 'officer')"
    " AND (CASE h.scope WHEN 'device' THEN h.device_serial = {r}.device_serial"
    " ELSE h.officer_id = {r}.officer_id END)"
    " AND (h.from_at IS NULL OR " + _REC_TIME + " >= datetime(h.from_at))"
    " AND (h.to_at IS NULL OR " + _REC_TIME + " < datetime(h.to_at))))"
)


def not_held_sql(alias: str = "r") -> str:
    """A WHERE fragment true when no unreleased hold covers recording ``alias``: the owner of
    ``recordings`` adds it to its purge query, so holds are read where purges are chosen."""
    return f"NOT EXISTS (SELECT 1 FROM holds h WHERE {_COVERS.format(r=alias)})"


def new_id() -> str:
    return f"H-{uuid.uuid4().hex[:12]}"


def add(conn: sqlite3.Connection, hold: dict[str, Any]) -> str:
    """Keep a new hold (``id`` made when absent), inside the caller's transaction."""
    row = {"origin": "station", **hold}
    row["id"] = row.get("id") or new_id()
    for name, allowed in (("scope", SCOPES), ("reason", REASONS), ("origin", ORIGINS)):
        if row.get(name) not in allowed:
            raise ValueError(f"hold {name} {row.get(name)!r} is not one of {', '.join(allowed)}")
    columns = ", ".join(row)
    conn.execute(
        f"INSERT INTO holds ({columns}) VALUES ({', '.join('?' for _ in row)})",  # noqa: S608
        tuple(row.values()),
    )
    return row["id"]


def release(
    conn: sqlite3.Connection, hold_id: str, *, by: str | None, reason: str, at: str
) -> bool:
    """Release an unreleased hold; False when there is none by that id (or it was released)."""
    cur = conn.execute(
        "UPDATE holds SET released_at = ?, released_by = ?, release_reason = ?"
        " WHERE id = ? AND released_at IS NULL",
        (at, by, reason, hold_id),
    )
    return cur.rowcount == 1


def get(catalog: Catalog, hold_id: str) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM holds WHERE id = ?", (hold_id,))
    return rows[0] if rows else None


def listing(catalog: Catalog, *, released: bool = False) -> list[dict[str, Any]]:
    """The unreleased holds (and the released ones too when asked), newest first."""
    where = "" if released else " WHERE released_at IS NULL"
    return catalog.query(f"SELECT * FROM holds{where} ORDER BY placed_at DESC, id")  # noqa: S608


def by_case(catalog: Catalog, case_number: str) -> list[dict[str, Any]]:
    return catalog.query(
        "SELECT * FROM holds WHERE case_number = ? ORDER BY placed_at, id", (case_number,)
    )


def recordings_held_by(catalog: Catalog, hold_id: str) -> list[dict[str, Any]]:
    """The recordings hold ``hold_id`` covers (released or not), oldest first."""
    covers = _COVERS.format(r="r").replace("h.released_at IS NULL AND ", "", 1)
    return catalog.query(
        f"SELECT r.* FROM recordings r JOIN holds h ON h.id = ? AND {covers}"  # noqa: S608
        " ORDER BY r.offloaded_at, r.id",
        (hold_id,),
    )


def holds_on(catalog: Catalog, recording_id: int) -> list[dict[str, Any]]:
    """The unreleased holds covering one recording."""
    return catalog.query(
        f"SELECT h.* FROM recordings r JOIN holds h ON {_COVERS.format(r='r')}"  # noqa: S608
        " WHERE r.id = ? ORDER BY h.placed_at, h.id",
        (recording_id,),
    )


def place(catalog: Catalog, hold: dict[str, Any]) -> str:
    """Keep a new hold and audit it (``hold.placed``, the whole hold: it travels to the centre
    as a signed event), in one transaction. Returns its id."""
    with catalog.tx():
        return place_in(catalog, hold)


def lift(catalog: Catalog, hold_id: str, *, by: str | None, reason: str, **extra: Any) -> bool:
    """Release a hold and audit it (``hold.released``), in one transaction; False (and nothing
    written) when no unreleased hold has that id. ``extra`` (e.g. a ``command_id``) goes into
    the audit entry."""
    with catalog.tx():
        return lift_in(catalog, hold_id, by=by, reason=reason, **extra)


def place_in(catalog: Catalog, hold: dict[str, Any]) -> str:
    """As :func:`place`, inside the caller's open :meth:`Catalog.tx`: the offload's (a
    recorder's own mark is held in the transaction that records the recording, rule 3), or the
    one that records a centre command as applied. Returns the hold's id."""
    row = {"origin": "station", "placed_at": now_utc(), **hold}
    row["id"] = row.get("id") or new_id()
    hold_id = add(catalog.conn, row)
    audit.append(catalog, "hold.placed", hold_id, {k: v for k, v in row.items() if v is not None})
    return hold_id


def lift_in(catalog: Catalog, hold_id: str, *, by: str | None, reason: str, **extra: Any) -> bool:
    """As :func:`lift`, inside the caller's open :meth:`Catalog.tx`; False (nothing written)
    when no unreleased hold has that id."""
    at = now_utc()
    if not release(catalog.conn, hold_id, by=by, reason=reason, at=at):
        return False
    data = {"id": hold_id, "released_at": at, "released_by": by, "release_reason": reason}
    audit.append(catalog, "hold.released", hold_id, {**data, **extra})
    return True
