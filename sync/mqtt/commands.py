"""The centre's commands to this station: received on ``recdock/<station>/command/#``, verified,
applied once (docs/mqtt.md, sync/wire/commands.py).

paho's network thread only queues what arrives (:meth:`CommandReceiver.deliver`); a thread of
its own, with its own catalog connection, verifies each command with ``[mqtt]
centre_public_key`` and applies it in one transaction (rule 3, docs/architecture.md): the
change, the ``command_id`` kept as applied (a command delivered again changes nothing), and an
audit entry ``command.applied`` naming it, which tells the centre it may clear the retained
command. A command the centre did not sign (unsigned, forged, signed for another topic) is
never acted on: a warning in the log, and a critical ``security.command`` fault.

* ``fault``: ``received`` (the centre has the fault: open -> reported), ``acknowledge``,
  ``resolve`` (with its ``note``), through agent/catalog/faults.py;
* ``register`` ``set``: the centre's register entry of one recorder (agent/catalog/register.py);
* ``hold``: ``place`` (a hold placed at the centre, with the centre's hold id, origin
  ``centre``; a recording named by its store path) and ``release``, through
  agent/catalog/holds.py: the ``hold.placed`` / ``hold.released`` entry names the
  ``command_id``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, holds, recordings, register, sessions
from agent.catalog import commands as applied
from agent.catalog.faults import acknowledge, get_fault, mark_reported, report_fault, resolve
from agent.errors import FaultStateError
from sync.wire import commands
from sync.wire.signing import BadSignature

log = logging.getLogger(__name__)

SECURITY_KIND = "security.command"
SECURITY_SUBJECT = "centre commands"


def subscription(station_id: str) -> str:
    """The station's own command topics."""
    return f"recdock/{station_id}/command/#"


def handle(catalog: Catalog, public_key: Any, topic: str, payload: bytes) -> str:
    """Verify and apply one command; what became of it, in words (for the log and tests)."""
    if not payload:
        return "cleared"  # the centre cleared a retained command it saw applied
    try:
        doc = commands.verify_command(public_key, topic, payload)
    except BadSignature as exc:
        return _refused(catalog, topic, payload, str(exc))
    missing = commands.missing_fields(doc)
    if missing:
        log.warning("command on %s refused: it lacks %s", topic, ", ".join(missing))
        return "incomplete"
    if doc["station"] != catalog.station_id:
        return _refused(catalog, topic, payload, f"it is for station {doc['station']}")
    with catalog.tx() as conn:
        if applied.applied(conn, doc["command_id"]):
            return "duplicate"
        outcome = _apply(catalog, conn, doc)
        applied.record(
            conn,
            doc["command_id"],
            topic=topic,
            kind=doc["kind"],
            action=doc["action"],
            outcome=outcome,
        )
        audit.append(
            catalog,
            "command.applied",
            doc["command_id"],
            {k: doc.get(k) for k in ("command_id", "kind", "action", "by", "at")}
            | {"outcome": outcome, "topic": topic},
        )
    log.info(
        "command %s (%s %s by %s): %s",
        doc["command_id"],
        doc["kind"],
        doc["action"],
        doc["by"],
        outcome,
    )
    return outcome


def _apply(catalog: Catalog, conn: sqlite3.Connection, doc: dict[str, Any]) -> str:
    if doc["kind"] == "hold":
        return _apply_hold(catalog, doc)
    if doc["kind"] == "register":
        register.set_entry(
            conn,
            doc["serial"],
            lifecycle=doc["lifecycle"],
            officer=_text(doc, "officer"),
            unit=_text(doc, "unit"),
            command_id=doc["command_id"],
            by=doc["by"],
            at=doc["at"],
        )
        return f"register {doc['serial']}: {doc['lifecycle']}"
    fid, by, cid = doc["fault_id"], f"centre: {doc['by']}", doc["command_id"]
    try:
        if doc["action"] == "received":
            done = mark_reported(catalog, conn, fid, by=by, command_id=cid)
            return "reported" if done else "already reported"
        if doc["action"] == "acknowledge":
            acknowledge(catalog, conn, fid, by=by, note=_text(doc, "note") or "", command_id=cid)
            return "acknowledged"
        resolve(catalog, conn, fid, by=by, note=_text(doc, "note") or "", command_id=cid)
        return "resolved"
    except FaultStateError as exc:
        fault = get_fault(catalog, fid)
        log.info("command %s on fault %s changes nothing: %s", cid, fid, exc)
        return f"not applied: {fault.state if fault else 'unknown fault'}"


