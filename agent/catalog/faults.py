"""Faults (table ``faults``): what is broken, since when, against the 24-hour repair limit (rule
clause 14), and where each is in its lifecycle.

A fault is opened once per (kind, subject) (:func:`fault_id`) and stays open until resolved;
seeing it again only bumps ``last_seen_at`` and ``occurrences`` and keeps the newest evidence, so
the same condition never opens a second fault while one is open. Its lifecycle:

    open ─► reported (the centre confirmed receipt) ─► acknowledged (a person) ─► resolved

``resolved`` is reached from any state: by a person with a note (``recdock faults resolve``, or
the centre's signed command), or by the station once the condition is gone
(:func:`condition_gone`). Every change is a state change: written to the catalog, the audit log
and the outbox in one transaction (rule 3, docs/architecture.md). While not resolved, the fault
is a retained MQTT message on ``recdock/<station>/fault/<id>`` showing its state; resolving
publishes an empty retained message, which clears it at the broker. docs/faults.md has the
rules and the lifecycle.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.catalog import Catalog, audit, now_utc, outbox
from agent.errors import FaultStateError
from sync.wire import topics

REPAIR_LIMIT_HOURS = 24.0
STATES = ("open", "reported", "acknowledged", "resolved")
_SLUG = re.compile(r"[^a-z0-9._-]+")


def fault_id(kind: str, subject: str) -> str:
    slug = _SLUG.sub("-", f"{kind}-{subject}".lower()).strip("-")[:48]
    digest = hashlib.sha256(f"{kind}\0{subject}".encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    subject: str
    severity: str
    detail: str
    opened_at: str
    last_seen_at: str
    resolved_at: str | None
    occurrences: int
    state: str = "open"
    evidence: dict[str, Any] = field(default_factory=dict)
    reported_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolve_note: str | None = None

    def age_hours(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.opened_at)).total_seconds() / 3600

    def overdue(self, now: datetime | None = None) -> bool:
        return self.resolved_at is None and self.age_hours(now) >= REPAIR_LIMIT_HOURS

    def unreported(self, after_hours: float, now: datetime | None = None) -> bool:
        """Still not confirmed by the centre ``after_hours`` after it opened."""
        return self.state == "open" and self.age_hours(now) >= after_hours

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in Fault.__dataclass_fields__}
        return {**d, "age_hours": round(self.age_hours(now), 2), "overdue": self.overdue(now)}


def _row(r: dict[str, Any]) -> Fault:
    values = {k: r[k] for k in Fault.__dataclass_fields__ if k in r}
    values["evidence"] = json.loads(r["evidence"]) if r.get("evidence") else {}
    return Fault(**values)


def _get(conn: sqlite3.Connection, fid: str) -> Fault | None:
    cur = conn.execute("SELECT * FROM faults WHERE id = ?", (fid,))
    r = cur.fetchone()
    if r is None:
        return None
    return _row(dict(zip([d[0] for d in cur.description], r, strict=True)))


def get_fault(catalog: Catalog, fid: str) -> Fault | None:
    return _get(catalog.conn, fid)


def _publish(catalog: Catalog, conn: sqlite3.Connection, fault: Fault, seq: int) -> None:
    """The retained fault message: its state while not resolved, empty once resolved."""
    payload: Any = ""
    if fault.resolved_at is None:
        payload = {
            "id": fault.id,
            "station": catalog.station_id,
            "kind": fault.kind,
            "subject": fault.subject,
            "severity": fault.severity,
            "detail": fault.detail,
            "opened_at": fault.opened_at,
            "repair_by": _plus_hours(fault.opened_at, REPAIR_LIMIT_HOURS),
            "audit_seq": seq,
            "state": fault.state,
            "evidence": fault.evidence,
            "reported_at": fault.reported_at,
            "acknowledged_at": fault.acknowledged_at,
            "acknowledged_by": fault.acknowledged_by,
            "last_seen_at": fault.last_seen_at,
            "occurrences": fault.occurrences,
        }
    outbox.enqueue(
        conn,
        topics.fault(catalog.station_id, fault.id),
        payload,
        event_id=f"{catalog.station_id}:fault:{fault.id}:{seq}",
        retain=True,
    )


def report_fault(
    catalog: Catalog,
    kind: str,
    subject: str,
    detail: str,
    *,
    severity: str = "error",
    evidence: dict[str, Any] | None = None,
) -> Fault:
    """Open a fault, or note that an open one was seen again. One transaction.

    ``evidence``: the values and events that tripped the rule, kept as JSON in the fault's row
    and its ``fault.open`` audit entry."""
    fid = fault_id(kind, subject)
    at = now_utc()
    text = outbox.encode(evidence or {})
    with catalog.tx() as conn:
        row = conn.execute(
            "SELECT occurrences FROM faults WHERE id = ? AND resolved_at IS NULL", (fid,)
        ).fetchone()
        if row:
            conn.execute(
                "UPDATE faults SET last_seen_at = ?, occurrences = occurrences + 1, detail = ?,"
                " evidence = ?, gone_since = NULL WHERE id = ?",
                (at, detail, text, fid),
            )
        else:
            conn.execute(
                "INSERT INTO faults (id, kind, subject, severity, detail, opened_at, last_seen_at,"
                " evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET severity = excluded.severity,"
                " detail = excluded.detail, opened_at = excluded.opened_at,"
                " last_seen_at = excluded.last_seen_at, resolved_at = NULL, occurrences = 1,"
                " evidence = excluded.evidence, state = 'open', reported_at = NULL,"
                " acknowledged_at = NULL, acknowledged_by = NULL, resolved_by = NULL,"
                " resolve_note = NULL, gone_since = NULL",
                (fid, kind, subject, severity, detail, at, at, text),
            )
            data = {"kind": kind, "subject": subject, "detail": detail, "severity": severity}
            entry = audit.append(catalog, "fault.open", fid, {**data, "evidence": evidence or {}})
            fault = _get(conn, fid)
            assert fault is not None
            _publish(catalog, conn, fault, entry.seq)
        fault = _get(conn, fid)
    assert fault is not None
    return fault


# -- the lifecycle -----------------------------------------------------------------------------


def _open_fault(conn: sqlite3.Connection, fid: str) -> Fault:
    fault = _get(conn, fid)
    if fault is None:
        raise FaultStateError(f"no fault {fid!r}: `recdock faults --all` lists them")
    if fault.resolved_at is not None:
        raise FaultStateError(
            f"fault {fid} was resolved already ({fault.resolved_at}, by {fault.resolved_by})"
        )
    return fault


def _step(
    catalog: Catalog,
    conn: sqlite3.Connection,
    fid: str,
    sql: str,
    args: tuple[Any, ...],
    kind: str,
    data: dict[str, Any],
) -> Fault:
    conn.execute(f"UPDATE faults SET {sql} WHERE id = ?", (*args, fid))
    fault = _get(conn, fid)
    assert fault is not None
    entry = audit.append(catalog, kind, fid, {"kind": fault.kind, "subject": fault.subject, **data})
    _publish(catalog, conn, fault, entry.seq)
    return fault


def mark_reported(
    catalog: Catalog, conn: sqlite3.Connection, fid: str, *, by: str, command_id: str | None
) -> Fault | None:
    """The centre confirmed it received the fault (in the caller's transaction). A fault
    already reported or acknowledged stays as it is: None then."""
    fault = _open_fault(conn, fid)
    if fault.state != "open":
        return None
    at = now_utc()
    data = {"by": by, "command_id": command_id, "state": "reported"}
    return _step(
        catalog, conn, fid, "state = 'reported', reported_at = ?", (at,), "fault.reported", data
    )


def acknowledge(
    catalog: Catalog,
    conn: sqlite3.Connection,
    fid: str,
    *,
    by: str,
    note: str = "",
    command_id: str | None = None,
) -> Fault:
    """A person took the fault on (in the caller's transaction)."""
    fault = _open_fault(conn, fid)
    if fault.state == "acknowledged":
        raise FaultStateError(
            f"fault {fid} was acknowledged already ({fault.acknowledged_at}, by "
            f"{fault.acknowledged_by})"
        )
    data = {"by": by, "note": note, "command_id": command_id, "state": "acknowledged"}
    return _step(
        catalog,
        conn,
        fid,
        "state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?",
        (now_utc(), by),
        "fault.acknowledged",
        data,
    )


def resolve(
    catalog: Catalog,
    conn: sqlite3.Connection,
    fid: str,
    *,
    by: str,
    note: str,
    command_id: str | None = None,
) -> Fault:
    """Resolve a fault by its id (a person, or the station; in the caller's transaction)."""
    _open_fault(conn, fid)
    data = {"by": by, "note": note, "command_id": command_id, "state": "resolved"}
    return _step(
        catalog,
        conn,
        fid,
        "state = 'resolved', resolved_at = ?, resolved_by = ?, resolve_note = ?",
        (now_utc(), by, note),
        "fault.resolved",
        data,
    )


def resolve_fault(catalog: Catalog, kind: str, subject: str, note: str = "") -> bool:
    """The station saw the condition gone: close the open fault; False when none was open."""
    fid = fault_id(kind, subject)
    with catalog.tx() as conn:
        fault = _get(conn, fid)
        if fault is None or fault.resolved_at is not None:
            return False
        resolve(catalog, conn, fid, by="station", note=note)
    return True


def condition_gone(
    catalog: Catalog,
    kind: str,
    subject: str,
    *,
    hold_s: float,
    note: str,
    now: datetime | None = None,
) -> bool:
    """The rule no longer sees the condition: resolve the open fault once it has stayed gone
    for ``hold_s`` (the first time it is gone only starts the wait). True when resolved."""
    fid = fault_id(kind, subject)
    now = now or datetime.now(UTC)
    with catalog.tx() as conn:
        row = conn.execute(
            "SELECT gone_since FROM faults WHERE id = ? AND resolved_at IS NULL", (fid,)
        ).fetchone()
        if row is None:
            return False
        since = datetime.fromisoformat(row[0]) if row[0] else now
        if row[0] is None:
            conn.execute("UPDATE faults SET gone_since = ? WHERE id = ?", (now.isoformat(), fid))
        if (now - since).total_seconds() < hold_s:
            return False
        gone = f"{note} (gone since {since.isoformat()})"
        resolve(catalog, conn, fid, by="station", note=gone)
    return True


# -- reading -----------------------------------------------------------------------------------


def list_faults(catalog: Catalog, *, include_resolved: bool = False) -> list[Fault]:
    sql = "SELECT * FROM faults"
    if not include_resolved:
        sql += " WHERE resolved_at IS NULL"
    return [_row(r) for r in catalog.query(sql + " ORDER BY opened_at")]


def _plus_hours(iso: str, hours: float) -> str:
    return (datetime.fromisoformat(iso) + timedelta(hours=hours)).isoformat()


def open_kinds(catalog: Catalog) -> set[str]:
    """The kinds of the faults open now."""
    return {r["kind"] for r in catalog.query("SELECT kind FROM faults WHERE resolved_at IS NULL")}


def open_subjects(catalog: Catalog, kind: str) -> set[str]:
    """The subjects of the open faults of one kind (e.g. the store paths set aside)."""
    return {
        r["subject"]
        for r in catalog.query(
            "SELECT subject FROM faults WHERE kind = ? AND resolved_at IS NULL", (kind,)
        )
    }
