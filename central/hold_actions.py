"""Holds a supervisor places and releases at the centre (rule clause 12), as functions the
dashboard calls (no web code; the role check is the caller's, as in :mod:`central.actions`).

Each decision is one transaction of the central catalog: the hold kept for every station it
is sent to (:mod:`central.catalog.holds`), an ``operator_actions`` entry (who, when, what), and
a ``hold`` command per station queued in the ``commands`` outbox, which
:mod:`central.commands` signs and publishes retained on ``recdock/<station>/command/hold/<id>``.
The station applies it once and names the ``command_id`` in its ``hold.placed`` /
``hold.released`` entry, which confirms the hold here and clears the retained command.

Which stations: a recording or a session is at the station that sent its ``file.stored`` /
``session.start`` event (the centre knows no other); a recorder or an officer docks anywhere,
so a hold on one goes to every station the centre knows, and :func:`push_holds` (run with the
centre's rules) sends the active ones to a station new to the centre.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from central.actions import ActionError, CentralContext, NotFound, NotOpen, _person
from central.catalog import commands as outbox
from central.catalog import events, faults, holds, now_utc, operator, stations
from sync.wire.commands import HOLD_REASONS, HOLD_SCOPES, HOLD_TARGETS

logger = logging.getLogger(__name__)

#: The reasons a person gives at the centre (the recorder's own mark is the station's).
CENTRE_REASONS = tuple(r for r in HOLD_REASONS if r != "marked_on_recorder")
MAX_TEXT = 500
#: The event that tells the centre where a recording or a session is.
WHERE_KEPT = {"recording": "file.stored", "session": "session.start"}


def new_id() -> str:
    """A hold id made at the centre (``HC-``: never one a station makes, ``H-``)."""
    return f"HC-{uuid.uuid4().hex[:12]}"


def place_hold(
    ctx: CentralContext,
    *,
    scope: str,
    target: str,
    reason: str,
    by: str,
    reason_text: str | None = None,
    case_name: str | None = None,
    case_number: str | None = None,
    from_at: str | None = None,
    to_at: str | None = None,
) -> list[dict[str, Any]]:
    """``by`` places a hold on ``target`` (a recording's store path, a session id, a recorder
    serial or an officer id, as ``scope`` says); returns it as each station holds it."""
    hold = _checked(scope, target, reason, reason_text, case_name, case_number, from_at, to_at)
    by, at, hold_id = _person(by), now_utc(), new_id()
    hold.update(hold_id=hold_id, origin="centre", placed_by=by, placed_at=at)
    with ctx.catalog.tx() as conn:
        to = _stations(conn, scope, hold[_column(scope)])
        for station in to:
            _send_place(conn, station, hold, by, at)
        operator.record(conn, at, by, "hold.place", faults.CENTRE, {**hold, "stations": to})
    logger.info(
        "hold %s on %s %s placed by %s for %d station(s)", hold_id, scope, target, by, len(to)
    )
    ctx.wake()
    return holds.of_hold(ctx.catalog.conn, hold_id)


def release_hold(ctx: CentralContext, hold_id: str, *, by: str, reason: str) -> list[dict]:
    """``by`` releases hold ``hold_id`` at every station where it is active, saying why."""
    by, reason = _person(by), (reason or "").strip()[:MAX_TEXT]
    if not reason:
        raise ActionError("releasing a hold needs a reason")
    at = now_utc()
    with ctx.catalog.tx() as conn:
        found = holds.of_hold(conn, hold_id)
        if not found:
            raise NotFound(f"no hold {hold_id!r} at the centre")
        active = [h["station"] for h in found if h["active"]]
        if not active:
            raise NotOpen(f"hold {hold_id!r} is released already")
        for station in active:
            command = outbox.issue(
                conn,
                station=station,
                kind="hold",
                key=hold_id,
                action="release",
                by=by,
                at=at,
                fields={"hold_id": hold_id, "note": reason},
            )
            holds.request_release(
                conn,
                station,
                hold_id,
                by=by,
                reason=reason,
                at=at,
                command_id=command["command_id"],
            )
        detail = {"hold_id": hold_id, "reason": reason, "stations": active}
        operator.record(conn, at, by, "hold.release", faults.CENTRE, detail)
    logger.info("hold %s released by %s at %d station(s)", hold_id, by, len(active))
    ctx.wake()
    return holds.of_hold(ctx.catalog.conn, hold_id)


def push_holds(ctx: CentralContext) -> int:
    """Send every active centre hold on a recorder or an officer to the stations that do not
    have it yet (a station new to the centre); returns how many commands were queued."""
    at = now_utc()
    with ctx.catalog.tx() as conn:
        missing = holds.missing_at(conn)
        for station, hold in missing:
            _send_place(conn, station, hold, hold["placed_by"] or faults.CENTRE, at)
    if missing:
        ctx.wake()
    return len(missing)


def _send_place(conn: Any, station: str, hold: dict[str, Any], by: str, at: str) -> None:
    fields = {k: hold[k] for k in _COMMAND_FIELDS if hold.get(k) is not None}
    command = outbox.issue(
        conn,
        station=station,
        kind="hold",
        key=hold["hold_id"],
        action="place",
        by=by,
        at=at,
        fields=fields,
    )
    holds.place(conn, station, {**hold, "place_command": command["command_id"]})


_COMMAND_FIELDS = (
    "hold_id",
    "scope",
    "reason",
    "reason_text",
    "case_name",
    "case_number",
    *HOLD_TARGETS.values(),
    "from_at",
    "to_at",
)


def _column(scope: str) -> str:
    return HOLD_TARGETS[scope]


def _stations(conn: Any, scope: str, target: str) -> list[str]:
    """The stations a hold on ``target`` goes to; :class:`NotFound` when none."""
    if scope in WHERE_KEPT:
        found = sorted({e["station"] for e in events.of_subject(conn, target, WHERE_KEPT[scope])})
        if not found:
            raise NotFound(f"no station has sent the centre the {scope} {target!r}")
        return found
    found = [s["station"] for s in stations.rows(conn)]
    if not found:
        raise NotFound("the centre knows no station yet")
    return found


def _checked(
    scope: str,
    target: str,
    reason: str,
    reason_text: str | None,
    case_name: str | None,
    case_number: str | None,
    from_at: str | None,
    to_at: str | None,
) -> dict[str, Any]:
    """The hold's fields, or :class:`ActionError` saying what is wrong."""
    if scope not in HOLD_SCOPES:
        raise ActionError(f"scope {scope!r} is not one of {', '.join(HOLD_SCOPES)}")
    if reason not in CENTRE_REASONS:
        raise ActionError(f"reason {reason!r} is not one of {', '.join(CENTRE_REASONS)}")
    target = (target or "").strip()
    if not target or len(target) > 1024:
        raise ActionError(f"a hold on a {scope} names it (1-1024 characters)")
    given = {"reason_text": reason_text, "case_name": case_name, "case_number": case_number}
    text = {k: (v or "").strip()[:MAX_TEXT] or None for k, v in given.items()}
    if reason == "other" and not text["reason_text"]:
        raise ActionError("the reason 'other' needs a text saying what it is")
    hold: dict[str, Any] = {"scope": scope, _column(scope): target, "reason": reason, **text}
    if scope in ("device", "officer"):
        hold["from_at"], hold["to_at"] = _time(from_at, "from"), _time(to_at, "to")
        if hold["from_at"] and hold["to_at"] and hold["from_at"] >= hold["to_at"]:
            raise ActionError("a hold's range ends after it starts")
    return hold


def _time(value: str | None, name: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ActionError(f"{name} {value[:40]!r} is not a date and time (ISO 8601)") from None
    return (t if t.tzinfo else t.astimezone()).astimezone(UTC).isoformat()
