"""Access requests made at the centre (tables ``access_requests`` and ``access_objects``; rule
clauses 13, 34, 35).

A request (``AC-…``: never an id a station makes, ``A-…``) keeps who asks (the dashboard user,
``requested_by``), on whose behalf (``party``), for which case (name, number), why
(``purpose``), what it was asked by (``basis``: ``hold:<id>``, ``case:<number>`` or ``list``),
when; and its decision: ``state`` (``requested``, ``approved``, ``refused``), ``decided_by``,
``decided_at``, ``valid_until`` (an approval only), ``note``. Its objects are resolved when it is
made and kept with it (``access_objects``, numbered from 1): station, the recording's store path
and what the station's ``file.stored`` event said of it (sha256, size, session, recorder, the
recorder's own path), so an approver approves a list, not a rule that could cover more later.

Every write joins the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from central.catalog.db import Connection

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS access_requests (
        request_id TEXT PRIMARY KEY,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        party TEXT,
        case_name TEXT,
        case_number TEXT,
        purpose TEXT NOT NULL,
        basis TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'requested',
        decided_by TEXT,
        decided_at TEXT,
        valid_until TEXT,
        note TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS access_objects (
        request_id TEXT NOT NULL REFERENCES access_requests (request_id),
        n INTEGER NOT NULL,
        station TEXT NOT NULL,
        recording TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        session_id TEXT,
        device_serial TEXT,
        officer_id TEXT,
        unit TEXT,
        source_path TEXT,
        stored_at TEXT,
        PRIMARY KEY (request_id, n)
    )""",
    # the listing's order (newest first, then id: stable for paging)
    "CREATE INDEX IF NOT EXISTS access_requests_at"
    " ON access_requests (requested_at DESC, request_id)",
    "CREATE INDEX IF NOT EXISTS access_requests_state"
    " ON access_requests (state, requested_at DESC, request_id)",
]

STATES = ("requested", "approved", "refused")
_REQUEST = (
    "request_id",
    "requested_by",
    "requested_at",
    "party",
    "case_name",
    "case_number",
    "purpose",
    "basis",
)
_OBJECT = (
    "station",
    "recording",
    "sha256",
    "size",
    "session_id",
    "device_serial",
    "officer_id",
    "unit",
    "source_path",
    "stored_at",
)

# -- writes ------------------------------------------------------------------------------------


def create(conn: Connection, request: dict[str, Any], objects: list[dict]) -> None:
    """Keep a new request and its objects (numbered 1.. in the order given)."""
    conn.execute(
        f"INSERT INTO access_requests ({', '.join(_REQUEST)})"  # noqa: S608
        f" VALUES ({', '.join('?' for _ in _REQUEST)})",
        tuple(request.get(k) for k in _REQUEST),
    )
    conn.executemany(
        f"INSERT INTO access_objects (request_id, n, {', '.join(_OBJECT)})"  # noqa: S608
        f" VALUES (?, ?, {', '.join('?' for _ in _OBJECT)})",
        [
            (request["request_id"], n, *(o.get(k) for k in _OBJECT))
            for n, o in enumerate(objects, start=1)
        ],
    )


def decide(
    conn: Connection,
    request_id: str,
    *,
    state: str,
    by: str,
    at: str,
    valid_until: str | None,
    note: str | None,
) -> bool:
    """Approve or refuse a request not yet decided; False when it was decided already."""
    cur = conn.execute(
        "UPDATE access_requests SET state = ?, decided_by = ?, decided_at = ?, valid_until = ?,"
        " note = ? WHERE request_id = ? AND state = 'requested'",
        (state, by, at, valid_until, note, request_id),
    )
    return cur.rowcount == 1


# -- reads -------------------------------------------------------------------------------------


def get(conn: Connection, request_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT r.*, (SELECT count(*) FROM access_objects o WHERE o.request_id = r.request_id)"
        " AS objects FROM access_requests r WHERE r.request_id = ?",
        (request_id,),
    ).fetchone()
    return dict(row) if row else None


def objects(conn: Connection, request_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM access_objects WHERE request_id = ? ORDER BY n", (request_id,)
    ).fetchall()
    return [dict(r) for r in rows]


def listing(
    conn: Connection,
    *,
    state: str | None = None,
    requested_by: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Requests newest first (then by id, so pages never overlap), each with its number of
    objects; of one state, of one requester."""
    where, params = _where(state, requested_by)
    rows = conn.execute(
        "SELECT r.*, (SELECT count(*) FROM access_objects o WHERE o.request_id = r.request_id)"
        f" AS objects FROM access_requests r{where}"  # noqa: S608
        " ORDER BY r.requested_at DESC, r.request_id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [dict(r) for r in rows]


def count(conn: Connection, *, state: str | None = None) -> int:
    where, params = _where(state, None)
    return conn.execute(
        f"SELECT count(*) FROM access_requests r{where}",  # noqa: S608
        params,
    ).fetchone()[0]


def _where(state: str | None, requested_by: str | None) -> tuple[str, tuple[Any, ...]]:
    terms, params = [], []
    for column, value in (("r.state", state), ("r.requested_by", requested_by)):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), tuple(params)
