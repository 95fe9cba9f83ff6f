"""The catalog: the station's index of sessions, recordings, audit log and outbox.

SQLite through sqlite-utils, WAL, ``synchronous=FULL``. Migrations are registered
functions, each run in one transaction together with its record.

sqlite-utils commits inside its own helpers (``insert``, ``create``...), so every
write that must be atomic with others is plain SQL inside :meth:`Catalog.tx`; the
library serves the connection set-up, introspection and queries.

A catalog belongs to one store: both carry the same ``catalog_id`` (the store in
``store/.catalog-id``). A catalog that is new, missing or does not match its store
is never trusted to remove anything (invariant 1, and Frigate's lesson).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.errors import CatalogError
from sync import outbox, topics
from sync.chain import entry_hash  # one definition, shared with the central store

log = logging.getLogger(__name__)

GENESIS = "0" * 64
Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register a migration; they run in registration order, each exactly once."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    # one statement at a time: executescript() would COMMIT the migration's transaction
    run_script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            station_id TEXT NOT NULL,
            device_serial TEXT NOT NULL,
            officer_id TEXT,
            unit TEXT,
            profile TEXT NOT NULL,
            source TEXT NOT NULL,
            store_dir TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            state TEXT NOT NULL DEFAULT 'running',
            device_info TEXT,
            clock_offset_s REAL,
            files_seen INTEGER NOT NULL DEFAULT 0,
            files_stored INTEGER NOT NULL DEFAULT 0,
            bytes_stored INTEGER NOT NULL DEFAULT 0,
            problems INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE recordings (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            station_id TEXT NOT NULL,
            device_serial TEXT NOT NULL,
            officer_id TEXT,
            unit TEXT,
            profile TEXT NOT NULL,
            source_path TEXT NOT NULL,
            source_size INTEGER NOT NULL,
            source_mtime REAL,
            store_path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            sm3 TEXT,
            recorded_start TEXT,
            recorded_end TEXT,
            offloaded_at TEXT NOT NULL,
            age_hours REAL,
            late INTEGER NOT NULL DEFAULT 0,
            adopted INTEGER NOT NULL DEFAULT 0,
            audit_seq INTEGER NOT NULL,
            source_removed_at TEXT,
            hold INTEGER NOT NULL DEFAULT 0,
            upload_url TEXT,
            synced_at TEXT,
            receipt TEXT
        );
        CREATE INDEX recordings_identity
            ON recordings (device_serial, source_path, size, sha256);
        CREATE INDEX recordings_session ON recordings (session_id);
        CREATE INDEX recordings_sha256 ON recordings (sha256);
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            qos INTEGER NOT NULL DEFAULT 1,
            retain INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        """,
    )


