"""The catalog's schema: migrations as registered functions, each run once, in order.

Each runs in one transaction together with its record in ``migrations``
(:meth:`agent.catalog.Catalog._migrate`). The schema is created here; every table's rows are
then read and written only by its owner module in agent/catalog/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register a migration; they run in registration order, each exactly once."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


#: The first schema: sessions, recordings, the audit log and the outbox.
SCHEMA_1 = """
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
        """


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    # one statement at a time: executescript() would COMMIT the migration's transaction
    run_script(conn, SCHEMA_1)


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


@migration
def m030_identity_conflicts(conn: sqlite3.Connection) -> None:
    # rule 8: a session whose recorder's USB descriptor, status file and register disagree
    run_script(
        conn,
        """
        CREATE TABLE identity_conflicts (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            device_serial TEXT NOT NULL,
            claimed_serial TEXT,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX identity_conflicts_session ON identity_conflicts (session_id)
        """,
    )


def run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


@migration
def m040_indexes_for_years(conn: sqlite3.Connection) -> None:
    """Every query the daemon, the uploader and the publisher run per docking or per pass
    searches an index, so none slows down as the catalog grows (tests/test_query_plans.py).

    Partial indexes hold only the rows a query looks for: the retained values queued in the
    outbox (superseded at every bay state, health, status and fault), the recordings not yet
    synced, removals announced and not recorded, sessions not ended, and the two audit kinds
    the uploader counts. Their size follows what is pending, not the station's history.
    ``outbox_size`` keeps the outbox's row count, kept by triggers, for `recdock status`
    (counting millions of queued rows took longer than the whole command may).
    """
    run_script(
        conn,
        """
        CREATE INDEX outbox_retained ON outbox (topic) WHERE retain = 1;
        CREATE INDEX recordings_unsynced
            ON recordings (hold DESC, late DESC, offloaded_at, id) WHERE synced_at IS NULL;
        CREATE INDEX recordings_removal_announced
            ON recordings (device_serial) WHERE removal_intent_at IS NOT NULL;
        CREATE INDEX sessions_unfinished ON sessions (started_at) WHERE ended_at IS NULL;
        CREATE INDEX checks_bay ON checks (bay, id);
        CREATE INDEX audit_upload_rejected
            ON audit (subject, seq) WHERE kind = 'file.upload_rejected';
        CREATE INDEX audit_fault_resolved ON audit (subject, seq) WHERE kind = 'fault.resolved';
        CREATE TABLE outbox_size (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL);
        INSERT INTO outbox_size (one, n) SELECT 1, count(*) FROM outbox
        """,
    )
    # a trigger's body has semicolons of its own: one statement each
    conn.execute(
        "CREATE TRIGGER outbox_size_insert AFTER INSERT ON outbox"
        " BEGIN UPDATE outbox_size SET n = n + 1; END"
    )
    conn.execute(
        "CREATE TRIGGER outbox_size_delete AFTER DELETE ON outbox"
        " BEGIN UPDATE outbox_size SET n = n - 1; END"
    )


@migration
def m041_outbox_refers_to_audit(conn: sqlite3.Connection) -> None:
    """An event waiting for the broker is a reference to its audit entry, not a copy of it:
    a station without a broker keeps each entry once (docs/mqtt.md). Rows queued before keep
    their payload and are sent as they are."""
    conn.execute("ALTER TABLE outbox ADD COLUMN audit_seq INTEGER")


@migration
def m050_fault_lifecycle(conn: sqlite3.Connection) -> None:
    """A fault's lifecycle (open, reported, acknowledged, resolved), who moved it and why, the
    evidence that tripped its rule, and since when its condition is gone (docs/faults.md)."""
    for column in (
        "state TEXT NOT NULL DEFAULT 'open'",
        "evidence TEXT",
        "reported_at TEXT",
        "acknowledged_at TEXT",
        "acknowledged_by TEXT",
        "resolved_by TEXT",
        "resolve_note TEXT",
        "gone_since TEXT",
    ):
        conn.execute(f"ALTER TABLE faults ADD COLUMN {column}")
    conn.execute("UPDATE faults SET state = 'resolved' WHERE resolved_at IS NOT NULL")


@migration
def m050_commands_applied(conn: sqlite3.Connection) -> None:
    # the centre's commands a station applied, by command_id: each is applied once
    conn.execute(
        "CREATE TABLE commands_applied (command_id TEXT PRIMARY KEY, topic TEXT NOT NULL,"
        " kind TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL, at TEXT NOT NULL)"
    )


@migration
def m050_recorder_history(conn: sqlite3.Connection) -> None:
    # per recorder and docking: what the trend rules compare (battery, clock offset, dock times)
    run_script(
        conn,
        """
        CREATE TABLE recorder_history (
            id INTEGER PRIMARY KEY,
            device_serial TEXT NOT NULL,
            session_id TEXT,
            docked_at TEXT NOT NULL,
            undocked_at TEXT,
            battery_pct REAL,
            device_clock TEXT,
            clock_offset_s REAL,
            clock_offset_after_s REAL
        );
        CREATE INDEX recorder_history_device ON recorder_history (device_serial, id);
        CREATE INDEX recorder_history_docked ON recorder_history (device_serial)
            WHERE undocked_at IS NULL
        """,
    )


@migration
def m050_central_register(conn: sqlite3.Connection) -> None:
    # the centre's register of recorders, as its signed commands set it
    conn.execute(
        "CREATE TABLE central_register (serial TEXT PRIMARY KEY, lifecycle TEXT NOT NULL,"
        " officer TEXT, unit TEXT, command_id TEXT NOT NULL, set_by TEXT, at TEXT NOT NULL)"
    )


@migration
def m060_recorder_readings(conn: sqlite3.Connection) -> None:
    # the battery read again while a recorder stays docked (its last reading kept with the
    # docking, every reading in battery_readings), and failed mounts counted across dockings
    run_script(
        conn,
        """
        ALTER TABLE recorder_history ADD COLUMN battery_last_pct REAL;
        ALTER TABLE recorder_history ADD COLUMN battery_last_at TEXT;
        CREATE TABLE battery_readings (
            id INTEGER PRIMARY KEY,
            history_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            battery_pct REAL,
            charging INTEGER
        );
        CREATE INDEX battery_readings_docking ON battery_readings (history_id, id);
        CREATE TABLE mount_failures (
            recorder TEXT PRIMARY KEY,
            identified_by TEXT NOT NULL,
            in_a_row INTEGER NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            events TEXT NOT NULL
        )
        """,
    )


@migration
def m061_holds(conn: sqlite3.Connection) -> None:
    # holds (rule clause 12): what keeps footage past its retention (agent/catalog/holds.py)
    run_script(
        conn,
        """
        CREATE TABLE holds (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            recording_id INTEGER,
            session_id TEXT,
            device_serial TEXT,
            officer_id TEXT,
            from_at TEXT,
            to_at TEXT,
            reason TEXT NOT NULL,
            reason_text TEXT,
            case_name TEXT,
            case_number TEXT,
            origin TEXT NOT NULL,
            placed_by TEXT,
            placed_at TEXT NOT NULL,
            command_id TEXT UNIQUE,
            released_at TEXT,
            released_by TEXT,
            release_reason TEXT
        );
        CREATE INDEX holds_case ON holds (case_number);
        CREATE INDEX holds_active ON holds (scope) WHERE released_at IS NULL
        """,
    )


@migration
def m062_access(conn: sqlite3.Connection) -> None:
    # approved access (rule clauses 13, 34, 35): who asks for which recordings, who decided,
    # until when (agent/catalog/access.py); and every export or refusal (access_log.py)
    run_script(
        conn,
        """
        CREATE TABLE access_requests (
            id TEXT PRIMARY KEY,
            requested_by TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            on_behalf_of TEXT,
            case_name TEXT,
            case_number TEXT,
            scope TEXT NOT NULL,
            hold_id TEXT,
            purpose TEXT NOT NULL,
            decision TEXT,
            decided_by TEXT,
            decided_at TEXT,
            valid_until TEXT,
            decision_note TEXT
        );
        CREATE INDEX access_requests_case ON access_requests (case_number);
        CREATE TABLE access_recordings (
            request_id TEXT NOT NULL REFERENCES access_requests(id),
            recording_id INTEGER NOT NULL,
            PRIMARY KEY (request_id, recording_id)
        ) WITHOUT ROWID;
        CREATE TABLE access_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            action TEXT NOT NULL,
            by TEXT NOT NULL,
            request_id TEXT,
            what TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT,
            audit_seq INTEGER NOT NULL
        );
        CREATE INDEX access_log_at ON access_log (at)
        """,
    )


@migration
def m064_purge(conn: sqlite3.Connection) -> None:
    # retention (docs/retention.md): a purged recording keeps its row, marked with who, why and
    # when; purge_intent_at stands while its file is being removed (set with purged_at, cleared
    # once the file is gone), so a pass killed half-way is finished by the next one
    run_script(
        conn,
        """
        ALTER TABLE recordings ADD COLUMN purged_at TEXT;
        ALTER TABLE recordings ADD COLUMN purged_by TEXT;
        ALTER TABLE recordings ADD COLUMN purge_reason TEXT;
        ALTER TABLE recordings ADD COLUMN purge_intent_at TEXT;
        CREATE INDEX recordings_purgeable ON recordings (offloaded_at, id)
            WHERE synced_at IS NOT NULL AND purged_at IS NULL;
        CREATE INDEX recordings_purge_unsettled ON recordings (id)
            WHERE purge_intent_at IS NOT NULL
        """,
    )
