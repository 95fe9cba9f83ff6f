"""What `recdock verify` reads across the tables, and its own scratch database.

Verify cross-checks the audit log against the sessions' and recordings' own columns: every
row against the entry that recorded it, every entry against the row it recorded. It reads
``sessions``, ``recordings`` and ``audit`` (whose owners write them) and never writes them.

At a million recordings nothing of that fits in memory, so the facts verify needs from the
audit log (which sessions started and ended, which files were stored and removed from their
recorders) go into a scratch database, ``<home>/run/verify.db``, attached to the catalog's
connection as ``verifyrun``, and SQLite joins them on disk. The scratch database also keeps
what a running check found and how far it got, so an interrupted full check resumes there.
It is verify's own: the station never reads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: The audit kinds whose facts verify cross-checks, and the key each is found by.
FACT_KINDS = (
    "session.start",
    "session.end",
    "file.stored",
    "file.recovered",
    "file.removed_from_recorder",
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verifyrun.state (key TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS verifyrun.findings (id INTEGER PRIMARY KEY, phase TEXT NOT NULL,"
    " pos INTEGER NOT NULL, level TEXT NOT NULL, text TEXT NOT NULL)",
)


# -- the scratch database ----------------------------------------------------------------------


def attach(catalog: Catalog, path: Path) -> None:
    """Attach the scratch database (created if missing) to the catalog's connection."""
    conn = catalog.conn
    conn.execute("ATTACH DATABASE ? AS verifyrun", (str(path),))
    conn.execute("PRAGMA verifyrun.auto_vacuum=FULL")  # a new file: dropped facts give room back
    conn.execute("PRAGMA verifyrun.journal_mode=WAL")
    conn.execute("PRAGMA verifyrun.synchronous=NORMAL")
    for statement in _SCHEMA:
        conn.execute(statement)


def detach(catalog: Catalog) -> None:
    """Detach the scratch database, its facts dropped and its log emptied: what stays is
    what the check found and where it got (at a million recordings the facts take some
    600 MB while the check runs)."""
    conn = catalog.conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("DROP TABLE IF EXISTS verifyrun.facts")
    conn.execute("DROP TABLE IF EXISTS verifyrun.scope")
    conn.execute("PRAGMA verifyrun.wal_checkpoint(TRUNCATE)")
    conn.execute("DETACH DATABASE verifyrun")


@contextmanager
def snapshot(catalog: Catalog) -> Iterator[None]:
    """One read snapshot of the catalog (WAL: the daemon goes on writing meanwhile); what is
    written in it goes to the scratch database only."""
    conn = catalog.conn
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_state(catalog: Catalog) -> dict[str, Any]:
    return dict(catalog.conn.execute("SELECT key, value FROM verifyrun.state").fetchall())


