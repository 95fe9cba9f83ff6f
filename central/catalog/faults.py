"""The faults (table ``faults``): what stations report, what the centre finds, and what people
decided about each.

A station's fault changes state through the station's signed events (``fault.open``,
``fault.resolved``: :mod:`central.catalog.events`), which reach the central store even when it
was away while a retained topic changed. Its signed retained payload (``repair_by`` and the
rest) is attached to the fault the events opened, nothing more; an empty retained payload only
clears the broker's copy and changes nothing here. A resolution newer than an opening that
arrives late keeps the fault resolved. An open fault is overdue after the 24-hour repair limit.

The lifecycle (``lifecycle`` in every listing, derived from the columns): ``open``;
``reported`` (the centre received it: ``reported_at``, when its ``fault.open`` event arrived;
the centre answers with the ``fault``/``received`` command); ``acknowledged`` by a person
(``acknowledged_by``, ``acknowledged_at``); ``resolved`` (``resolved_at``, with
``resolved_by`` and ``resolution_note`` when a person resolved it; by the station's own
``fault.resolved`` event otherwise). A fault that opens again after it was resolved starts the
lifecycle anew.

The centre's own faults (:mod:`central.rules`) are rows with ``origin = 'centre'``, an id
``centre:<rule>:<digest>`` and the station concerned (or ``recdock-central`` for a recorder
seen at no single station); a station's event never changes them. Their ``evidence`` is the
values that tripped the rule.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from central.catalog import paging
from central.catalog.db import Connection
from sync.wire.chain import canonical

REPAIR_LIMIT_HOURS = 24.0

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS faults (
        station TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        kind TEXT,
        subject TEXT,
        severity TEXT,
        detail TEXT,
        opened_at TEXT NOT NULL,
        resolved_at TEXT,
        payload TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, id)
    )""",
    "CREATE INDEX IF NOT EXISTS faults_state ON faults (state, opened_at)",
]

# columns added since the table was first created (central/catalog/__init__.py adds them)
COLUMNS = [
    ("faults", "origin", "TEXT NOT NULL DEFAULT 'station'"),
    ("faults", "rule", "TEXT"),
    ("faults", "device", "TEXT"),
    ("faults", "evidence", "TEXT"),
    ("faults", "last_seen_at", "TEXT"),
    ("faults", "reported_at", "TEXT"),
    ("faults", "acknowledged_at", "TEXT"),
    ("faults", "acknowledged_by", "TEXT"),
    ("faults", "resolved_by", "TEXT"),
    ("faults", "resolution_note", "TEXT"),
]
# made after COLUMNS (the index names a column added there)
INDEXES = [
    "CREATE INDEX IF NOT EXISTS faults_device ON faults (device, state)",
    # a recorder's page: the faults about it (the station's, named by its subject)
    "CREATE INDEX IF NOT EXISTS faults_subject ON faults (subject, state)",
]
CENTRE = "recdock-central"
SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2}


def age_hours(opened_at: str, now: datetime | None = None) -> float:
    opened = datetime.fromisoformat(opened_at)
    if opened.tzinfo is None:
        opened = opened.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - opened).total_seconds() / 3600


# -- writes (the MQTT consumer) --------------------------------------------------------------


def attach(conn: Connection, station: str, fault_id: str, doc: dict[str, Any]) -> None:
    """The fault's signed retained payload, kept with the fault its events opened (if any)."""
    conn.execute(
        "UPDATE faults SET payload = ? WHERE station = ? AND id = ?",
        (canonical(doc), station, fault_id),
    )


def open_fault(conn: Connection, station: str, fid: str, doc: dict[str, Any], at: str) -> bool:
    """A station's ``fault.open`` event (received at ``at``); True when the fault is open now
    (the centre then answers with the ``received`` command). A centre fault with the same id
    is never touched."""
    opened_at = doc.get("opened_at") or at
    stays = "faults.state = 'resolved' AND faults.resolved_at >= ?"
    reset = f"CASE WHEN ({stays}) OR faults.state = 'open' THEN faults.{{0}} ELSE NULL END"
    conn.execute(
        "INSERT INTO faults (station, id, state, kind, subject, severity, detail, opened_at,"
        " payload, updated_at, reported_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (station, id) DO UPDATE SET"
        f" state = CASE WHEN {stays} THEN 'resolved' ELSE 'open' END,"
        f" resolved_at = CASE WHEN {stays} THEN faults.resolved_at ELSE NULL END,"
        + ",".join(
            f" {c} = {reset.format(c)}"
            for c in ("acknowledged_at", "acknowledged_by", "resolved_by", "resolution_note")
        )
        + ", reported_at = excluded.reported_at,"
        " kind = excluded.kind, subject = excluded.subject, severity = excluded.severity,"
        " detail = excluded.detail, opened_at = excluded.opened_at,"
        " payload = coalesce(excluded.payload, faults.payload),"
        " updated_at = excluded.updated_at WHERE faults.origin = 'station'",
        (
            station,
            fid,
            doc.get("kind"),
            doc.get("subject"),
            doc.get("severity"),
            doc.get("detail"),
            opened_at,
            canonical(doc) if "repair_by" in doc else None,
            at,
            at,
            *([opened_at] * 6),
        ),
    )
    row = conn.execute(
        "SELECT state FROM faults WHERE station = ? AND id = ? AND origin = 'station'",
        (station, fid),
    ).fetchone()
    return row is not None and row["state"] == "open"


