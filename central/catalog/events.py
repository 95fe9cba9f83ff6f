"""The events and each station's audit chain (table ``events``; the chain columns of
``stations`` through :mod:`central.catalog.stations`).

Events are de-duplicated by ``event_id``. Every event carries ``seq``, ``prev_hash`` and
``hash``; the hash is recomputed from the content (:func:`sync.wire.chain.entry_hash`, the
station's own definition) and neighbours are compared:

* a **gap** (``seq`` jumps ahead) is not an error: events may arrive out of order or late (the
  station's outbox replays). The station's ``chain_seq``/``chain_hash`` is the head of the part
  that is complete from seq 1; ``chain_max_seq`` the highest seen. The gap closes when the
  missing events arrive.
* a **rewrite** makes ``chain_ok`` false, for good, with the reason in ``chain_problem``: an
  event whose hash does not match its content, a second event at a seq already held with a
  different hash (e.g. a station catalog replaced by another), or an event that does not link
  to its stored neighbour (``prev_hash`` differs from the hash of seq - 1, or seq + 1 does not
  link to it).

Fault openings and resolutions in the stream also update :mod:`central.catalog.faults`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from central.catalog import faults, stations
from sync.wire.chain import GENESIS, canonical, entry_hash

logger = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        station TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        data TEXT NOT NULL,
        at TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        hash_ok INTEGER NOT NULL,
        received_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_station_seq ON events (station, seq)",
]

# -- writes (the MQTT consumer) --------------------------------------------------------------


def record(conn: sqlite3.Connection, doc: dict[str, Any], *, received_at: str) -> str:
    """Store one audit event and check the chain; returns ``stored`` or ``duplicate``."""
    station, seq = doc["station"], int(doc["seq"])
    data_text = canonical(doc["data"])
    computed = entry_hash(doc["prev_hash"], seq, doc["at"], doc["kind"], doc["subject"], data_text)
    hash_ok = computed == doc["hash"]
    stations.ensure(conn, station)
    if not _insert(conn, doc, seq, data_text, hash_ok, received_at):
        stations.count_duplicate(conn, station)
        return "duplicate"
    stations.count_event(conn, station, seq)
    stations.seen(conn, station, received_at)
    problem = _chain_problem(conn, doc, seq, hash_ok)
    if problem:
        _broken(conn, station, problem, received_at)
    else:
        _advance(conn, station)
    _fault_event(conn, station, doc, received_at)
    return "stored"


def _insert(
    conn: sqlite3.Connection,
    doc: dict[str, Any],
    seq: int,
    data_text: str,
    hash_ok: bool,
    received_at: str,
) -> bool:
    """Insert the event; False when its ``event_id`` is already stored."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO events (event_id, station, seq, kind, subject, data, at,"
        " prev_hash, hash, hash_ok, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            doc["event_id"],
            doc["station"],
            seq,
            doc["kind"],
            doc["subject"],
            data_text,
            doc["at"],
            doc["prev_hash"],
            doc["hash"],
            int(hash_ok),
            received_at,
        ),
    )
    return cur.rowcount != 0


def _chain_problem(
    conn: sqlite3.Connection, doc: dict[str, Any], seq: int, hash_ok: bool
) -> str | None:
    """Why this event breaks its station's chain, or None when it fits."""
    station, digest = doc["station"], doc["hash"]
    if not hash_ok:
        return (
            f"event {seq} ({doc['event_id']}): its hash does not match its content "
            "(altered after it was chained)"
        )
    if seq == 1 and doc["prev_hash"] != GENESIS:
        return f"event 1 ({doc['event_id']}) does not start a chain"
    other = conn.execute(
        "SELECT event_id, hash FROM events WHERE station = ? AND seq = ? AND event_id != ?"
        " AND hash != ? ORDER BY id LIMIT 1",
        (station, seq, doc["event_id"], digest),
    ).fetchone()
    if other:
        return (
            f"seq {seq} arrived twice with different content ({other['event_id']} and "
            f"{doc['event_id']}): the station's audit log was rewritten or replaced"
        )
    return _unlinked(conn, doc, seq)


