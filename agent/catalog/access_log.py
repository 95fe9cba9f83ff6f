"""The access log (table ``access_log``): every export, refused export and refused decision,
with who, what and when (rule clause 13's registration of every use of archived footage).

Each row is written with its audit entry in one transaction (rule 3, docs/architecture.md) and
points at it (``audit_seq``), so the log travels to the centre in the signed chain and a row
cut from the table still shows in the audit log. ``what`` is canonical JSON: the hold or case,
the recordings, the destinations.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agent.catalog import audit, canonical, now_utc

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: What a row records, and the audit kind it is written with.
ACTIONS = {
    "export": "export.written",
    "export.refused": "export.refused",
    "export.failed": "export.failed",
    "approve.refused": "access.decision_refused",
}


def record(
    catalog: Catalog,
    action: str,
    *,
    by: str,
    request_id: str | None,
    what: dict[str, Any],
    reason: str | None = None,
) -> int:
    """Log one access (``action`` from :data:`ACTIONS`) and audit it, in one transaction.
    Returns the audit entry's sequence number."""
    kind = ACTIONS[action]
    outcome = "done" if action == "export" else "refused" if "refused" in action else "failed"
    at = now_utc()
    with catalog.tx() as conn:
        data = {"by": by, "request_id": request_id, **what, "outcome": outcome}
        if reason is not None:
            data["reason"] = reason
        entry = audit.append(catalog, kind, request_id or "-", data)
        conn.execute(
            "INSERT INTO access_log (at, action, by, request_id, what, outcome, reason,"
            " audit_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, action, by, request_id, canonical(what), outcome, reason, entry.seq),
        )
    return entry.seq


def entries(catalog: Catalog, *, request_id: str | None = None) -> list[dict[str, Any]]:
    """The log, oldest first (one request's when asked), ``what`` decoded."""
    where, params = ("WHERE request_id = ?", (request_id,)) if request_id else ("", ())
    rows = catalog.query(f"SELECT * FROM access_log {where} ORDER BY id", params)  # noqa: S608
    return [{**r, "what": json.loads(r["what"])} for r in rows]
