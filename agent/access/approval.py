"""Whether an approval lets footage leave the station (rule clauses 13, 34, 35).

An export goes ahead only when its access request exists, was approved, has not run out,
names every recording exported, and was approved by someone who holds the role (is in
``[access] approvers`` now) and is not the requester. Each missing piece is one sentence saying
what is missing and what to do; an empty list means the approval holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.catalog import access

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config

APPROVE = "recdock access approve {id} --days N"


def decision_problems(config: Config, request: dict[str, Any], who: str) -> list[str]:
    """Why ``who`` may not approve or refuse ``request`` (empty: they may)."""
    found = []
    if who not in config.access.approvers:
        found.append(
            f"{who} may not decide access requests: only the approvers listed in [access] "
            "approvers of the configuration may"
        )
    if who == request["requested_by"]:
        found.append(
            f"{who} asked for access request {request['id']} and may not decide it: another "
            "approver must"
        )
    return found


def problems(
    catalog: Catalog,
    config: Config,
    request_id: str,
    wanted: list[dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """What is missing for ``wanted`` (recording rows) to leave under ``request_id``."""
    req = access.get(catalog, request_id)
    if req is None:
        return [
            f"access request {request_id} does not exist: ask for access with "
            "`recdock access request` and have an approver approve it"
        ]
    return [*_decision(config, req, now or datetime.now(UTC)), *_coverage(catalog, req, wanted)]


def _decision(config: Config, req: dict[str, Any], now: datetime) -> list[str]:
    rid = req["id"]
    if req["decision"] is None:
        return [
            f"access request {rid} has not been approved: an approver ([access] approvers) "
            f"runs `{APPROVE.format(id=rid)}`"
        ]
    if req["decision"] == "refused":
        note = f" ({req['decision_note']})" if req["decision_note"] else ""
        return [
            f"access request {rid} was refused by {req['decided_by']} at {req['decided_at']}{note}"
        ]
    found = []
    until = req["valid_until"]
    if until is None or datetime.fromisoformat(until) <= now:
        found.append(
            f"the approval of access request {rid} ran out at {until}: ask for access again"
        )
    by = req["decided_by"]
    if by not in config.access.approvers:
        found.append(
            f"access request {rid} was approved by {by}, who is not an approver ([access] "
            "approvers): an approver must approve a new request"
        )
    if by == req["requested_by"]:
        found.append(
            f"access request {rid} was approved by its own requester {by}: another approver "
            "must approve a new request"
        )
    return found


def _coverage(catalog: Catalog, req: dict[str, Any], wanted: list[dict[str, Any]]) -> list[str]:
    named = set(access.recording_ids(catalog, req["id"]))
    missing = [r for r in wanted if r["id"] not in named]
    if not missing:
        return []
    listed = ", ".join(f"{r['id']} ({r['device_serial']} {r['source_path']})" for r in missing)
    return [
        f"access request {req['id']} does not cover recording(s) {listed}: ask for access to them"
    ]