def set_state(catalog: Catalog, **values: Any) -> None:
    """Keep values of the running check (one statement: atomic on its own)."""
    catalog.conn.executemany(
        "INSERT INTO verifyrun.state (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def clear_run(catalog: Catalog) -> None:
    """Forget an earlier check: its state and what it found."""
    with _scratch_tx(catalog) as conn:
        conn.execute("DELETE FROM verifyrun.state")
        conn.execute("DELETE FROM verifyrun.findings")


@contextmanager
def _scratch_tx(catalog: Catalog) -> Iterator[sqlite3.Connection]:
    conn = catalog.conn
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def add_finding(catalog: Catalog, phase: str, pos: int, level: str, text: str) -> None:
    """One finding of ``phase``; ``pos``: where the check was (a session's rowid)."""
    catalog.conn.execute(
        "INSERT INTO verifyrun.findings (phase, pos, level, text) VALUES (?, ?, ?, ?)",
        (phase, pos, level, text),
    )


def drop_findings(catalog: Catalog, phases: tuple[str, ...], *, after: int = -1) -> None:
    """Forget what ``phases`` found past position ``after`` (they are checked again)."""
    marks = ",".join("?" * len(phases))
    catalog.conn.execute(
        f"DELETE FROM verifyrun.findings WHERE phase IN ({marks}) AND pos > ?", (*phases, after)
    )


def findings(catalog: Catalog, phases: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """``(level, text)`` of what the check found in ``phases``, in the order found."""
    marks = ",".join("?" * len(phases))
    for row in catalog.stream(
        f"SELECT level, text FROM verifyrun.findings WHERE phase IN ({marks}) ORDER BY id",
        phases,
    ):
        yield row["level"], row["text"]


def read_findings(path: Path) -> Iterator[tuple[str, str]]:
    """``(level, text)`` of everything the last check found, from its scratch database."""
    conn = sqlite3.connect(path)
    try:
        yield from conn.execute("SELECT level, text FROM findings ORDER BY id")
    finally:
        conn.close()


# -- what the audit log says, as facts on disk ----------------------------------------------


def collect_facts(catalog: Catalog) -> None:
    """The audit log's sessions and files, keyed for joining (inside :func:`snapshot`).

    A removal's key is the store path in its data; the others' is their subject. An entry
    whose data is not JSON (altered: the chain says so) gives no key.
    """
    conn = catalog.conn
    conn.execute("DROP TABLE IF EXISTS verifyrun.facts")
    conn.execute(
        "CREATE TABLE verifyrun.facts (kind TEXT NOT NULL, key TEXT, session_id TEXT,"
        " seq INTEGER NOT NULL)"
    )
    marks = ",".join("?" * len(FACT_KINDS))
    conn.execute(
        "INSERT INTO verifyrun.facts (kind, key, session_id, seq)"
        " SELECT kind,"
        "  CASE WHEN kind = 'file.removed_from_recorder'"
        "   THEN CASE WHEN json_valid(data) THEN json_extract(data, '$.store_path') END"
        "   ELSE subject END,"
        "  CASE WHEN kind IN ('session.start', 'session.end') THEN subject"
        "   WHEN json_valid(data) THEN json_extract(data, '$.session_id') END,"
        "  seq"
        f" FROM main.audit WHERE kind IN ({marks})",
        FACT_KINDS,
    )
    conn.execute("CREATE INDEX verifyrun.facts_key ON facts (key, kind)")
    conn.execute("CREATE INDEX verifyrun.facts_session ON facts (session_id, kind)")


def choose_sessions(
    catalog: Catalog,
    *,
    session: str | None = None,
    device: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> int:
    """The sessions a partial check covers (``since``/``until``: UTC, as SQLite's datetime()
    writes it); returns how many."""
    conn = catalog.conn
    conn.execute("DROP TABLE IF EXISTS verifyrun.scope")
    conn.execute("CREATE TABLE verifyrun.scope (id TEXT PRIMARY KEY)")
    terms, params = ["1"], []
    for term, value in (
        ("id = ?", session),
        ("device_serial = ?", device),
        ("datetime(started_at) >= ?", since),
        ("datetime(started_at) < ?", until),
    ):
        if value is not None:
            terms.append(term)
            params.append(value)
    cur = conn.execute(
        "INSERT INTO verifyrun.scope (id) SELECT id FROM main.sessions WHERE "
        + " AND ".join(terms),
        params,
    )
    return cur.rowcount


def _in_scope(column: str, scoped: bool) -> str:
    return f" AND {column} IN (SELECT id FROM verifyrun.scope)" if scoped else ""


# -- the cross-checks (inside :func:`snapshot`; each streams what disagrees) ----------------


def recordings_and_their_entries(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """Each recording with the entry its ``audit_seq`` points at (``kind`` None: missing)."""
    return catalog.stream(
        "SELECT r.store_path, r.sha256, r.audit_seq, a.kind, a.subject,"
        " CASE WHEN json_valid(a.data) THEN json_extract(a.data, '$.sha256') END AS entry_sha256"
        " FROM main.recordings r LEFT JOIN main.audit a ON a.seq = r.audit_seq"
        " WHERE (a.seq IS NULL OR a.kind NOT IN ('file.stored', 'file.recovered')"
        "  OR a.subject IS NOT r.store_path OR entry_sha256 IS NOT r.sha256)"
        + _in_scope("r.session_id", scoped)
        + " ORDER BY r.id"
    )


def entries_without_recordings(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """``file.stored``/``file.recovered`` entries whose recording row is gone."""
    return catalog.stream(
        "SELECT f.kind, f.key, f.seq FROM verifyrun.facts f"
        " WHERE f.kind IN ('file.stored', 'file.recovered')"
        " AND NOT EXISTS (SELECT 1 FROM main.recordings r WHERE r.store_path = f.key)"
        + _in_scope("f.session_id", scoped)
        + " ORDER BY f.seq"
    )


def sessions_and_their_entries(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """Sessions whose start or end the audit log does not record as the row says."""
    return catalog.stream(
        "SELECT s.id, s.ended_at, st.seq AS start_seq, en.seq AS end_seq"
        " FROM main.sessions s"
        " LEFT JOIN verifyrun.facts st ON st.key = s.id AND st.kind = 'session.start'"
        " LEFT JOIN verifyrun.facts en ON en.key = s.id AND en.kind = 'session.end'"
        " WHERE (st.seq IS NULL OR (s.ended_at IS NULL) != (en.seq IS NULL))"
        + _in_scope("s.id", scoped)
        + " ORDER BY s.rowid"
    )


def entries_without_sessions(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """``session.start``/``session.end`` entries of sessions the catalog has no row for."""
    scope = " AND f.key IN (SELECT id FROM verifyrun.scope)" if scoped else ""
    return catalog.stream(
        "SELECT f.kind, f.key, f.seq FROM verifyrun.facts f"
        " WHERE f.kind IN ('session.start', 'session.end')"
        " AND NOT EXISTS (SELECT 1 FROM main.sessions s WHERE s.id = f.key)"
        + scope
        + " ORDER BY f.seq"
    )


def removals_and_their_entries(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """Recordings whose removal from the recorder the audit log does not record as the row
    says: removed without an entry, or an entry for a row that says not removed."""
    return catalog.stream(
        "SELECT r.store_path, r.source_removed_at,"
        " (SELECT min(f.seq) FROM verifyrun.facts f"
        "  WHERE f.key = r.store_path AND f.kind = 'file.removed_from_recorder') AS removal_seq"
        " FROM main.recordings r"
        " WHERE (r.source_removed_at IS NULL) = (removal_seq IS NOT NULL)"
        + _in_scope("r.session_id", scoped)
        + " ORDER BY r.id"
    )


def recordings_of_unknown_sessions(catalog: Catalog, scoped: bool) -> Iterator[dict[str, Any]]:
    """Session ids recordings point at that the catalog has no session row for."""
    scope = " AND r.session_id IN (SELECT id FROM verifyrun.scope)" if scoped else ""
    return catalog.stream(
        "SELECT DISTINCT r.session_id FROM main.recordings r"
        " WHERE NOT EXISTS (SELECT 1 FROM main.sessions s WHERE s.id = r.session_id)" + scope
    )


# -- the store walk, a session at a time ---------------------------------------------------


def sessions_after(
    catalog: Catalog, rowid: int, scoped: bool, limit: int = 100
) -> list[dict[str, Any]]:
    """The next sessions to check, in the order they were opened (``rid``: their rowid)."""
    return catalog.query(
        "SELECT rowid AS rid, * FROM main.sessions WHERE rowid > ?"
        + _in_scope("id", scoped)
        + " ORDER BY rowid LIMIT ?",
        (rowid, limit),
    )


def recordings_of(catalog: Catalog, session_id: str) -> Iterator[dict[str, Any]]:
    """A session's recordings, in the order they were stored."""
    return catalog.stream(
        "SELECT id, store_path, size, sha256, purged_at, purge_intent_at FROM main.recordings"
        " WHERE session_id = ? ORDER BY id",
        (session_id,),
    )


def totals(catalog: Catalog, scoped: bool) -> tuple[int, int]:
    """Files and bytes the sessions to check hold (from the sessions' own counters)."""
    row = catalog.conn.execute(
        "SELECT coalesce(sum(files_stored), 0), coalesce(sum(bytes_stored), 0)"
        " FROM main.sessions WHERE 1" + _in_scope("id", scoped)
    ).fetchone()
    return int(row[0]), int(row[1])
