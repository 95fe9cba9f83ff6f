"""The stations (table ``stations``): each station's status, when it was last heard, its latest
health report (store space, backlogs, clock), its event counts and the state of its audit
chain.

The chain columns (``chain_seq``/``chain_hash``, the head of the part complete from the
baseline; ``chain_max_seq``; ``chain_ok`` and ``chain_problem``) are moved by
:mod:`central.catalog.events`, which checks the chain, through the named functions here. A
station's chain starts at seq 1 and the genesis hash; an operator's re-baseline
(:func:`rebaseline`) starts a new ``chain_epoch`` from ``chain_base_seq``/``chain_base_hash``
and leaves the events of earlier epochs as they are. Every function takes the thread's
connection; the writes run inside the caller's transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from central.catalog import paging
from central.catalog.db import Connection
from sync.wire.chain import GENESIS, canonical

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS stations (
        station TEXT PRIMARY KEY,
        status TEXT,
        status_payload TEXT,
        status_at TEXT,
        last_seen TEXT,
        chain_seq INTEGER NOT NULL DEFAULT 0,
        chain_hash TEXT NOT NULL DEFAULT '"""
    + GENESIS
    + """',
        chain_max_seq INTEGER NOT NULL DEFAULT 0,
        chain_ok INTEGER NOT NULL DEFAULT 1,
        chain_problem TEXT,
        chain_problem_at TEXT,
        events INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0
    )""",
]

