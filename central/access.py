"""Approved access to footage at the centre (rule clauses 13, 34, 35; docs/access.md): requests,
decisions, and the check every download and export passes, as functions the dashboard and
``recdock-central export`` call (no web code; the role check is the caller's, as in
:mod:`central.actions`).

* :func:`request_access`: a logged-in person asks for a case's recordings (by a hold, by a case
  number: every hold naming it, or by a list of station + store path), saying why; the
  recordings are resolved to the objects the stations said they stored (their ``file.stored``
  events) and kept with the request;
* :func:`decide`: a supervisor who is not the requester approves it until a time (at most
  ``access_max_days``) or refuses it; a decision by the requester is refused and logged;
* :func:`problems`: what is missing for a request to allow a download or an export now;
  :func:`open_object`: one object of a request, for its requester or approver, within the
  approval, from the centre's objects (``objects/sha256/…``, under that station's receipt).

Every request, decision, refusal, download and export is a row of the access log
(:mod:`central.catalog.access_log`) in the transaction of what it records. Times come from the
caller (``at``): the dashboard reads ``app.state.clock``, which the tests move.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from central.actions import ActionError, CentralContext, NotFound, NotOpen, _person
from central.catalog import CentralCatalog, access, access_log, events, holds, receipts

logger = logging.getLogger(__name__)

MAX_TEXT = 500
MAX_OBJECTS = 10_000
DEFAULT_MAX_DAYS = 30


class Refused(ActionError):
    """Access refused: ``reasons`` says every missing piece (HTTP 403)."""

    status = 403

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def new_id() -> str:
    """A request id made at the centre (``AC-``: never one a station makes, ``A-``)."""
    return f"AC-{uuid.uuid4().hex[:12]}"


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


# -- the request ---------------------------------------------------------------------------------


def request_access(
    ctx: CentralContext,
    *,
    by: str,
    purpose: str,
    at: datetime,
    hold_id: str | None = None,
    case: str | None = None,
    recordings: list[tuple[str, str]] | None = None,
    case_name: str | None = None,
    case_number: str | None = None,
    party: str | None = None,
) -> dict[str, Any]:
    """``by`` asks for a hold's, a case's or a list's recordings; returns the request."""
    by, purpose = _person(by), _text(purpose)
    if not purpose:
        raise ActionError("an access request says why (purpose)")
    asked = [x for x in (hold_id, case, recordings) if x]
    if len(asked) != 1:
        raise ActionError("an access request names one of: a hold, a case number, recordings")
    request_id, when = new_id(), stamp(at)
    with ctx.catalog.tx() as conn:
        found, basis, named = _resolve(conn, hold_id=hold_id, case=case, recordings=recordings)
        row = {
            "request_id": request_id,
            "requested_by": by,
            "requested_at": when,
            "party": _text(party),
            "case_name": _text(case_name) or named.get("case_name"),
            "case_number": _text(case_number) or named.get("case_number"),
            "purpose": purpose,
            "basis": basis,
        }
        access.create(conn, row, found)
        access_log.record(
            conn, "request", at=when, by=by, request_id=request_id,
            detail={"basis": basis, "objects": len(found), "purpose": purpose},
        )  # fmt: skip
    logger.info("access request %s by %s: %s, %d object(s)", request_id, by, basis, len(found))
    return access.get(ctx.catalog.conn, request_id) or row


def _resolve(
    conn: Any,
    *,
    hold_id: str | None,
    case: str | None,
    recordings: list[tuple[str, str]] | None,
) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """The objects asked for (no duplicates), the basis, and the case the holds name."""
    if recordings:
        return _listed(conn, recordings), "list", {}
    if hold_id:
        rows = holds.of_hold(conn, hold_id.strip())
        if not rows:
            raise NotFound(f"no hold {hold_id!r} at the centre")
        basis = f"hold:{hold_id.strip()}"
    else:
        case = (case or "").strip()
        rows = holds.listing(conn, case_number=case, limit=MAX_OBJECTS)
        if not rows:
            raise NotFound(f"no hold at the centre names case {case!r}: place a hold first")
        basis = f"case:{case}"
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for hold in rows:
        for f in _held(conn, hold):
            found.setdefault((f["station"], f["recording"]), f)
    if not found:
        raise NotFound(f"{basis}: covers no recording any station has sent the centre")
    first = rows[0]
    return list(found.values()), basis, {k: first.get(k) for k in ("case_name", "case_number")}


def _held(conn: Any, hold: dict[str, Any]) -> list[dict[str, Any]]:
    """The recordings one station's hold covers, as the station's events told the centre."""
    scope = hold["scope"]
    if scope == "recording":
        if not hold["recording"]:
            return []  # a station's hold on a recording id the centre cannot name
        return events.stored_files(conn, hold["station"], recording=hold["recording"])
    if scope == "session":
        return events.stored_files(conn, hold["station"], session_id=hold["session_id"])
    target = {"device_serial": hold["device_serial"]} if scope == "device" else {}
    if scope == "officer":
        target = {"officer_id": hold["officer_id"]}
    return events.stored_files(
        conn, hold["station"], from_at=hold["from_at"], to_at=hold["to_at"], **target
    )