def resolve(conn: Connection, station: str, fid: str, at: str) -> None:
    """The station's ``fault.resolved`` event."""
    conn.execute(
        "UPDATE faults SET state = 'resolved', resolved_at = ?, updated_at = ?"
        " WHERE station = ? AND id = ? AND state = 'open' AND origin = 'station'",
        (at, at, station, fid),
    )


def acknowledge(conn: Connection, station: str, fid: str, by: str, at: str) -> bool:
    """A person acknowledged the open fault; False when there is no such open fault."""
    cur = conn.execute(
        "UPDATE faults SET acknowledged_at = ?, acknowledged_by = ?, updated_at = ?"
        " WHERE station = ? AND id = ? AND state = 'open'",
        (at, by, at, station, fid),
    )
    return cur.rowcount > 0


def resolve_by(
    conn: Connection, station: str, fid: str, by: str, note: str | None, at: str
) -> bool:
    """A person (or the centre's own rule, ``by`` = ``recdock-central``) resolved the open
    fault; False when there is no such open fault."""
    cur = conn.execute(
        "UPDATE faults SET state = 'resolved', resolved_at = ?, resolved_by = ?,"
        " resolution_note = ?, updated_at = ? WHERE station = ? AND id = ? AND state = 'open'",
        (at, by, note, at, station, fid),
    )
    return cur.rowcount > 0


def open_centre_fault(conn: Connection, fault: dict[str, Any], at: str) -> bool:
    """Open the centre's fault ``fault`` (station, id, rule, kind, subject, severity, detail,
    device, evidence), or note it was seen again (its evidence renewed). True when it opened
    now (it was not open)."""
    was = conn.execute(
        "SELECT state FROM faults WHERE station = ? AND id = ?", (fault["station"], fault["id"])
    ).fetchone()
    conn.execute(
        "INSERT INTO faults (station, id, state, origin, rule, kind, subject, severity, detail,"
        " device, evidence, opened_at, last_seen_at, reported_at, updated_at)"
        " VALUES (?, ?, 'open', 'centre', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (station, id) DO UPDATE SET evidence = excluded.evidence,"
        " detail = excluded.detail, severity = excluded.severity,"
        " last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at,"
        " opened_at = CASE WHEN faults.state = 'open' THEN faults.opened_at ELSE ? END,"
        " reported_at = CASE WHEN faults.state = 'open' THEN faults.reported_at ELSE ? END,"
        " acknowledged_at = CASE WHEN faults.state = 'open' THEN faults.acknowledged_at END,"
        " acknowledged_by = CASE WHEN faults.state = 'open' THEN faults.acknowledged_by END,"
        " resolved_at = NULL, resolved_by = NULL, resolution_note = NULL, state = 'open'"
        " WHERE faults.origin = 'centre'",
        (
            fault["station"],
            fault["id"],
            fault["rule"],
            fault["kind"],
            fault["subject"],
            fault["severity"],
            fault["detail"],
            fault.get("device"),
            canonical(fault["evidence"]),
            *([at] * 6),
        ),
    )
    return was is None or was["state"] != "open"


def open_centre_ids(conn: Connection, rule: str) -> list[tuple[str, str]]:
    """(station, id) of the centre's open faults of ``rule``."""
    return [
        (r["station"], r["id"])
        for r in conn.execute(
            "SELECT station, id FROM faults WHERE origin = 'centre' AND rule = ?"
            " AND state = 'open'",
            (rule,),
        )
    ]


def key_of(conn: Connection, station: str, fid: str) -> dict[str, Any] | None:
    """The fault's state and origin, or None."""
    row = conn.execute(
        "SELECT station, id, state, origin FROM faults WHERE station = ? AND id = ?",
        (station, fid),
    ).fetchone()
    return dict(row) if row else None


# -- reads (the JSON API, the dashboard) -----------------------------------------------------


