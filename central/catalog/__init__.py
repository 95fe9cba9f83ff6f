"""The central store's catalog of what stations report over MQTT: SQLite (WAL; the embedded
default) or PostgreSQL, through one seam (:mod:`central.catalog.db`).

Every SQL statement of the central store lives in this package, and every table has one owner
module: ``stations`` (status, last seen, the latest health report, the head of each station's
audit chain and whether the chain holds), ``bays``, ``recorders`` (health), ``events``
(verified events, de-duplicated per station and seq, and the chain check), ``faults``,
``rejected`` (the last invalid messages, for diagnosis), ``alerts`` (``security_alerts``:
unsigned, forged or unenrolled messages, kept apart), ``conflicts`` (``chain_conflicts``: the
evidence of a broken chain), ``operator`` (``operator_actions``: re-baselines, people's
decisions on faults and the register), ``commands`` (the centre's commands to stations: an
outbox), ``devices`` (each recorder's latest report, whichever station sent it), ``history``
(``recorder_history``: every report, for trends), ``register`` (the recorder register kept
at the centre), ``holds`` (every station's holds, and those placed at the centre), ``access``
(``access_requests`` and ``access_objects``: approved access at the centre) and
``access_log``; ``leases`` (which worker of a group does a one-at-a-time job: publishing
commands). ``report`` owns no table: it reads across them for the compliance report and
writes none. The upload receipts and failures are kept by ``receipts``, which opens a
connection per call, and beside them ``uploads`` (the unfinished uploads' records and leases):
on SQLite in their own database file (``receipts.sqlite`` in the upload store's data folder),
on PostgreSQL in the catalog's database. ``db`` is the seam to the database and ``paging`` a
page's SQL; they own no table. Other modules call :class:`CentralCatalog` and the owner
modules' named functions; tests/test_code_shape.py keeps it so.

This module keeps the core: one connection per thread (``threading.local``), closed once its
thread has ended (the API's worker threads come and go); the tables created on opening, and the
columns added since a table was first made (each owner's ``COLUMNS``: additive only), under a
lock on PostgreSQL (several workers may open it at once); the schema's version in
``schema_version`` (:data:`MIGRATIONS`: each runs once, in the transaction that records it);
writes in short transactions (``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` at READ COMMITTED on
PostgreSQL), which the owner modules' write functions join and never commit; and a savepoint
for one message inside a batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from central.catalog import (
    access,
    access_log,
    alerts,
    bays,
    commands,
    conflicts,
    db,
    devices,
    events,
    faults,
    history,
    holds,
    leases,
    operator,
    recorders,
    register,
    rejected,
    report,
    stations,
)
from central.catalog.chains import Chains

__all__ = ["CentralCatalog", "now_utc"]

logger = logging.getLogger(__name__)

# in the order their tables are created
TABLES = (
    stations,
    bays,
    recorders,
    events,
    faults,
    rejected,
    alerts,
    conflicts,
    operator,
    commands,
    devices,
    history,
    register,
    holds,
    access,
    access_log,
    leases,
)


def _add_index(conn: Any, statement: str) -> None:
    """Make an index; a unique one that the rows of an older version break is left out, said
    in the log, and the centre goes on (the checks above it still hold on SQLite)."""
    conn.execute("SAVEPOINT add_index")
    try:
        conn.execute(statement)
    except db.integrity_errors(conn) as exc:
        conn.execute("ROLLBACK TO add_index")
        logger.warning("catalog: index not made (%s): %s", exc, statement)
    conn.execute("RELEASE add_index")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


SCHEMA_VERSION = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    applied_at TEXT NOT NULL,
    note TEXT NOT NULL
)"""

#: The schema's versions, in order, each run once (in the transaction that records it) on a
#: catalog that has not had it: (version, what it does, the function that does it). Version 1
#: is the schema as the owner modules declare it, which every opening also makes sure of (its
#: statements only add what is missing), so a catalog made before versions were kept gets it.
MIGRATIONS: list[tuple[int, str, Callable[[Any], None]]] = [
    (1, "the tables, columns and indexes of the owner modules", lambda conn: None),
]