# columns added since the table was first created (central/catalog/__init__.py adds them)
COLUMNS = [
    ("stations", "chain_epoch", "INTEGER NOT NULL DEFAULT 0"),
    ("stations", "chain_base_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("stations", "chain_base_hash", f"TEXT NOT NULL DEFAULT '{GENESIS}'"),
    ("stations", "health_payload", "TEXT"),
    ("stations", "health_received_at", "TEXT"),
]

# -- writes (the MQTT consumer) --------------------------------------------------------------


def ensure(conn: Connection, station: str) -> None:
    """Make the station known (every message does, whatever it carries)."""
    conn.execute("INSERT INTO stations (station) VALUES (?) ON CONFLICT DO NOTHING", (station,))


def seen(conn: Connection, station: str, at: str) -> None:
    conn.execute(
        "UPDATE stations SET last_seen = greatest(coalesce(last_seen, ''), ?) WHERE station = ?",
        (at, station),
    )


def record_status(
    conn: Connection,
    station: str,
    doc: dict[str, Any] | None,
    *,
    live: bool,
    received_at: str,
) -> None:
    """The retained station status, or its clearing (``doc`` None)."""
    if doc is None:
        conn.execute(
            "UPDATE stations SET status = NULL, status_payload = NULL, status_at = ?"
            " WHERE station = ?",
            (received_at, station),
        )
        return
    conn.execute(
        "UPDATE stations SET status = ?, status_payload = ?, status_at = ? WHERE station = ?",
        (doc["state"], canonical(doc), doc.get("at") or received_at, station),
    )
    if live and doc["state"] != "offline":
        seen(conn, station, received_at)


def record_health(
    conn: Connection, station: str, doc: dict[str, Any], *, live: bool, received_at: str
) -> None:
    """The station's latest health report (``recdock/<station>/health``). ``received_at`` is
    the centre's time, which the report's ages are counted from; a retained report replayed on
    subscribing was sent earlier: the one already held keeps its time, a new one takes the
    station's ``at`` when that is earlier."""
    held = conn.execute(
        "SELECT health_payload, health_received_at FROM stations WHERE station = ?"
        + conn.dialect.for_update,
        (station,),
    ).fetchone()
    if not live:
        if held["health_payload"] and json.loads(held["health_payload"]).get("at") == doc["at"]:
            return
        received_at = min(received_at, _utc(doc["at"]), key=datetime.fromisoformat)
    conn.execute(
        "UPDATE stations SET health_payload = ?, health_received_at = ? WHERE station = ?",
        (canonical(doc), received_at, station),
    )
    if live:
        seen(conn, station, received_at)


def _utc(at: str) -> str:
    then = datetime.fromisoformat(at)
    return (then if then.tzinfo else then.replace(tzinfo=UTC)).isoformat()


def count_duplicate(conn: Connection, station: str) -> None:
    conn.execute(
        "UPDATE stations SET duplicates = duplicates + 1 WHERE station = ?",
        (station,),
    )


def chain_ok(conn: Connection, station: str) -> bool:
    row = conn.execute("SELECT chain_ok FROM stations WHERE station = ?", (station,)).fetchone()
    return bool(row["chain_ok"])


def mark_broken(conn: Connection, station: str, problem: str, at: str) -> None:
    """The chain no longer holds, for good: ``problem`` says why."""
    conn.execute(
        "UPDATE stations SET chain_ok = 0, chain_problem = ?, chain_problem_at = ?"
        " WHERE station = ?",
        (problem, at, station),
    )


def epoch(conn: Connection, station: str) -> tuple[int, int, str]:
    """The station's chain epoch and the seq and hash it starts from."""
    row = conn.execute(
        "SELECT chain_epoch, chain_base_seq, chain_base_hash FROM stations WHERE station = ?",
        (station,),
    ).fetchone()
    return int(row[0]), int(row[1]), str(row[2])


def rebaseline(conn: Connection, station: str, base_seq: int, base_hash: str) -> int:
    """Start a new chain epoch from (``base_seq``, ``base_hash``); returns the new epoch."""
    conn.execute(
        "UPDATE stations SET chain_epoch = chain_epoch + 1, chain_base_seq = ?,"
        " chain_base_hash = ?, chain_seq = ?, chain_hash = ?, chain_max_seq = ?, chain_ok = 1,"
        " chain_problem = NULL, chain_problem_at = NULL WHERE station = ?",
        (base_seq, base_hash, base_seq, base_hash, base_seq, station),
    )
    return epoch(conn, station)[0]


def hold_rows(conn: Connection, names: list[str]) -> None:
    """Make the stations ``names`` known and hold their rows, in the order of their names,
    until the transaction ends (PostgreSQL; on SQLite ``BEGIN IMMEDIATE`` already holds
    everything). A batch takes its stations' rows first, so two workers whose batches name
    the same stations in another order wait for each other instead of deadlocking halfway
    through (a new station's row included: its insert is what the other waits on)."""
    if not names or not conn.dialect.for_update:
        return
    for name in sorted(names):
        ensure(conn, name)
    marks = ", ".join("?" for _ in names)
    conn.execute(
        f"SELECT station FROM stations WHERE station IN ({marks}) ORDER BY station"  # noqa: S608
        + conn.dialect.for_update,
        sorted(names),
    ).fetchall()


def claim_chain(conn: Connection, station: str) -> Any:
    """Make the station known and hold its row until the transaction ends, in one statement;
    returns what an arriving event is checked against, as it stands once the row is held:
    ``chain_epoch``, ``chain_base_seq``, ``chain_base_hash``, the complete head
    ``chain_seq``, ``chain_hash`` and the highest seq held, ``chain_max_seq``. Two workers
    storing the same station's events take turns here (PostgreSQL: the row lock of the upsert;
    SQLite: ``BEGIN IMMEDIATE`` already let one writer in), so each checks the chain against
    the events the other committed: no false gap, no head left behind."""
    return conn.execute(
        "INSERT INTO stations (station) VALUES (?) ON CONFLICT (station)"
        " DO UPDATE SET station = excluded.station"
        " RETURNING chain_epoch, chain_base_seq, chain_base_hash, chain_seq, chain_hash,"
        " chain_max_seq",
        (station,),
    ).fetchone()


def stored_events(
    conn: Connection,
    station: str,
    *,
    count: int,
    max_seq: int,
    at: str,
    head: tuple[int, str] | None,
) -> None:
    """``count`` events were stored, in one write (:mod:`central.catalog.chains`, once a
    transaction): the station seen at ``at``, the events counted, the highest seq, and the
    complete head moved to ``head`` (seq, hash) when it moved."""
    conn.execute(
        "UPDATE stations SET last_seen = greatest(coalesce(last_seen, ''), ?),"
        " events = events + ?, chain_max_seq = greatest(chain_max_seq, ?),"
        " chain_seq = coalesce(?, chain_seq),"
        " chain_hash = coalesce(?, chain_hash) WHERE station = ?",
        (at, count, max_seq, *(head or (None, None)), station),
    )


# -- reads (the JSON API) --------------------------------------------------------------------


def chain_span(conn: Connection, station: str) -> tuple[int, int] | None:
    """The complete head's seq and the highest seq seen; None for an unknown station."""
    row = conn.execute(
        "SELECT chain_seq, chain_max_seq FROM stations WHERE station = ?", (station,)
    ).fetchone()
    return None if row is None else (row["chain_seq"], row["chain_max_seq"])


def rows(conn: Connection, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Stations by id, a page at a time (central/catalog/paging.py)."""
    sql = "SELECT * FROM stations ORDER BY station" + paging.SQL
    return [dict(r) for r in conn.execute(sql, paging.params(limit, offset))]


def row(conn: Connection, station: str) -> dict[str, Any] | None:
    found = [dict(r) for r in conn.execute("SELECT * FROM stations WHERE station = ?", (station,))]
    return found[0] if found else None


def view(
    row: dict[str, Any], missing: list[tuple[int, int]], counts: dict[str, int]
) -> dict[str, Any]:
    """What the JSON API shows of a station; ``missing`` are the seq ranges not received,
    ``counts`` its security alerts and chain conflicts."""
    if not row["chain_ok"]:
        state = "broken"
    elif missing:
        state = "gap"
    else:
        state = "ok"
    return {
        "station": row["station"],
        "status": row["status"],
        "status_at": row["status_at"],
        "status_detail": json.loads(row["status_payload"]) if row["status_payload"] else None,
        "last_seen": row["last_seen"],
        "events": row["events"],
        "duplicates": row["duplicates"],
        "security_alerts": counts["security_alerts"],
        "health_report": health_report(row),
        "chain": {
            "state": state,
            "ok": bool(row["chain_ok"]),
            "head_seq": row["chain_seq"],
            "head_hash": row["chain_hash"],
            "max_seq": row["chain_max_seq"],
            "missing": [list(r) for r in missing],
            "problem": row["chain_problem"],
            "problem_at": row["chain_problem_at"],
            "conflicts": counts["conflicts"],
            "epoch": row["chain_epoch"],
            "base_seq": row["chain_base_seq"],
            "base_hash": row["chain_base_hash"],
        },
    }


def health_report(row: dict[str, Any]) -> dict[str, Any] | None:
    """The latest health report as the station signed it, with ``received_at`` (the centre's
    time); None before the first."""
    if not row.get("health_payload"):
        return None
    return {**json.loads(row["health_payload"]), "received_at": row["health_received_at"]}


def count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM stations").fetchone()[0]


def broken_count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM stations WHERE chain_ok = 0").fetchone()[0]