def lifecycle(row: dict[str, Any]) -> str:
    if row["state"] == "resolved":
        return "resolved"
    if row["acknowledged_at"]:
        return "acknowledged"
    return "reported" if row["reported_at"] else "open"


def view(r: dict[str, Any], now: datetime | None = None, amber_hours: float = 12.0):
    """What the API and the dashboard show of one fault: its age against the repair limit
    (``band``: ``ok``, ``amber`` from ``amber_hours``, ``red`` past 24 h; ``resolved``)."""
    age = age_hours(r["opened_at"], now)
    is_open = r["state"] == "open"
    if not is_open:
        band = "resolved"
    else:
        band = "red" if age >= REPAIR_LIMIT_HOURS else "amber" if age >= amber_hours else "ok"
    return {
        "ref": f"{r['station']}/{r['id']}",
        "station": r["station"],
        "id": r["id"],
        "origin": r["origin"],
        "rule": r["rule"],
        "state": r["state"],
        "lifecycle": lifecycle(r),
        "kind": r["kind"],
        "subject": r["subject"],
        "device": r["device"],
        "severity": r["severity"],
        "detail": r["detail"],
        "evidence": json.loads(r["evidence"]) if r["evidence"] else None,
        "opened_at": r["opened_at"],
        "last_seen_at": r["last_seen_at"],
        "reported_at": r["reported_at"],
        "acknowledged_at": r["acknowledged_at"],
        "acknowledged_by": r["acknowledged_by"],
        "resolved_at": r["resolved_at"],
        "resolved_by": r["resolved_by"],
        "resolution_note": r["resolution_note"],
        "age_hours": round(age, 2),
        "overdue": is_open and age >= REPAIR_LIMIT_HOURS,
        "band": band,
    }


def listing(
    conn: Connection,
    *,
    include_resolved: bool = False,
    now: datetime | None = None,
    station: str | None = None,
    device: str | None = None,
    subject: str | None = None,
    amber_hours: float = 12.0,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Open faults (and resolved ones with ``include_resolved``), oldest first, each with its
    age and whether it is past the repair limit; of one station, one device or one subject
    when asked; a page at a time (central/catalog/paging.py)."""
    where, params = _where(include_resolved, station, device, subject)
    sql = "SELECT * FROM faults" + where + " ORDER BY opened_at, station, id" + paging.SQL
    rows = conn.execute(sql, (*params, *paging.params(limit, offset))).fetchall()
    return [view(dict(r), now, amber_hours) for r in rows]


def count(
    conn: Connection,
    *,
    include_resolved: bool = False,
    station: str | None = None,
    device: str | None = None,
    subject: str | None = None,
) -> int:
    """How many faults :func:`listing` lists with the same filters."""
    where, params = _where(include_resolved, station, device, subject)
    return conn.execute("SELECT count(*) FROM faults" + where, params).fetchone()[0]


def _where(
    include_resolved: bool, station: str | None, device: str | None, subject: str | None
) -> tuple[str, tuple[str, ...]]:
    sql, params = " WHERE 1 = 1", ()
    if not include_resolved:
        sql += " AND state = 'open'"
    if station is not None:
        sql, params = sql + " AND station = ?", (*params, station)
    if device is not None:
        sql, params = sql + " AND device = ?", (*params, device)
    if subject is not None:
        sql, params = sql + " AND subject = ?", (*params, subject)
    return sql, params


def worst_first(faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open before resolved, then by severity (critical first), then the oldest first."""
    return sorted(
        faults,
        key=lambda f: (
            f["state"] != "open",
            SEVERITY_RANK.get(f["severity"] or "", 3),
            -f["age_hours"],
        ),
    )


def one(
    conn: Connection,
    station: str,
    fid: str,
    now: datetime | None = None,
    amber_hours: float = 12.0,
) -> dict[str, Any] | None:
    """The station's fault ``fid`` as :func:`listing` shows it, or None."""
    row = conn.execute(
        "SELECT * FROM faults WHERE station = ? AND id = ?", (station, fid)
    ).fetchone()
    return view(dict(row), now, amber_hours) if row else None


def open_by_device(conn: Connection) -> dict[str, int]:
    """Open faults per recorder serial (the faults that name a device)."""
    return {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT device, count(*) FROM faults WHERE state = 'open' AND device IS NOT NULL"
            " GROUP BY device"
        )
    }


def open_by_station(conn: Connection) -> dict[str, dict[str, int]]:
    """Open faults per station, counted by severity."""
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT station, severity, count(*) FROM faults WHERE state = 'open'"
        " GROUP BY station, severity"
    ):
        out.setdefault(r[0], {})[r[1] or "unknown"] = r[2]
    return out


def open_count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM faults WHERE state = 'open'").fetchone()[0]