class CentralCatalog:
    """The central catalog (SQLite or PostgreSQL: ``database`` is a path or a URL,
    :func:`central.catalog.db.parse`); safe to share between threads (a connection each)."""

    def __init__(self, database: str | os.PathLike[str] | db.Database) -> None:
        self.database = db.parse(database)
        self.dialect = self.database.dialect
        #: the errors that mean the catalog cannot store anything now (retry later)
        self.unavailable = db.unavailable_errors(self.database)
        if self.database.path is not None:
            self.database.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: dict[threading.Thread, Any] = {}
        self._conns_lock = threading.Lock()
        with self.tx() as conn:
            conn.execute(self.dialect.schema_lock)
            _create(conn)
            _migrate(conn)

    @property
    def conn(self) -> Any:
        """This thread's connection (``sqlite3.Connection``, or the PostgreSQL one with the
        same face: :mod:`central.catalog.db`)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = db.connect(self.database)
            self._local.conn = conn
            with self._conns_lock:
                # a thread that ended cannot use its connection again: close it here
                for thread in [t for t in self._conns if not t.is_alive()]:
                    self._conns.pop(thread).close()
                self._conns[threading.current_thread()] = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[Any]:
        """A write transaction; nested calls join the open one (the consumer commits a batch
        of messages at once and acknowledges them only after the commit)."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        with db.transaction(conn):
            self._local.chains = chains = Chains()
            try:
                yield conn
                chains.write(conn)  # the chains its events moved, once a station
            finally:
                self._local.chains = None

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """One message inside the open transaction: when the block raises an ``Exception``,
        what it wrote is undone and the error goes on; the transaction stays open."""
        conn = self.conn
        chains: Chains | None = getattr(self._local, "chains", None)
        conn.execute("SAVEPOINT message")
        if chains is not None:
            chains.mark()
        try:
            yield conn
        except Exception:
            conn.execute("ROLLBACK TO message")
            conn.execute("RELEASE message")
            if chains is not None:
                chains.undo()
            raise
        conn.execute("RELEASE message")
        if chains is not None:
            chains.keep()

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # -- writes (the MQTT consumer) ------------------------------------------------------

    def record_status(
        self, station: str, doc: dict[str, Any] | None, *, live: bool, received_at: str
    ) -> None:
        """The retained station status; ``live`` is False for a retained value replayed on
        subscribing (it says nothing about when the station was last heard)."""
        with self.tx() as conn:
            stations.ensure(conn, station)
            stations.record_status(conn, station, doc, live=live, received_at=received_at)

    def record_health(
        self, station: str, doc: dict[str, Any], *, live: bool, received_at: str
    ) -> None:
        """The station's signed health report (``live`` as for the status)."""
        with self.tx() as conn:
            stations.ensure(conn, station)
            stations.record_health(conn, station, doc, live=live, received_at=received_at)

    def record_bay(
        self, station: str, bay: int, doc: dict[str, Any] | None, *, received_at: str
    ) -> None:
        with self.tx() as conn:
            stations.ensure(conn, station)
            bays.record(conn, station, bay, doc, received_at)

    def record_recorder(self, station: str, doc: dict[str, Any], *, received_at: str) -> None:
        with self.tx() as conn:
            stations.ensure(conn, station)
            recorders.record(conn, station, doc, received_at)
            devices.record(conn, station, doc, received_at)
            history.record(conn, station, doc)

    def record_fault(self, station: str, fault_id: str, doc: dict[str, Any]) -> None:
        """A fault's signed retained payload: attached to the fault, its state unchanged."""
        with self.tx() as conn:
            stations.ensure(conn, station)
            faults.attach(conn, station, fault_id, doc)

    def hold_stations(self, names: list[str]) -> None:
        """Inside the caller's transaction: hold these stations' rows, in name order
        (:func:`stations.hold_rows`)."""
        stations.hold_rows(self.conn, names)

    def record_event(self, doc: dict[str, Any], *, received_at: str) -> str:
        """Store one verified audit event and check the chain; returns ``stored``,
        ``duplicate`` or ``conflict``."""
        with self.tx() as conn:
            return events.record(
                conn, doc, received_at=received_at, chains=getattr(self._local, "chains", None)
            )

    def record_rejected(self, topic: str, reason: str, payload: bytes) -> None:
        with self.tx() as conn:
            rejected.record(conn, topic, reason, payload, now_utc())

    def record_alert(self, station: str, topic: str, reason: str, payload: bytes) -> None:
        with self.tx() as conn:
            alerts.record(conn, station, topic, reason, payload, now_utc())

    def rebaseline(
        self, station: str, *, operator_name: str, reason: str, base: tuple[int, str]
    ) -> int:
        """Start the station's chain anew from ``base``; audited. KeyError: no such station."""
        with self.tx() as conn:
            return events.rebaseline(
                conn, station, operator_name=operator_name, reason=reason, base=base, at=now_utc()
            )

    # -- reads (the JSON API) ------------------------------------------------------------

    def missing_ranges(self, station: str, limit: int = 20) -> list[tuple[int, int]]:
        """Seq ranges not received between the complete head and the highest seq seen."""
        return events.missing_ranges(self.conn, station, limit)

    def station_view(self, row: dict[str, Any]) -> dict[str, Any]:
        name = row["station"]
        counts = {
            "security_alerts": alerts.count(self.conn, name),
            "conflicts": conflicts.count(self.conn, name),
        }
        return stations.view(row, self.missing_ranges(name), counts)

    def chain(self, station: str) -> dict[str, Any] | None:
        """The head of the station's chain the centre holds, with its re-baselines."""
        view = self.station(station)
        if view is None:
            return None
        return {
            "station": station,
            **view["chain"],
            "rebaselines": operator.listing(self.conn, station, "rebaseline"),
        }

    def alerts(
        self, station: str | None = None, limit: int | None = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        return alerts.listing(self.conn, station, limit, offset)

    def stations(self, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        rows = stations.rows(self.conn, limit=limit, offset=offset)
        return [self.station_view(r) for r in rows]

    def station(self, station: str) -> dict[str, Any] | None:
        row = stations.row(self.conn, station)
        return self.station_view(row) if row else None

    def bays(self, station: str) -> list[dict[str, Any]]:
        return bays.listing(self.conn, station)

    def recorders(
        self, station: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        return recorders.listing(self.conn, station, limit=limit, offset=offset)

    def newest_recorders(self, **filters: Any) -> list[dict[str, Any]]:
        """Each recorder's newest report (:func:`central.catalog.recorders.newest`:
        ``station``, ``unit``, ``serial``, ``limit``, ``offset``)."""
        return recorders.newest(self.conn, **filters)

    def recorder_choices(self) -> tuple[list[str], list[str]]:
        """The stations and units the recorders' newest reports name."""
        return recorders.newest_choices(self.conn)

    def total(self, listing: str, **filters: Any) -> int:
        """How many rows the named list holds with these filters (its pages' total):
        ``stations``, ``recorders``, ``newest_recorders``, ``faults``, ``events``, ``alerts``."""
        conn = self.conn
        counters = {
            "stations": lambda: stations.count(conn),
            "recorders": lambda: recorders.count(conn, **filters),
            "newest_recorders": lambda: recorders.newest_count(conn, **filters),
            "faults": lambda: faults.count(conn, **filters),
            "events": lambda: events.count(conn, **filters),
            "alerts": lambda: alerts.count(conn, **filters),
        }
        return counters[listing]()

    def faults(
        self, *, include_resolved: bool = False, now: datetime | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Faults oldest first (:func:`central.catalog.faults.listing`: ``station``,
        ``device``, ``subject``, ``amber_hours``)."""
        return faults.listing(self.conn, include_resolved=include_resolved, now=now, **filters)

    def fault(
        self, station: str, fault_id: str, *, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """One fault of a station, open or resolved (:func:`central.catalog.faults.one`)."""
        return faults.one(self.conn, station, fault_id, now)

    def events(
        self,
        station: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        *,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        return events.listing(self.conn, station, limit, offset, kind=kind)

    def subject_events(self, subject: str, kind: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events of ``kind`` about ``subject``, oldest first."""
        return events.of_subject(self.conn, subject, kind, limit)

    def event_ids(self, station: str) -> list[str]:
        return events.event_ids(self.conn, station)

    def counts(self) -> dict[str, int]:
        conn = self.conn
        return {
            "stations": stations.count(conn),
            "events": events.count(conn),
            "open_faults": faults.open_count(conn),
            "rejected": rejected.count(conn),
            "security_alerts": alerts.count(conn),
            "broken_chains": stations.broken_count(conn),
        }


def _create(conn: Any) -> None:
    """Every owner's tables, the columns added since, and their indexes (only what is
    missing)."""
    for table in TABLES:
        for statement in table.SCHEMA:
            conn.execute(db.ddl(statement, conn.dialect))
        for name, column, declaration in getattr(table, "COLUMNS", ()):
            _add_column(conn, name, column, declaration)
        for statement in getattr(table, "INDEXES", ()):
            _add_index(conn, statement)
    if conn.dialect is db.POSTGRESQL:
        for statement in report.POSTGRESQL_FUNCTIONS:  # SQLite's datetime and julianday
            conn.execute(statement)
    conn.execute(db.ddl(SCHEMA_VERSION, conn.dialect))


def _migrate(conn: Any) -> None:
    """Run the migrations this catalog has not had, each recorded with it."""
    done = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
    for version, note, step in MIGRATIONS:
        if version in done:
            continue
        step(conn)
        conn.execute(
            "INSERT INTO schema_version (version, applied_at, note) VALUES (?, ?, ?)",
            (version, now_utc(), note),
        )
        logger.info("central catalog: schema version %d: %s", version, note)


def _add_column(conn: Any, table: str, column: str, declaration: str) -> None:
    """Add ``column`` to ``table`` unless it is there (the schema only grows)."""
    if column not in db.columns(conn, table):
        conn.execute(db.ddl(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}", conn.dialect))
