"""The catalog: the station's index of sessions, recordings, audit log and outbox.

SQLite, WAL, ``synchronous=FULL``. Migrations are registered functions
(agent/catalog/migrations.py), each run in one transaction together with its record.

Every SQL statement of the station lives in this package, and every table has one owner
module: ``sessions``, ``recordings``, ``audit``, ``outbox``, ``faults``, ``checks``, ``bays``
(and ``meta`` here); ``crosscheck`` only reads across them, for `recdock verify`. Other
layers call their named functions (``audit.append(catalog, ...)``,
``recordings.pending_upload(catalog)``); tests/test_code_shape.py keeps it so. This module is
the core the owners build on, and imports none of them. A write that must be atomic with
others runs inside :meth:`Catalog.tx` (``BEGIN IMMEDIATE``): the owner modules' write
functions take the open connection and never commit (rule 3, docs/architecture.md).

A catalog belongs to one store: both carry the same ``catalog_id`` (the store in
``store/.catalog-id``). A catalog that is new, missing or does not match its store is never
trusted to remove anything (rule 1, and Frigate's lesson).

Queries use sqlite3 with a dict row factory. sqlite-utils serves introspection
(:attr:`Catalog.db`), imported only when asked for: its import costs more than `recdock status`
may spend in all (docs/performance.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog.migrations import MIGRATIONS
from agent.errors import CatalogError, CatalogFullError
from sync.wire.chain import canonical

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

__all__ = ["Catalog", "canonical", "catalog_path", "now_utc", "open_catalog"]


#: Below this much free space the catalog's disk counts as full: SQLite needs room for its
#: write-ahead log and its shared-memory index, and without it says "disk I/O error".
FULL_BELOW_BYTES = 4 * 1024 * 1024
#: SQLite's words for a file that is not a (sound) database: only then is a backup the cure.
DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


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
            raise catalog_error(path, exc, opening=True) from exc
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
        return catalog_error(self.path, exc, opening=False)

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
        return self.conn.execute("SELECT max(rowid) FROM sessions").fetchone()[0] is None

    def close(self) -> None:
        self.conn.close()

    # -- for the owner modules --------------------------------------------------------

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Rows as dicts; an SQLite error becomes a :class:`CatalogError`. Only the owner
        modules of agent/catalog/ call it: everything else calls their named functions."""
        try:
            cur = self.conn.cursor()
            cur.row_factory = _dict_row
            return cur.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def stream(
        self, sql: str, params: tuple[Any, ...] | list[Any] = (), *, batch: int = 256
    ) -> Iterator[dict[str, Any]]:
        """Rows as dicts, a batch at a time: constant memory whatever the result's size.

        The statement stays open (a read snapshot, which never blocks the daemon in WAL
        mode) until the rows run out or the iterator is closed."""
        try:
            cur = self.conn.cursor()
            cur.row_factory = _dict_row
            cur.execute(sql, params)
            while rows := cur.fetchmany(batch):
                yield from rows
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils on this connection, for introspection (tables, indexes, columns)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)


def free_bytes(folder: Path) -> int | None:
    """Free space in ``folder``'s file system for us (None: it cannot be read); a file system
    out of inodes has none either."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_files and not st.f_favail:
        return 0
    return st.f_bavail * st.f_frsize


def catalog_error(path: Path, exc: sqlite3.Error, *, opening: bool) -> CatalogError:
    """What an SQLite error means for the administrator: a full disk is named as such (the
    catalog is fine: restoring an older one would make the station refuse to offload or clear
    anything), a damaged file calls for its backup, anything else for a look at the disk."""
    free = free_bytes(path.parent)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL" or (free is not None and free < FULL_BELOW_BYTES):
        return CatalogFullError(
            f"{path}: the disk under the catalog is full ({free} bytes free in {path.parent}); "
            "the catalog is not damaged and nothing is lost. Free space on that disk (files "
            "that are not recdock's: logs, core dumps, copies left by hand; never store files), "
            "then carry on: recorders keep their recordings meanwhile"
        )
    if opening or name.startswith(DAMAGED):
        return CatalogError(
            f"{path}: catalog unreadable ({exc}); restore it from a backup — "
            "nothing is removed from recorders meanwhile"
        )
    return CatalogError(
        f"{path}: catalog error ({exc}); nothing is removed from recorders until it is fixed "
        "(look at the disk under it: `dmesg` shows I/O errors)"
    )


def catalog_path(home: Path) -> Path:
    """Where a station home keeps its catalog."""
    return home / "catalog.db"


def open_catalog(home: Path, station_id: str, *, create: bool = True) -> Catalog:
    return Catalog(catalog_path(home), station_id=station_id, create=create)
