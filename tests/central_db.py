"""Test helpers for the centre's catalog on either database (the ``central_db`` fixture,
tests/conftest.py): a catalog that cannot write for a while, one whose writes fail now, and
how many connections a catalog holds open."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from central.catalog import CentralCatalog

# every table a message's first write touches
_WRITTEN = "stations, events, faults, rejected, security_alerts"


def is_postgresql(catalog: CentralCatalog) -> bool:
    return catalog.dialect.name == "postgresql"


class writes_blocked:  # noqa: N801 - used as a context manager, like contextlib's
    """Another connection holds the catalog's write lock until :meth:`release` (or the end of
    the ``with`` block): the catalog's writers wait (SQLite's ``BEGIN IMMEDIATE``, for its
    busy timeout; PostgreSQL's ``LOCK TABLE``, for as long as it is held)."""

    def __init__(self, catalog: CentralCatalog) -> None:
        if is_postgresql(catalog):
            import psycopg

            self._conn = psycopg.connect(str(catalog.database.url), autocommit=True)
            self._conn.execute("BEGIN")
            self._conn.execute(f"LOCK TABLE {_WRITTEN} IN EXCLUSIVE MODE")
        else:
            path = str(catalog.database.path)
            self._conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            self._conn.execute("BEGIN IMMEDIATE")
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._conn.execute("ROLLBACK")
            self._conn.close()

    def __enter__(self) -> writes_blocked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def writes_fail(catalog: CentralCatalog) -> Iterator[None]:
    """This thread's writes to the catalog fail at once while the block runs, as a full disk
    or a lock held too long make them: SQLite's "database or disk is full" (the file capped
    with ``max_page_count``), PostgreSQL's lock timeout."""
    conn = catalog.conn
    if is_postgresql(catalog):
        conn.execute("SET lock_timeout = '100ms'")
        try:
            with writes_blocked(catalog):
                yield
        finally:
            conn.execute("SET lock_timeout = 0")
        return
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        yield
    finally:
        conn.execute("PRAGMA max_page_count = 1073741823")


def open_connections(catalog: CentralCatalog) -> int:
    """How many connections to the catalog's database are open (this process's, for SQLite:
    its open file descriptors on the file; every client's, for PostgreSQL)."""
    if is_postgresql(catalog):
        import psycopg

        with psycopg.connect(str(catalog.database.url), autocommit=True) as admin:
            return admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid != pg_backend_pid()"
            ).fetchone()[0]
    db = os.path.realpath(str(catalog.database.path))
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == db)
