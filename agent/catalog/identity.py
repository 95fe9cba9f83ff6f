"""Identity conflicts (table ``identity_conflicts``): sessions whose recorder's USB descriptor,
status file and register disagree, or whose serial another recorder docked at the same time
presents too (rule 8, docs/architecture.md).

The recordings of such a session are filed under the USB identity; this table marks the
session (and so each of its recordings) as a conflict. Each row is written with its
``identity.conflict`` audit entry in one transaction (rule 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.catalog import audit, now_utc

if TYPE_CHECKING:
    from agent.catalog import Catalog


def record(
    catalog: Catalog,
    *,
    session_id: str,
    device_serial: str,
    claimed_serial: str | None,
    reason: str,
) -> None:
    """Mark ``session_id`` as an identity conflict, with its audit entry."""
    at = now_utc()
    with catalog.tx() as conn:
        conn.execute(
            "INSERT INTO identity_conflicts (session_id, device_serial, claimed_serial, reason,"
            " at) VALUES (?, ?, ?, ?, ?)",
            (session_id, device_serial, claimed_serial, reason, at),
        )
        audit.append(
            catalog,
            "identity.conflict",
            session_id,
            {"device_serial": device_serial, "claimed_serial": claimed_serial, "reason": reason},
        )


def of_session(catalog: Catalog, session_id: str) -> list[dict[str, Any]]:
    return catalog.query(
        "SELECT * FROM identity_conflicts WHERE session_id = ? ORDER BY id", (session_id,)
    )
