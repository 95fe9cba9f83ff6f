"""The central store's catalog of what stations report over MQTT (SQLite, WAL).

Tables: ``stations`` (status, last seen, the head of each station's audit chain and whether
the chain holds), ``bays``, ``recorders`` (health), ``events`` (de-duplicated by ``event_id``)
and ``faults``; ``rejected`` keeps the last invalid messages for diagnosis.

Chain checking, per station. Every event carries ``seq``, ``prev_hash`` and ``hash``; the
catalog recomputes ``hash`` from the content (:func:`sync.wire.chain.entry_hash`, the station's own
definition) and compares neighbours:

* a **gap** (``seq`` jumps ahead) is not an error: events may arrive out of order or late (the
  station's outbox replays). ``chain_seq``/``chain_hash`` is the head of the part that is
  complete from seq 1; ``chain_max_seq`` the highest seen. The gap closes when the missing
  events arrive.
* a **rewrite** makes ``chain_ok`` false, for good, with the reason in ``chain_problem``: an
  event whose hash does not match its content, a second event at a seq already held with a
  different hash (e.g. a station catalog replaced by another), or an event that does not link
  to its stored neighbour (``prev_hash`` differs from the hash of seq - 1, or seq + 1 does not
  link to it).

One connection per thread (``threading.local``), closed once its thread has ended (the API's
worker threads come and go); writes are short ``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.wire.chain import GENESIS, canonical, entry_hash

logger = logging.getLogger(__name__)

REPAIR_LIMIT_HOURS = 24.0
REJECTED_KEPT = 1000

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
    """CREATE TABLE IF NOT EXISTS bays (
        station TEXT NOT NULL,
        bay INTEGER NOT NULL,
        state TEXT NOT NULL,
        payload TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, bay)
    )""",
    """CREATE TABLE IF NOT EXISTS recorders (
        station TEXT NOT NULL,
        serial TEXT NOT NULL,
        ready INTEGER,
        health TEXT NOT NULL,
        at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (station, serial)
    )""",
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
    """CREATE TABLE IF NOT EXISTS rejected (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload BLOB
    )""",
]


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def age_hours(opened_at: str, now: datetime | None = None) -> float:
    opened = datetime.fromisoformat(opened_at)
    if opened.tzinfo is None:
        opened = opened.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - opened).total_seconds() / 3600


class CentralCatalog:
    """The central SQLite catalog; safe to share between threads (a connection each)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()
        with self.tx() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._conns_lock:
                # a thread that ended cannot use its connection again: close it here
                for thread in [t for t in self._conns if not t.is_alive()]:
                    self._conns.pop(thread).close()
                self._conns[threading.current_thread()] = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the open one (the consumer commits a batch
        of messages at once and acknowledges them only after the commit)."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # -- writes (the MQTT consumer) ------------------------------------------------------

    @staticmethod
    def _station(conn: sqlite3.Connection, station: str) -> None:
        conn.execute("INSERT OR IGNORE INTO stations (station) VALUES (?)", (station,))

    @staticmethod
    def _seen(conn: sqlite3.Connection, station: str, at: str) -> None:
        conn.execute(
            "UPDATE stations SET last_seen = max(coalesce(last_seen, ''), ?) WHERE station = ?",
            (at, station),
        )

    def record_status(
        self, station: str, doc: dict[str, Any] | None, *, live: bool, received_at: str
    ) -> None:
        """The retained station status; ``live`` is False for a retained value replayed on
        subscribing (it says nothing about when the station was last heard)."""
        with self.tx() as conn:
            self._station(conn, station)
            if doc is None:
                conn.execute(
                    "UPDATE stations SET status = NULL, status_payload = NULL, status_at = ?"
                    " WHERE station = ?",
                    (received_at, station),
                )
                return
            conn.execute(
                "UPDATE stations SET status = ?, status_payload = ?, status_at = ?"
                " WHERE station = ?",
                (doc["state"], canonical(doc), doc.get("at") or received_at, station),
            )
            if live and doc["state"] != "offline":
                self._seen(conn, station, received_at)

    def record_bay(
        self, station: str, bay: int, doc: dict[str, Any] | None, *, received_at: str
    ) -> None:
        with self.tx() as conn:
            self._station(conn, station)
            if doc is None:
                conn.execute("DELETE FROM bays WHERE station = ? AND bay = ?", (station, bay))
                return
            conn.execute(
                "INSERT INTO bays (station, bay, state, payload, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, bay) DO UPDATE SET"
                " state = excluded.state, payload = excluded.payload,"
                " updated_at = excluded.updated_at",
                (station, bay, doc["state"], canonical(doc), doc.get("at") or received_at),
            )

    def record_recorder(self, station: str, doc: dict[str, Any], *, received_at: str) -> None:
        ready = doc.get("ready")
        with self.tx() as conn:
            self._station(conn, station)
            conn.execute(
                "INSERT INTO recorders (station, serial, ready, health, at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station, serial) DO UPDATE SET"
                " ready = excluded.ready, health = excluded.health, at = excluded.at,"
                " updated_at = excluded.updated_at",
                (
                    station,
                    doc["device_serial"],
                    None if ready is None else int(bool(ready)),
                    canonical(doc),
                    doc.get("at"),
                    received_at,
                ),
            )

    def record_fault(
        self, station: str, fault_id: str, doc: dict[str, Any] | None, *, received_at: str
    ) -> None:
        """An open fault (retained payload) or its clearing (empty retained payload)."""
        with self.tx() as conn:
            self._station(conn, station)
            if doc is None:
                self._resolve(conn, station, fault_id, received_at)
                return
            self._open(conn, station, fault_id, doc, received_at)

    @staticmethod
    def _open(
        conn: sqlite3.Connection, station: str, fid: str, doc: dict[str, Any], at: str
    ) -> None:
        opened_at = doc.get("opened_at") or at
        conn.execute(
            "INSERT INTO faults (station, id, state, kind, subject, severity, detail, opened_at,"
            " payload, updated_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (station, id) DO UPDATE SET"
            " state = CASE WHEN faults.state = 'resolved' AND faults.resolved_at >= ?"
            "   THEN 'resolved' ELSE 'open' END,"
            " resolved_at = CASE WHEN faults.state = 'resolved' AND faults.resolved_at >= ?"
            "   THEN faults.resolved_at ELSE NULL END,"
            " kind = excluded.kind, subject = excluded.subject, severity = excluded.severity,"
            " detail = excluded.detail, opened_at = excluded.opened_at,"
            " payload = coalesce(excluded.payload, faults.payload),"
            " updated_at = excluded.updated_at",
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
                opened_at,
                opened_at,
            ),
        )

    @staticmethod
    def _resolve(conn: sqlite3.Connection, station: str, fid: str, at: str) -> None:
        conn.execute(
            "UPDATE faults SET state = 'resolved', resolved_at = ?, updated_at = ?"
            " WHERE station = ? AND id = ? AND state = 'open'",
            (at, at, station, fid),
        )

    def record_event(self, doc: dict[str, Any], *, received_at: str) -> str:
        """Store one audit event and check the chain; returns ``stored`` or ``duplicate``."""
        station, seq = doc["station"], int(doc["seq"])
        data_text = canonical(doc["data"])
        computed = entry_hash(
            doc["prev_hash"], seq, doc["at"], doc["kind"], doc["subject"], data_text
        )
        hash_ok = computed == doc["hash"]
        with self.tx() as conn:
            self._station(conn, station)
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (event_id, station, seq, kind, subject, data, at,"
                " prev_hash, hash, hash_ok, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc["event_id"],
                    station,
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
            if cur.rowcount == 0:
                conn.execute(
                    "UPDATE stations SET duplicates = duplicates + 1 WHERE station = ?",
                    (station,),
                )
                return "duplicate"
            conn.execute(
                "UPDATE stations SET events = events + 1,"
                " chain_max_seq = max(chain_max_seq, ?) WHERE station = ?",
                (seq, station),
            )
            self._seen(conn, station, received_at)
            problem = self._chain_problem(conn, doc, seq, hash_ok)
            if problem:
                self._broken(conn, station, problem, received_at)
            else:
                self._advance(conn, station)
            self._fault_event(conn, station, doc, received_at)
        return "stored"

    @staticmethod
    def _chain_problem(
        conn: sqlite3.Connection, doc: dict[str, Any], seq: int, hash_ok: bool
    ) -> str | None:
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

    @staticmethod
    def _broken(conn: sqlite3.Connection, station: str, problem: str, at: str) -> None:
        row = conn.execute("SELECT chain_ok FROM stations WHERE station = ?", (station,)).fetchone()
        if row["chain_ok"]:
            logger.error("station %s: audit chain broken: %s", station, problem)
            conn.execute(
                "UPDATE stations SET chain_ok = 0, chain_problem = ?, chain_problem_at = ?"
                " WHERE station = ?",
                (problem, at, station),
            )
        else:
            logger.error("station %s: another audit chain problem: %s", station, problem)

    @staticmethod
    def _advance(conn: sqlite3.Connection, station: str) -> None:
        """Move the complete-from-1 head forward over every event now present."""
        row = conn.execute(
            "SELECT chain_seq, chain_hash FROM stations WHERE station = ?", (station,)
        ).fetchone()
        head, digest = int(row["chain_seq"]), row["chain_hash"]
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
            conn.execute(
                "UPDATE stations SET chain_seq = ?, chain_hash = ? WHERE station = ?",
                (head, digest, station),
            )

    def _fault_event(
        self, conn: sqlite3.Connection, station: str, doc: dict[str, Any], at: str
    ) -> None:
        """Fault openings and resolutions also travel in the event stream: a clearing of a
        retained fault topic missed while the central store was away is not lost."""
        kind, data = doc["kind"], doc["data"]
        if kind == "fault.open":
            self._open(conn, station, doc["subject"], {**data, "opened_at": doc["at"]}, at)
        elif kind == "fault.resolved":
            self._resolve(conn, station, doc["subject"], doc["at"])

    def record_rejected(self, topic: str, reason: str, payload: bytes) -> None:
        with self.tx() as conn:
            conn.execute(
                "INSERT INTO rejected (at, topic, reason, payload) VALUES (?, ?, ?, ?)",
                (now_utc(), topic, reason, payload[:4096]),
            )
            conn.execute(
                "DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - ?",
                (REJECTED_KEPT,),
            )

    # -- reads (the JSON API) ------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params)]

    def missing_ranges(self, station: str, limit: int = 20) -> list[tuple[int, int]]:
        """Seq ranges not received between the complete head and the highest seq seen."""
        row = self.conn.execute(
            "SELECT chain_seq, chain_max_seq FROM stations WHERE station = ?", (station,)
        ).fetchone()
        if row is None or row["chain_max_seq"] <= row["chain_seq"]:
            return []
        seqs = [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT seq FROM events WHERE station = ? AND seq > ? ORDER BY seq",
                (station, row["chain_seq"]),
            )
        ]
        ranges: list[tuple[int, int]] = []
        expected = row["chain_seq"] + 1
        for s in seqs:
            if s > expected:
                ranges.append((expected, s - 1))
                if len(ranges) >= limit:
                    break
            expected = s + 1
        return ranges

    def station_view(self, row: dict[str, Any]) -> dict[str, Any]:
        station = row["station"]
        missing = self.missing_ranges(station)
        if not row["chain_ok"]:
            state = "broken"
        elif missing:
            state = "gap"
        else:
            state = "ok"
        return {
            "station": station,
            "status": row["status"],
            "status_at": row["status_at"],
            "status_detail": json.loads(row["status_payload"]) if row["status_payload"] else None,
            "last_seen": row["last_seen"],
            "events": row["events"],
            "duplicates": row["duplicates"],
            "chain": {
                "state": state,
                "ok": bool(row["chain_ok"]),
                "head_seq": row["chain_seq"],
                "head_hash": row["chain_hash"],
                "max_seq": row["chain_max_seq"],
                "missing": [list(r) for r in missing],
                "problem": row["chain_problem"],
                "problem_at": row["chain_problem_at"],
            },
        }

    def stations(self) -> list[dict[str, Any]]:
        return [self.station_view(r) for r in self._rows("SELECT * FROM stations ORDER BY station")]

    def station(self, station: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM stations WHERE station = ?", (station,))
        return self.station_view(rows[0]) if rows else None

    def bays(self, station: str) -> list[dict[str, Any]]:
        return [
            {
                "station": r["station"],
                "bay": r["bay"],
                "state": r["state"],
                "updated_at": r["updated_at"],
                "detail": json.loads(r["payload"]),
            }
            for r in self._rows("SELECT * FROM bays WHERE station = ? ORDER BY bay", (station,))
        ]

    def recorders(self, station: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM recorders"
        params: tuple[str, ...] = ()
        if station is not None:
            sql, params = sql + " WHERE station = ?", (station,)
        return [
            {
                "station": r["station"],
                "serial": r["serial"],
                "ready": None if r["ready"] is None else bool(r["ready"]),
                "at": r["at"],
                "updated_at": r["updated_at"],
                "health": json.loads(r["health"]),
            }
            for r in self._rows(sql + " ORDER BY station, serial", params)
        ]

    def faults(
        self, *, include_resolved: bool = False, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM faults"
        if not include_resolved:
            sql += " WHERE state = 'open'"
        out = []
        for r in self._rows(sql + " ORDER BY opened_at"):
            age = age_hours(r["opened_at"], now)
            out.append(
                {
                    "station": r["station"],
                    "id": r["id"],
                    "state": r["state"],
                    "kind": r["kind"],
                    "subject": r["subject"],
                    "severity": r["severity"],
                    "detail": r["detail"],
                    "opened_at": r["opened_at"],
                    "resolved_at": r["resolved_at"],
                    "age_hours": round(age, 2),
                    "overdue": r["state"] == "open" and age >= REPAIR_LIMIT_HOURS,
                }
            )
        return out

    def events(self, station: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        params: tuple[str, ...] = ()
        if station is not None:
            sql, params = sql + " WHERE station = ?", (station,)
        rows = self._rows(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
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

    def event_ids(self, station: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT event_id FROM events WHERE station = ? ORDER BY id", (station,)
            )
        ]

    def counts(self) -> dict[str, int]:
        one = self.conn.execute
        return {
            "stations": one("SELECT count(*) FROM stations").fetchone()[0],
            "events": one("SELECT count(*) FROM events").fetchone()[0],
            "open_faults": one("SELECT count(*) FROM faults WHERE state = 'open'").fetchone()[0],
            "rejected": one("SELECT count(*) FROM rejected").fetchone()[0],
            "broken_chains": one("SELECT count(*) FROM stations WHERE chain_ok = 0").fetchone()[0],
        }
