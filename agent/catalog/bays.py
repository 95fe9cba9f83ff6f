"""The bays (table ``bays``): what each bay shows now, for `recdock status` and the centre.

Every bay state change is one transaction: the row, an audit entry and the retained bay topic
in the outbox (rule 3, docs/architecture.md). Offload progress is not a state change: it only
updates the row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.catalog import audit, now_utc, outbox
from sync.wire import topics

if TYPE_CHECKING:
    from agent.catalog import Catalog


def set_bay_state(
    catalog: Catalog,
    bay: int | None,
    state: str,
    *,
    device_serial: str | None = None,
    profile: str | None = None,
    reason: str | None = None,
    session_id: str | None = None,
    detail: str | None = None,
    port: str | None = None,
    also: tuple[str, str, dict[str, Any]] | None = None,
) -> None:
    """Record that ``bay`` shows ``state``: the bays row, an audit entry and the retained
    bay topic, in one transaction. ``also`` adds one more audit entry to the same
    transaction (e.g. ``device.unknown``). A port with no bay number gets the audit entry
    only (there is no bay row or topic to update)."""
    at = now_utc()
    payload = {
        "bay": bay,
        "state": str(state),
        "device_serial": device_serial,
        "profile": profile,
        "reason": reason,
        "session_id": session_id,
        "detail": detail,
        "at": at,
    }
    if port is not None:
        payload["port"] = port
    with catalog.tx() as conn:
        if bay is not None:
            conn.execute(
                "INSERT INTO bays (bay, state, device_serial, profile, reason, session_id,"
                " progress_bytes, progress_total, detail, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)"
                " ON CONFLICT(bay) DO UPDATE SET state = excluded.state,"
                " device_serial = excluded.device_serial, profile = excluded.profile,"
                " reason = excluded.reason, session_id = excluded.session_id,"
                " progress_bytes = NULL, progress_total = NULL, detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (bay, str(state), device_serial, profile, reason, session_id, detail, at),
            )
        subject = f"bay {bay}" if bay is not None else f"port {port}"
        if also is not None:
            audit.append(catalog, *also)
        entry = audit.append(catalog, "bay.state", subject, payload)
        if bay is not None:
            outbox.enqueue(
                conn,
                topics.bay(catalog.station_id, bay),
                {**payload, "station": catalog.station_id, "audit_seq": entry.seq},
                event_id=f"{catalog.station_id}:bay:{bay}:{entry.seq}",
                retain=True,
            )


def set_progress(catalog: Catalog, bay: int, done: int, total: int) -> None:
    """The offload's progress on the bay's row (not audited: not a state change)."""
    with catalog.tx() as conn:
        conn.execute(
            "UPDATE bays SET progress_bytes = ?, progress_total = ? WHERE bay = ?",
            (done, total, bay),
        )


def states(catalog: Catalog) -> dict[int, str]:
    """Bay number -> the state it shows."""
    return {r["bay"]: r["state"] for r in catalog.query("SELECT bay, state FROM bays")}


def rows(catalog: Catalog) -> dict[int, dict[str, Any]]:
    """Bay number -> its whole row."""
    return {r["bay"]: r for r in catalog.query("SELECT * FROM bays ORDER BY bay")}