def _apply_hold(catalog: Catalog, doc: dict[str, Any]) -> str:
    """Place or release the centre's hold ``hold_id``, inside the command's transaction."""
    hold_id, by, cid = doc["hold_id"], f"centre: {doc['by']}", doc["command_id"]
    if doc["action"] == "release":
        reason = _text(doc, "note") or "released at the centre"
        done = holds.lift_in(catalog, hold_id, by=by, reason=reason, command_id=cid)
        return "released" if done else "not applied: no active hold " + hold_id
    if holds.get(catalog, hold_id) is not None:
        return "not applied: hold " + hold_id + " exists"
    scope = doc["scope"]
    hold: dict[str, Any] = {"id": hold_id, "scope": scope, "reason": doc["reason"]}
    if scope == "recording":
        row = recordings.by_store_path(catalog, doc["recording"])
        if row is None:
            return "not applied: no recording " + doc["recording"]
        hold["recording_id"] = row["id"]
    elif scope == "session" and sessions.get(catalog, doc["session_id"]) is None:
        return "not applied: no session " + doc["session_id"]
    else:
        hold[commands.HOLD_TARGETS[scope]] = doc[commands.HOLD_TARGETS[scope]]
    names = ("reason_text", "case_name", "case_number")
    for name in names + (("from_at", "to_at") if scope in ("device", "officer") else ()):
        hold[name] = _text(doc, name)
    holds.place_in(catalog, {**hold, "origin": "centre", "placed_by": by, "command_id": cid})
    return "held"


def _text(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) and value else None


def _refused(catalog: Catalog, topic: str, payload: bytes, why: str) -> str:
    """Never act on it; say so in the log and as a critical fault with what arrived."""
    log.warning(
        "SECURITY: a command on %s was refused and NOT acted on: %s. Someone who can publish "
        "there is not the centre (or [mqtt] centre_public_key is wrong)",
        topic,
        why,
    )
    evidence = {"topic": topic, "why": why, "payload": payload[:2048].decode("utf-8", "replace")}
    report_fault(
        catalog,
        SECURITY_KIND,
        SECURITY_SUBJECT,
        f"a command not signed by the centre arrived on {topic} ({why}); nothing was done. "
        "Check who can publish to the broker, and [mqtt] centre_public_key",
        severity="critical",
        evidence=evidence,
    )
    return "refused"


class CommandReceiver:
    """Applies the centre's commands in a thread of its own, one at a time."""

    def __init__(self, home: Path, station_id: str, public_key: Any) -> None:
        self.home = home
        self.station_id = station_id
        self.public_key = public_key
        self.outcomes: list[tuple[str, str]] = []
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)

    def deliver(self, topic: str, payload: bytes) -> None:
        """paho's network thread: queue only."""
        self._queue.put((topic, payload))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        catalog = Catalog(self.home / "catalog.db", station_id=self.station_id)
        try:
            while (item := self._queue.get()) is not None:
                try:
                    self.outcomes.append((item[0], handle(catalog, self.public_key, *item)))
                except Exception:
                    log.exception(
                        "command on %s could not be applied; it stays retained at "
                        "the broker and is tried at the next connect",
                        item[0],
                    )
        finally:
            catalog.close()
