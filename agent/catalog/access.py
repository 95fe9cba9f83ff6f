"""Access requests (tables ``access_requests`` and ``access_recordings``): nobody takes footage
off the station without one that a person with that role approved (rule clauses 13, 34, 35).

A request says who asks (``requested_by``, the local user; ``on_behalf_of``, a party asking to
read or copy, clause 34), for which case (name, number), why (``purpose``) and for which
recordings: a hold's, a case's or named ones, resolved to recording ids when it is made and
kept in ``access_recordings`` (what the approver approves is the list, not a rule that may
cover more later). A decision (``approved`` or ``refused``) says by whom, when, until when
and why. Every change is audited in the same transaction (rule 3, docs/architecture.md), so it
travels to the centre. docs/access.md tells the rules; agent/access/approval.py checks them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent.catalog import audit, now_utc

if TYPE_CHECKING:
    from agent.catalog import Catalog

SCOPES = ("hold", "case", "recordings")
DECISIONS = ("approved", "refused")


def new_id() -> str:
    return f"A-{uuid.uuid4().hex[:12]}"


def request(catalog: Catalog, row: dict[str, Any], recording_ids: Iterable[int]) -> str:
    """Keep a new request for ``recording_ids`` and audit it (``access.requested``), in one
    transaction. Returns its id."""
    ids = sorted(set(recording_ids))
    if row.get("scope") not in SCOPES:
        raise ValueError(f"access scope {row.get('scope')!r} is not one of {', '.join(SCOPES)}")
    req = {"requested_at": now_utc(), **row, "id": row.get("id") or new_id()}
    columns = ", ".join(req)
    with catalog.tx() as conn:
        conn.execute(
            f"INSERT INTO access_requests ({columns})"  # noqa: S608
            f" VALUES ({', '.join('?' for _ in req)})",
            tuple(req.values()),
        )
        conn.executemany(
            "INSERT INTO access_recordings (request_id, recording_id) VALUES (?, ?)",
            [(req["id"], i) for i in ids],
        )
        data = {k: v for k, v in req.items() if v is not None}
        audit.append(catalog, "access.requested", req["id"], {**data, "recording_ids": ids})
    return str(req["id"])


def decide(
    catalog: Catalog,
    request_id: str,
    *,
    decision: str,
    by: str,
    valid_until: str | None,
    note: str | None,
) -> dict[str, Any]:
    """Approve or refuse a request not yet decided, and audit it (``access.approved`` or
    ``access.refused``) in one transaction. Returns the request as it now is; raises
    ValueError when it does not exist or was decided already."""
    if decision not in DECISIONS:
        raise ValueError(f"access decision {decision!r} is not one of {', '.join(DECISIONS)}")
    at = now_utc()
    with catalog.tx() as conn:
        cur = conn.execute(
            "UPDATE access_requests SET decision = ?, decided_by = ?, decided_at = ?,"
            " valid_until = ?, decision_note = ? WHERE id = ? AND decision IS NULL",
            (decision, by, at, valid_until, note, request_id),
        )
        if cur.rowcount != 1:
            raise ValueError(f"access request {request_id} does not exist or was decided")
        data = {"id": request_id, "decided_by": by, "decided_at": at, "note": note}
        if valid_until is not None:
            data["valid_until"] = valid_until
        audit.append(catalog, f"access.{decision}", request_id, data)
    found = get(catalog, request_id)
    assert found is not None
    return found


def get(catalog: Catalog, request_id: str) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM access_requests WHERE id = ?", (request_id,))
    return rows[0] if rows else None


def listing(catalog: Catalog) -> list[dict[str, Any]]:
    """Every request, newest first, with how many recordings it names."""
    return catalog.query(
        "SELECT q.*, (SELECT count(*) FROM access_recordings a WHERE a.request_id = q.id)"
        " AS recordings FROM access_requests q ORDER BY q.requested_at DESC, q.id"
    )


def recording_ids(catalog: Catalog, request_id: str) -> list[int]:
    """The recordings a request names, in order."""
    rows = catalog.query(
        "SELECT recording_id FROM access_recordings WHERE request_id = ? ORDER BY recording_id",
        (request_id,),
    )
    return [int(r["recording_id"]) for r in rows]