def _listed(conn: Any, recordings: list[tuple[str, str]]) -> list[dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unknown = []
    for station, path in recordings[:MAX_OBJECTS]:
        rows = events.stored_files(conn, station, recording=path)
        if rows:
            found.setdefault((station, path), rows[0])
        else:
            unknown.append(f"{station} {path}")
    if unknown:
        raise NotFound(
            "the centre has no file.stored event for: " + ", ".join(unknown[:5])
            + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        )  # fmt: skip
    return list(found.values())


# -- the decision --------------------------------------------------------------------------------


def decide(
    ctx: CentralContext,
    request_id: str,
    *,
    by: str,
    approve: bool,
    at: datetime,
    days: float | None = None,
    note: str | None = None,
    max_days: float = DEFAULT_MAX_DAYS,
) -> dict[str, Any]:
    """``by`` (whose role the caller checked) approves the request for ``days`` (at most
    ``max_days``) or refuses it; nobody decides their own request (refused and logged)."""
    by, when, note = _person(by), stamp(at), _text(note)
    why = f"{by} made access request {request_id}: nobody decides their own request"
    with ctx.catalog.tx() as conn:
        req = access.get(conn, request_id)
        if req is None:
            raise NotFound(f"access request {request_id} does not exist")
        own = req["requested_by"] == by
        if own:
            access_log.record(
                conn, "approve.refused", at=when, by=by, request_id=request_id, reason=why
            )
    if own:
        raise Refused([why])
    if req["state"] != "requested":
        raise NotOpen(f"access request {request_id} was {req['state']} already")
    until = None
    if approve:
        if days is None or not 0 < days <= max_days:
            raise ActionError(f"an approval lasts more than 0 and at most {max_days:g} days")
        until = stamp(at + timedelta(days=days))
    elif not note:
        raise ActionError("refusing an access request needs a note saying why")
    state = "approved" if approve else "refused"
    with ctx.catalog.tx() as conn:
        if not access.decide(
            conn, request_id, state=state, by=by, at=when, valid_until=until, note=note
        ):
            raise NotOpen(f"access request {request_id} was decided already")
        access_log.record(
            conn, "approve" if approve else "refuse", at=when, by=by, request_id=request_id,
            reason=note, detail={"valid_until": until},
        )  # fmt: skip
    logger.info("access request %s %s by %s until %s", request_id, state, by, until)
    return access.get(ctx.catalog.conn, request_id) or {}


def refuse_decision(ctx: CentralContext, request_id: str, *, by: str, at: datetime, why: str):
    """Log a decision refused before it was weighed (a person without the role)."""
    with ctx.catalog.tx() as conn:
        access_log.record(
            conn, "approve.refused", at=stamp(at), by=by or "?", request_id=request_id, reason=why
        )


# -- what an access needs ------------------------------------------------------------------------


def problems(req: dict[str, Any] | None, request_id: str, *, at: datetime) -> list[str]:
    """What is missing for ``req`` to allow access at ``at`` (empty: it does)."""
    if req is None:
        return [f"access request {request_id} does not exist"]
    if req["state"] == "requested":
        return [
            f"access request {request_id} has not been approved: a supervisor other than "
            f"{req['requested_by']} approves it on the dashboard's access page"
        ]
    if req["state"] == "refused":
        note = f" ({req['note']})" if req["note"] else ""
        return [
            f"access request {request_id} was refused by {req['decided_by']} at "
            f"{req['decided_at']}{note}"
        ]
    why = []
    if req["valid_until"] is None or stamp(at) >= req["valid_until"]:
        why.append(f"the approval of access request {request_id} ran out at {req['valid_until']}")
    if req["decided_by"] == req["requested_by"]:
        why.append(
            f"access request {request_id} was approved by its own requester {req['decided_by']}"
        )
    return why


def object_path(
    data_dir: Path, obj: dict[str, Any], catalog: CentralCatalog | None = None
) -> Path | None:
    """The centre's copy of ``obj`` when that station's upload of it has a receipt (kept
    beside ``catalog`` on PostgreSQL: :func:`central.catalog.receipts.location`)."""
    place = receipts.location(data_dir, catalog.database if catalog else None)
    if receipts.first_receipt_of(place, obj["station"], obj["sha256"], obj["size"]) is None:
        return None
    path = data_dir / "objects" / "sha256" / obj["sha256"][:2] / obj["sha256"][2:4] / obj["sha256"]
    return path if path.is_file() else None


def open_object(
    ctx: CentralContext, data_dir: Path, request_id: str, n: int, *, by: str, at: datetime
) -> tuple[Path, dict[str, Any]]:
    """Object ``n`` of the request for ``by`` at ``at``: its path and row; :class:`Refused`
    (logged, with every missing piece) otherwise. The download is logged here too."""
    conn = ctx.catalog.conn
    req = access.get(conn, request_id)
    why = problems(req, request_id, at=at)
    found = [o for o in access.objects(conn, request_id) if o["n"] == n] if req else []
    obj = found[0] if found else None
    if req is not None and by not in (req["requested_by"], req["decided_by"]):
        why.append(
            f"{by} is neither the requester ({req['requested_by']}) nor the approver "
            f"({req['decided_by'] or 'none yet'}) of access request {request_id}"
        )
    if req is not None and obj is None:
        why.append(f"access request {request_id} has no object {n}")
    path = object_path(data_dir, obj, ctx.catalog) if obj else None
    if obj is not None and path is None:
        why.append(
            f"the centre does not hold recording {obj['recording']} of station {obj['station']}"
            " (no verified upload from that station yet)"
        )
    where = {"station": obj["station"], "recording": obj["recording"]} if obj else {}
    with ctx.catalog.tx() as conn:
        access_log.record(
            conn, "download.refused" if why else "download", at=stamp(at), by=by,
            request_id=request_id, reason="; ".join(why) or None, detail={"n": n}, **where,
        )  # fmt: skip
    if why:
        logger.warning("download of %s/%d by %s refused: %s", request_id, n, by, "; ".join(why))
        raise Refused(why)
    assert path is not None and obj is not None
    return path, obj


def _text(value: str | None) -> str | None:
    return (value or "").strip()[:MAX_TEXT] or None
