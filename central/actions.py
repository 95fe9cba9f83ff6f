"""What a person decides at the centre, as functions the dashboard and the CLI call (no web code).

Each takes a :class:`CentralContext` and the acting user's name (``by``); role checks belong
to the caller (the dashboard's web layer). Each decision is one transaction of the central
catalog: the change itself with who and when, an entry in ``operator_actions`` (the centre's
audit of people's actions), and the command that carries it to the station, queued in the
``commands`` outbox (:mod:`central.commands` signs and publishes it). Faults are named by their
``ref``, ``<station>/<fault id>`` (every fault listing carries it): station ids hold no ``/``.

* :func:`acknowledge_fault`: an open fault is acknowledged; a station's fault gets the
  ``fault``/``acknowledge`` command;
* :func:`resolve_fault`: an open fault is resolved with a note; a station's fault gets the
  ``fault``/``resolve`` command (with the note). The centre's own faults (``origin`` centre)
  need no command: no station holds them;
* :func:`set_register_entry`: an administrator sets a recorder's lifecycle, officer and unit
  in the register; every station the centre knows gets the ``register``/``set`` command
  (retained per serial); :func:`push_register` sends what a station has not had yet (a
  station new to the centre; run with the centre's rules).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from central.catalog import CentralCatalog, faults, now_utc, operator, register, stations
from central.catalog import commands as outbox

logger = logging.getLogger(__name__)

MAX_NOTE = 2000


class ActionError(ValueError):
    """A decision that cannot be taken; ``status`` is the HTTP status a web caller answers."""

    status = 400


class NotFound(ActionError):
    status = 404


class NotOpen(ActionError):
    status = 409


@dataclass(frozen=True)
class CentralContext:
    """What the actions need: the central catalog, and (optional) the command publisher to
    wake once a command is queued (``consumer.commands``; without it the commands wait for
    its next round)."""

    catalog: CentralCatalog
    commands: Any = None  # central.commands.CommandPublisher | None

    def wake(self) -> None:
        if self.commands is not None:
            self.commands.wake()


def split_ref(ref: str) -> tuple[str, str]:
    """``<station>/<fault id>`` -> (station, fault id); :class:`NotFound` when malformed."""
    station, sep, fid = ref.partition("/")
    if not sep or not station or not fid:
        raise NotFound(f"{ref!r} is not a fault reference (<station>/<fault id>)")
    return station, fid


def _person(by: str) -> str:
    by = (by or "").strip()
    if not by:
        raise ActionError("the acting person's name is required")
    return by[:128]


def acknowledge_fault(ctx: CentralContext, fault_id: str, by: str) -> dict[str, Any]:
    """``by`` acknowledges the open fault ``fault_id`` (its ref); returns the fault."""
    return _decide(ctx, fault_id, _person(by), "acknowledge", None)


def resolve_fault(ctx: CentralContext, fault_id: str, by: str, note: str) -> dict[str, Any]:
    """``by`` resolves the open fault ``fault_id`` (its ref) with ``note`` (required: what
    was done); returns the fault."""
    note = (note or "").strip()
    if not note:
        raise ActionError("resolving a fault needs a note saying what was done")
    return _decide(ctx, fault_id, _person(by), "resolve", note[:MAX_NOTE])


def _decide(
    ctx: CentralContext, ref: str, by: str, action: str, note: str | None
) -> dict[str, Any]:
    station, fid = split_ref(ref)
    at = now_utc()
    with ctx.catalog.tx() as conn:
        found = faults.key_of(conn, station, fid)
        if found is None:
            raise NotFound(f"no fault {ref!r} at the centre")
        if found["state"] != "open":
            raise NotOpen(f"fault {ref!r} is {found['state']} already")
        if action == "acknowledge":
            faults.acknowledge(conn, station, fid, by, at)
        else:
            faults.resolve_by(conn, station, fid, by, note, at)
        command = None
        if found["origin"] == "station":
            fields: dict[str, Any] = {"fault_id": fid}
            if note is not None:
                fields["note"] = note
            command = outbox.issue(
                conn, station=station, kind="fault", key=fid, action=action, by=by, at=at,
                fields=fields,
            )  # fmt: skip
        detail = {"fault_id": fid, "note": note, "command_id": command and command["command_id"]}
        operator.record(conn, at, by, f"fault.{action}", station, detail)
    logger.info("fault %s: %s by %s", ref, action, by)
    ctx.wake()
    return faults.one(ctx.catalog.conn, station, fid)


def set_register_entry(
    ctx: CentralContext,
    serial: str,
    *,
    lifecycle: str,
    by: str,
    officer: str | None = None,
    unit: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """``by`` sets ``serial``'s register entry; every known station gets it. Returns the
    entry."""
    serial, by = (serial or "").strip(), _person(by)
    if not serial or len(serial) > 64:
        raise ActionError("a recorder serial is 1-64 characters")
    if lifecycle not in register.LIFECYCLES:
        raise ActionError(f"lifecycle {lifecycle!r} is not one of {', '.join(register.LIFECYCLES)}")
    entry = {"serial": serial, "lifecycle": lifecycle, "officer": officer or None,
             "unit": unit or None, "note": note or None}  # fmt: skip
    at = now_utc()
    with ctx.catalog.tx() as conn:
        before = register.one(conn, serial)
        register.put(conn, entry, by, at)
        for row in stations.rows(conn):
            _send_entry(conn, row["station"], entry, by, at)
        operator.record(conn, at, by, "register.set", faults.CENTRE, {**entry, "before": before})
    logger.info("register: %s set to %s by %s", serial, lifecycle, by)
    ctx.wake()
    return register.one(ctx.catalog.conn, serial)


def push_register(ctx: CentralContext) -> int:
    """Send every station the register entries it has not had since they last changed;
    returns how many commands were queued."""
    at = now_utc()
    with ctx.catalog.tx() as conn:
        missing = outbox.register_missing(conn)
        for station, serial in missing:
            entry = register.one(conn, serial)
            _send_entry(conn, station, entry, entry["updated_by"], at)
    if missing:
        ctx.wake()
    return len(missing)


def _send_entry(conn: Any, station: str, entry: dict[str, Any], by: str, at: str) -> None:
    fields = {k: entry.get(k) for k in ("serial", "lifecycle", "officer", "unit")}
    outbox.issue(conn, station=station, kind="register", key=entry["serial"], action="set",
                 by=by, at=at, fields=fields)  # fmt: skip