def _unlinked(conn: sqlite3.Connection, doc: dict[str, Any], seq: int) -> str | None:
    """Why the event does not link to its stored neighbours, or None when it does."""
    station, digest = doc["station"], doc["hash"]
    before = conn.execute(
        "SELECT event_id, hash FROM events WHERE station = ? AND seq = ? AND hash_ok = 1"
        " ORDER BY id LIMIT 1",
        (station, seq - 1),
    ).fetchone()
    if before and before["hash"] != doc["prev_hash"]:
        return (
            f"event {seq} ({doc['event_id']}) does not follow event {seq - 1} "
            f"({before['event_id']}): the station's audit log was rewritten"
        )
    after = conn.execute(
        "SELECT event_id, prev_hash FROM events WHERE station = ? AND seq = ?"
        " AND hash_ok = 1 ORDER BY id LIMIT 1",
        (station, seq + 1),
    ).fetchone()
    if after and after["prev_hash"] != digest:
        return (
            f"event {seq + 1} ({after['event_id']}) does not follow event {seq} "
            f"({doc['event_id']}): the station's audit log was rewritten"
        )
    return None


def _broken(conn: sqlite3.Connection, station: str, problem: str, at: str) -> None:
    if stations.chain_ok(conn, station):
        logger.error("station %s: audit chain broken: %s", station, problem)
        stations.mark_broken(conn, station, problem, at)
    else:
        logger.error("station %s: another audit chain problem: %s", station, problem)


def _advance(conn: sqlite3.Connection, station: str) -> None:
    """Move the complete-from-1 head forward over every event now present."""
    head, digest = stations.chain_head(conn, station)
    moved = False
    while True:
        nxt = conn.execute(
            "SELECT hash FROM events WHERE station = ? AND seq = ? AND prev_hash = ?"
            " AND hash_ok = 1 ORDER BY id LIMIT 1",
            (station, head + 1, digest),
        ).fetchone()
        if nxt is None:
            break
        head, digest, moved = head + 1, nxt["hash"], True
    if moved:
        stations.move_head(conn, station, head, digest)


def _fault_event(conn: sqlite3.Connection, station: str, doc: dict[str, Any], at: str) -> None:
    """Fault openings and resolutions also travel in the event stream: a clearing of a
    retained fault topic missed while the central store was away is not lost."""
    kind, data = doc["kind"], doc["data"]
    if kind == "fault.open":
        faults.open_fault(conn, station, doc["subject"], {**data, "opened_at": doc["at"]}, at)
    elif kind == "fault.resolved":
        faults.resolve(conn, station, doc["subject"], doc["at"])


# -- reads (the JSON API) --------------------------------------------------------------------


def missing_ranges(
    conn: sqlite3.Connection, station: str, limit: int = 20
) -> list[tuple[int, int]]:
    """Seq ranges not received between the complete head and the highest seq seen."""
    span = stations.chain_span(conn, station)
    if span is None or span[1] <= span[0]:
        return []
    head = span[0]
    seqs = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT seq FROM events WHERE station = ? AND seq > ? ORDER BY seq",
            (station, head),
        )
    ]
    ranges: list[tuple[int, int]] = []
    expected = head + 1
    for s in seqs:
        if s > expected:
            ranges.append((expected, s - 1))
            if len(ranges) >= limit:
                break
        expected = s + 1
    return ranges


def listing(
    conn: sqlite3.Connection, station: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest ``limit`` events, newest first; of one station, or of all."""
    sql = "SELECT * FROM events"
    params: tuple[str, ...] = ()
    if station is not None:
        sql, params = sql + " WHERE station = ?", (station,)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [
        {
            "event_id": r["event_id"],
            "station": r["station"],
            "seq": r["seq"],
            "kind": r["kind"],
            "subject": r["subject"],
            "data": json.loads(r["data"]),
            "at": r["at"],
            "prev_hash": r["prev_hash"],
            "hash": r["hash"],
            "hash_ok": bool(r["hash_ok"]),
            "received_at": r["received_at"],
        }
        for r in rows
    ]


def event_ids(conn: sqlite3.Connection, station: str) -> list[str]:
    """The station's event ids in the order they arrived."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT event_id FROM events WHERE station = ? ORDER BY id", (station,)
        )
    ]


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM events").fetchone()[0]