@migration
def m002_faults_checks_bays(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE faults (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            severity TEXT NOT NULL DEFAULT 'error',
            detail TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            resolved_at TEXT,
            occurrences INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX faults_open ON faults (resolved_at);
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            session_id TEXT,
            device_serial TEXT NOT NULL,
            bay INTEGER,
            at TEXT NOT NULL,
            ready INTEGER NOT NULL,
            results TEXT NOT NULL,
            clock_offset_s REAL,
            clock_offset_after_s REAL
        );
        CREATE INDEX checks_device ON checks (device_serial, at);
        CREATE TABLE bays (
            bay INTEGER PRIMARY KEY,
            state TEXT NOT NULL,
            device_serial TEXT,
            profile TEXT,
            reason TEXT,
            session_id TEXT,
            progress_bytes INTEGER,
            progress_total INTEGER,
            detail TEXT,
            updated_at TEXT NOT NULL
        )
        """,
    )


@migration
def m003_removal_intent(conn: sqlite3.Connection) -> None:
    # a removal from a recorder is announced before the unlink and recorded after it
    conn.execute("ALTER TABLE recordings ADD COLUMN removal_intent_at TEXT")


def run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    kind: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class Catalog:
    """One connection to the catalog; use one Catalog per thread."""

    def __init__(self, path: Path, *, station_id: str, create: bool = True):
        self.path = path
        self.station_id = station_id
        existed = path.exists()
        if not existed and not create:
            raise CatalogError(f"{path}: catalog not found (the station has not run here yet?)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self.conn = conn
            self._lock = threading.RLock()
            self._migrate()
            if self._meta("catalog_id") is None:
                with self.tx():
                    self._set_meta("catalog_id", uuid.uuid4().hex)
                    self._set_meta("station_id", station_id)
                    self._set_meta("created_at", now_utc())
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"{path}: catalog unreadable ({exc}); restore it from a backup — "
                "nothing is removed from recorders meanwhile"
            ) from exc
        self.catalog_id: str = self._meta("catalog_id") or ""

    # -- transactions and migrations ------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE).

        An error of the caller's is re-raised as it is, after the rollback; an SQLite error
        (disk full, I/O error, locked for too long) becomes a :class:`CatalogError` naming the
        catalog, so every caller that handles the project's errors handles it too.
        """
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            try:
                yield self.conn
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from exc
                raise
            else:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> CatalogError:
        return CatalogError(
            f"{self.path}: catalog error ({exc}); nothing is removed from recorders until it "
            "is fixed (free space under the catalog, or restore it from a backup)"
        )

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
        done = {r[0] for r in self.conn.execute("SELECT name FROM migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.tx() as conn:
                fn(conn)
                conn.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, now_utc())
                )
            log.info("catalog %s: applied migration %s", self.path, name)

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def is_empty(self) -> bool:
        """No session was ever recorded in this catalog."""
        return self.conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0

    def close(self) -> None:
        self.conn.close()

    # -- audit log --------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def event_topic(self) -> str:
        return topics.event(self.station_id)

    def append_audit(self, kind: str, subject: str, data: dict[str, Any]) -> AuditEntry:
        """Append one hash-chained entry, and queue it for MQTT, in the open transaction."""
        if not self.conn.in_transaction:
            raise RuntimeError("append_audit must run inside Catalog.tx()")
        prev_seq, prev_hash = self.head()
        seq, at, text = prev_seq + 1, now_utc(), canonical(data)
        digest = entry_hash(prev_hash, seq, at, kind, subject, text)
        self.conn.execute(
            "INSERT INTO audit (seq, at, kind, subject, data, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, at, kind, subject, text, prev_hash, digest),
        )
        event_id = f"{self.station_id}:{self.catalog_id}:{seq}"
        outbox.enqueue(
            self.conn,
            self.event_topic(),
            {
                "event_id": event_id,
                "station": self.station_id,
                "seq": seq,
                "at": at,
                "kind": kind,
                "subject": subject,
                "data": data,
                "prev_hash": prev_hash,
                "hash": digest,
            },
            event_id=event_id,
        )
        return AuditEntry(seq, at, kind, subject, data, prev_hash, digest)

    def audit_entries(self) -> Iterator[AuditEntry]:
        for seq, at, kind, subject, data, prev_hash, digest in self.conn.execute(
            "SELECT seq, at, kind, subject, data, prev_hash, hash FROM audit ORDER BY seq"
        ):
            yield AuditEntry(seq, at, kind, subject, json.loads(data), prev_hash, digest)

    def check_audit_chain(self) -> list[str]:
        """Problems in the hash chain: altered, removed or reordered entries."""
        problems: list[str] = []
        expected_seq, prev = 1, GENESIS
        rows = self.conn.execute(
            "SELECT seq, at, kind, subject, data, prev_hash, hash FROM audit ORDER BY rowid"
        )
        for seq, at, kind, subject, data, prev_hash, digest in rows:
            if seq != expected_seq:
                problems.append(
                    f"audit log: entry {seq} found where entry {expected_seq} was expected "
                    "(an entry was removed or the log reordered)"
                )
            if prev_hash != prev:
                problems.append(
                    f"audit log: entry {seq} does not follow the entry before it "
                    "(removed, inserted or reordered entries)"
                )
            if entry_hash(prev_hash, seq, at, kind, subject, data) != digest:
                problems.append(f"audit log: entry {seq} ({kind} {subject}) was altered")
            expected_seq, prev = seq + 1, digest
        return problems

    # -- queries ----------------------------------------------------------------------

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        try:
            return list(self.db.query(sql, params))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def recordings(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM recordings ORDER BY id")

    def known_source(self, device_serial: str, source_path: str, size: int) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM recordings WHERE device_serial = ? AND source_path = ? AND size = ?",
            (device_serial, source_path, size),
        )


def open_catalog(home: Path, station_id: str, *, create: bool = True) -> Catalog:
    return Catalog(home / "catalog.db", station_id=station_id, create=create)
