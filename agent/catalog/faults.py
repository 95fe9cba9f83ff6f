"""Faults: what is broken, since when, against the 24-hour repair limit (rule clause 14).

A fault is opened once per (kind, subject) and stays open until resolved; seeing it
again only bumps ``last_seen_at`` and ``occurrences``. Opening and resolving are
state changes: each is written to the catalog, the audit log and the outbox in one
transaction (rule 3, docs/architecture.md). While open, the fault is a retained MQTT message on
``recdock/<station>/fault/<id>``; resolving publishes an empty retained message,
which clears it at the broker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.catalog import Catalog, audit, now_utc, outbox
from sync.wire import topics

REPAIR_LIMIT_HOURS = 24.0
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

    def age_hours(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.opened_at)).total_seconds() / 3600

    def overdue(self, now: datetime | None = None) -> bool:
        return self.resolved_at is None and self.age_hours(now) >= REPAIR_LIMIT_HOURS

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity,
            "detail": self.detail,
            "opened_at": self.opened_at,
            "last_seen_at": self.last_seen_at,
            "resolved_at": self.resolved_at,
            "occurrences": self.occurrences,
            "age_hours": round(self.age_hours(now), 2),
            "overdue": self.overdue(now),
        }


def _row(r: dict[str, Any]) -> Fault:
    return Fault(**{k: r[k] for k in Fault.__dataclass_fields__})


def report_fault(
    catalog: Catalog, kind: str, subject: str, detail: str, *, severity: str = "error"
) -> Fault:
    """Open a fault, or note that an open one was seen again. One transaction."""
    fid = fault_id(kind, subject)
    at = now_utc()
    with catalog.tx() as conn:
        row = conn.execute(
            "SELECT occurrences FROM faults WHERE id = ? AND resolved_at IS NULL", (fid,)
        ).fetchone()
        if row:
            conn.execute(
                "UPDATE faults SET last_seen_at = ?, occurrences = occurrences + 1, detail = ?"
                " WHERE id = ?",
                (at, detail, fid),
            )
        else:
            conn.execute(
                "INSERT INTO faults (id, kind, subject, severity, detail, opened_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET severity = excluded.severity,"
                " detail = excluded.detail, opened_at = excluded.opened_at,"
                " last_seen_at = excluded.last_seen_at, resolved_at = NULL, occurrences = 1",
                (fid, kind, subject, severity, detail, at, at),
            )
            entry = audit.append(
                catalog,
                "fault.open",
                fid,
                {"kind": kind, "subject": subject, "detail": detail, "severity": severity},
            )
            outbox.enqueue(
                conn,
                topics.fault(catalog.station_id, fid),
                {
                    "id": fid,
                    "station": catalog.station_id,
                    "kind": kind,
                    "subject": subject,
                    "severity": severity,
                    "detail": detail,
                    "opened_at": at,
                    "repair_by": _plus_hours(at, REPAIR_LIMIT_HOURS),
                    "audit_seq": entry.seq,
                },
                event_id=f"{catalog.station_id}:fault:{fid}:{entry.seq}",
                retain=True,
            )
        cur = conn.execute("SELECT * FROM faults WHERE id = ?", (fid,))
        r = cur.fetchone()
        cols = [d[0] for d in cur.description]
    return _row(dict(zip(cols, r, strict=True)))


def resolve_fault(catalog: Catalog, kind: str, subject: str, note: str = "") -> bool:
    """Close an open fault; returns False when none was open."""
    fid = fault_id(kind, subject)
    with catalog.tx() as conn:
        cur = conn.execute(
            "UPDATE faults SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
            (now_utc(), fid),
        )
        if cur.rowcount == 0:
            return False
        entry = audit.append(
            catalog, "fault.resolved", fid, {"kind": kind, "subject": subject, "note": note}
        )
        outbox.enqueue(
            conn,
            topics.fault(catalog.station_id, fid),
            "",
            event_id=f"{catalog.station_id}:fault:{fid}:{entry.seq}",
            retain=True,
        )
    return True


def list_faults(catalog: Catalog, *, include_resolved: bool = False) -> list[Fault]:
    sql = "SELECT * FROM faults"
    if not include_resolved:
        sql += " WHERE resolved_at IS NULL"
    return [_row(r) for r in catalog.query(sql + " ORDER BY opened_at")]


def _plus_hours(iso: str, hours: float) -> str:
    from datetime import timedelta

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
