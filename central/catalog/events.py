"""The events and each station's audit chain (table ``events``; the chain columns of
``stations`` through :mod:`central.catalog.stations`).

Only events the consumer has verified reach :func:`record`: signed with the station's enrolled
key over their chain hash, and the hash recomputed from the content (sync/wire/signing.py).
Anything else is a security alert (:mod:`central.catalog.alerts`) and never comes here, so
nothing a forger sends can take an event's place, move the head or break the chain. An event
is held once per station, chain epoch and seq:

* the same seq with the same hash again (a replay from the station's outbox, a redelivery,
  whatever its ``event_id``) is a **duplicate**;
* a **gap** (``seq`` jumps ahead) is not an error: events may arrive out of order or late. The
  station's ``chain_seq``/``chain_hash`` is the head of the part complete from the baseline
  (seq 0 and the genesis hash, or an operator's re-baseline); ``chain_max_seq`` the highest
  seen. The gap closes when the missing events arrive;
* the chain is **broken** only when two events the station validly signed disagree: a second
  event at a seq already held with another hash (kept as evidence in
  :mod:`central.catalog.conflicts`), or an event whose ``prev_hash`` is not the hash of the
  event (or baseline) before it. It stays broken until an operator re-baselines it
  (:func:`rebaseline`, audited in :mod:`central.catalog.operator`).

After a re-baseline the station's events are held in a new ``epoch``; their ``event_id`` is
stored with the suffix ``@<epoch>`` so it never meets the id of an earlier epoch's event.
Fault openings and resolutions in the stream also update :mod:`central.catalog.faults`: they
are the only way a fault's state changes; holds placed and released update
:mod:`central.catalog.holds`.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from central.catalog import commands, conflicts, faults, holds, operator, paging, stations
from central.catalog.chains import Chains
from central.catalog.db import Connection, Dialect
from sync.wire.chain import canonical

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
    # a recorder's history on the dashboard (of_subject)
    "CREATE INDEX IF NOT EXISTS events_subject_kind ON events (subject, kind, at)",
]

# columns added since the table was first created (central/catalog/__init__.py adds them)
COLUMNS = [("events", "epoch", "INTEGER NOT NULL DEFAULT 0")]

# one event per station, epoch and seq, whichever worker stores it (an older version's catalog
# may hold two at a seq: then the index is not made, and the centre says so at start)
INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS events_station_epoch_seq ON events (station, epoch, seq)"
]

# -- writes (the MQTT consumer) --------------------------------------------------------------


def record(
    conn: Connection, doc: dict[str, Any], *, received_at: str, chains: Chains | None = None
) -> str:
    """Store one verified audit event and check the chain; returns ``stored``, ``duplicate``
    or ``conflict``. The station's chain state comes from ``chains``, the transaction's
    (:mod:`central.catalog.chains`: its row read and held at the station's first event, moved
    in memory, written once before the commit); without it, from a view of this one event,
    written at once. An event that extends the complete head (the usual case: a station's
    events in order) then costs its insert alone. Only an event at or below the highest seq
    held (``chain_max_seq``, which every stored event raises and a re-baseline sets to its
    base) is looked for among the stored ones, with the event after it. The unique index on
    (station, epoch, seq) refuses a second row at a seq whatever happens above."""
    own = chains is None
    chains = Chains() if chains is None else chains
    station, seq = doc["station"], int(doc["seq"])
    chain = chains.of(conn, station)  # other workers wait: the chain is checked once
    epoch, base = chain.epoch, chain.base
    beyond = seq > chain.max_seq  # nothing is held at seq or after it in this epoch
    held = None if beyond else _held(conn, station, epoch, seq)
    if seq <= base[0] or (held is not None and held["hash"] == doc["hash"]):
        stations.count_duplicate(conn, station)
        return "duplicate"
    if held is not None:
        stations.seen(conn, station, received_at)
        conflicts.record(conn, epoch, doc, received_at)
        _broken(
            conn,
            station,
            f"seq {seq} arrived twice, validly signed, with different content "
            f"({held['event_id']} and {doc['event_id']}): the station's audit log was "
            "rewritten or replaced",
            received_at,
        )
        return "conflict"
    _insert(conn, doc, epoch, received_at)
    after = None if beyond else _at(conn, station, epoch, seq + 1)
    problem = _unlinked(conn, doc, epoch, base, chain.head, after)
    moved = None
    if problem:
        _broken(conn, station, problem, received_at)
    else:
        moved = _advance(conn, station, epoch, chain.head, doc, after)
    chain.stored_event(seq, received_at, moved)
    _fault_event(conn, station, doc, received_at)
    holds.from_event(conn, station, doc)
    if own:
        chains.write(conn)
    return "stored"


def _held(conn: Connection, station: str, epoch: int, seq: int) -> Any | None:
    return conn.execute(
        "SELECT event_id, hash FROM events WHERE station = ? AND epoch = ? AND seq = ?"
        " ORDER BY id LIMIT 1",
        (station, epoch, seq),
    ).fetchone()


def _at(conn: Connection, station: str, epoch: int, seq: int) -> Any | None:
    """The event held at ``seq`` (its id and both hashes), or None."""
    return conn.execute(
        "SELECT event_id, prev_hash, hash FROM events WHERE station = ? AND epoch = ?"
        " AND seq = ? ORDER BY id LIMIT 1",
        (station, epoch, seq),
    ).fetchone()


def _insert(conn: Connection, doc: dict[str, Any], epoch: int, received_at: str) -> None:
    event_id = doc["event_id"] if epoch == 0 else f"{doc['event_id']}@{epoch}"
    conn.execute(
        "INSERT INTO events (event_id, station, seq, kind, subject, data, at, prev_hash, hash,"
        " hash_ok, received_at, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
        (
            event_id,
            doc["station"],
            int(doc["seq"]),
            doc["kind"],
            doc["subject"],
            canonical(doc["data"]),
            doc["at"],
            doc["prev_hash"],
            doc["hash"],
            received_at,
            epoch,
        ),
    )


def _unlinked(
    conn: Connection,
    doc: dict[str, Any],
    epoch: int,
    base: tuple[int, str],
    head: tuple[int, str],
    after: Any | None,
) -> str | None:
    """Why the event does not link to its stored neighbours (the baseline or the event before
    it; ``after``, the event held after it), or None. The complete ``head`` is the hash of the
    event at its seq, so an event that follows it needs no read of the one before."""
    station, seq, digest = doc["station"], int(doc["seq"]), doc["hash"]
    if seq - 1 == base[0]:
        before = (f"the baseline (seq {base[0]})", base[1])
    elif seq - 1 == head[0] and head[1] == doc["prev_hash"]:
        before = None  # it follows the complete head
    else:
        found = _held(conn, station, epoch, seq - 1)
        before = (f"event {seq - 1} ({found['event_id']})", found["hash"]) if found else None
    if before and before[1] != doc["prev_hash"]:
        return (
            f"event {seq} ({doc['event_id']}) does not follow {before[0]}: two validly "
            "signed events disagree; the station's audit log was rewritten"
        )
    if after and after["prev_hash"] != digest:
        return (
            f"event {seq + 1} ({after['event_id']}) does not follow event {seq} "
            f"({doc['event_id']}): two validly signed events disagree; the station's audit log "
            "was rewritten"
        )
    return None


def _broken(conn: Connection, station: str, problem: str, at: str) -> None:
    if stations.chain_ok(conn, station):
        logger.error("station %s: audit chain broken: %s", station, problem)
        stations.mark_broken(conn, station, problem, at)
    else:
        logger.error("station %s: another audit chain problem: %s", station, problem)


def _advance(
    conn: Connection,
    station: str,
    epoch: int,
    head: tuple[int, str],
    doc: dict[str, Any],
    after: Any | None,
) -> tuple[int, str] | None:
    """The complete-from-the-baseline head moved forward over every event now present, or
    None when it did not move. Only the event just stored can move it (the head was already
    as far as the events before it allowed): it must sit right after the head, then the head
    runs on over the events held after it (``after`` first, read already)."""
    seq = int(doc["seq"])
    if seq != head[0] + 1 or doc["prev_hash"] != head[1]:
        return None
    head = (seq, doc["hash"])
    nxt = after
    while nxt is not None and nxt["prev_hash"] == head[1]:
        head = (head[0] + 1, nxt["hash"])
        nxt = _at(conn, station, epoch, head[0] + 1)
    return head


def _fault_event(conn: Connection, station: str, doc: dict[str, Any], at: str) -> None:
    """Fault openings and resolutions travel in the event stream, signed: the only way a
    station's fault changes state at the central store. A fault that opens is answered with
    the ``fault``/``received`` command (what makes it ``reported`` at the station); once it is
    resolved, the commands about it are settled (their retained topic is cleared). An event
    that names a ``command_id`` says the station applied that command."""
    kind, data = doc["kind"], doc["data"]
    if kind == "fault.open":
        if faults.open_fault(conn, station, doc["subject"], {**data, "opened_at": doc["at"]}, at):
            commands.issue(
                conn,
                station=station,
                kind="fault",
                key=doc["subject"],
                action="received",
                by=faults.CENTRE,
                at=at,
                fields={"fault_id": doc["subject"]},
            )
    elif kind == "fault.resolved":
        faults.resolve(conn, station, doc["subject"], doc["at"])
        commands.settle(conn, station, "fault", doc["subject"], at)  # nothing left to tell it
    command_id = data.get("command_id") if isinstance(data, dict) else None
    if isinstance(command_id, str) and not commands.mark_applied(conn, station, command_id, at):
        logger.warning(
            "station %s: event %s names command %r, which the centre never sent it",
            station,
            doc["seq"],
            command_id[:80],
        )


def rebaseline(
    conn: Connection,
    station: str,
    *,
    operator_name: str,
    reason: str,
    base: tuple[int, str],
    at: str,
) -> int:
    """An operator accepts the station's chain anew from ``base`` (seq, hash); audited.
    Returns the new epoch. Earlier events stay as they are."""
    before = stations.row(conn, station)
    if before is None:
        raise KeyError(station)
    epoch = stations.rebaseline(conn, station, base[0], base[1])
    detail = {
        "reason": reason,
        "epoch": epoch,
        "base_seq": base[0],
        "base_hash": base[1],
        "was_ok": bool(before["chain_ok"]),
        "problem": before["chain_problem"],
        "head_seq": before["chain_seq"],
        "max_seq": before["chain_max_seq"],
    }
    operator.record(conn, at, operator_name, "rebaseline", station, detail)
    logger.warning("station %s: chain re-baselined by %s: %s", station, operator_name, reason)
    return epoch


# -- reads (the JSON API) --------------------------------------------------------------------


def missing_ranges(conn: Connection, station: str, limit: int = 20) -> list[tuple[int, int]]:
    """Seq ranges not received between the complete head and the highest seq seen."""
    span = stations.chain_span(conn, station)
    if span is None or span[1] <= span[0]:
        return []
    head = span[0]
    epoch = stations.epoch(conn, station)[0]
    seqs = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT seq FROM events WHERE station = ? AND epoch = ? AND seq > ?"
            " ORDER BY seq",
            (station, epoch, head),
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
    conn: Connection,
    station: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
    *,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """The events newest first (as they arrived), ``limit`` from ``offset``; of one station
    and one kind, or of all."""
    where, params = _where(station, kind)
    sql = "SELECT * FROM events" + where + " ORDER BY id DESC" + paging.SQL
    rows = conn.execute(sql, (*params, *paging.params(limit, offset))).fetchall()
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
            "epoch": r["epoch"],
            "received_at": r["received_at"],
        }
        for r in rows
    ]


def of_subject(conn: Connection, subject: str, kind: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` events of ``kind`` about ``subject`` (a recorder's serial), from
    every station, oldest first: a recorder's history."""
    rows = conn.execute(
        "SELECT station, at, data FROM events WHERE subject = ? AND kind = ?"
        " ORDER BY at DESC LIMIT ?",
        (subject, kind, limit),
    ).fetchall()
    return [
        {"station": r["station"], "at": r["at"], "data": json.loads(r["data"])}
        for r in reversed(rows)
    ]


def event_ids(conn: Connection, station: str) -> list[str]:
    """The station's event ids in the order they arrived."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT event_id FROM events WHERE station = ? ORDER BY id", (station,)
        )
    ]


def count(conn: Connection, station: str | None = None, *, kind: str | None = None) -> int:
    where, params = _where(station, kind)
    return conn.execute("SELECT count(*) FROM events" + where, params).fetchone()[0]


def _where(station: str | None, kind: str | None) -> tuple[str, tuple[str, ...]]:
    sql, params = " WHERE 1 = 1", ()
    if station is not None:
        sql, params = sql + " AND station = ?", (*params, station)
    if kind is not None:
        sql, params = sql + " AND kind = ?", (*params, kind)
    return sql, params


# -- recordings a station stored (approved access, central/access.py) -------------------------


@functools.cache
def _stored(dialect: Dialect) -> str:
    """What a ``file.stored`` event says of its recording, with its session's officer and
    unit (the session's ``session.start``)."""
    field = dialect.json_text

    def session(name: str) -> str:
        return (
            f"(SELECT {field('s.data', name)} FROM events s WHERE s.station = e.station"
            f" AND s.kind = 'session.start' AND s.subject = {field('e.data', 'session_id')}"
            f" LIMIT 1) AS {name}"
        )

    return (
        f"SELECT e.station, e.subject, e.at, {field('e.data', 'sha256')} AS sha256,"
        f" {dialect.json_number('e.data', 'size')} AS size,"
        f" {field('e.data', 'session_id')} AS session_id,"
        f" {field('e.data', 'device_serial')} AS device_serial,"
        f" {field('e.data', 'source_path')} AS source_path, "
        + session("officer_id")
        + ", "
        + session("unit")
        + " FROM events e"
    )


def stored_files(
    conn: Connection,
    station: str,
    *,
    recording: str | None = None,
    session_id: str | None = None,
    device_serial: str | None = None,
    officer_id: str | None = None,
    from_at: str | None = None,
    to_at: str | None = None,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """The recordings ``station`` said it stored (its ``file.stored`` events), oldest first:
    one by its store path, a session's, a recorder's or an officer's (the sessions whose
    ``session.start`` names the officer) within ``from_at``/``to_at``."""
    field = conn.dialect.json_text
    terms, params = ["e.station = ?", "e.kind = 'file.stored'"], [station]
    for term, value in (
        ("e.subject = ?", recording),
        (f"{field('e.data', 'session_id')} = ?", session_id),
        (f"{field('e.data', 'device_serial')} = ?", device_serial),
        ("e.at >= ?", from_at),
        ("e.at < ?", to_at),
    ):
        if value is not None:
            terms.append(term)
            params.append(value)
    if officer_id is not None:
        terms.append(
            f"{field('e.data', 'session_id')} IN (SELECT o.subject FROM events o WHERE"
            " o.station = ? AND o.kind = 'session.start'"
            f" AND {field('o.data', 'officer_id')} = ?)"
        )
        params += [station, officer_id]
    rows = conn.execute(
        f"{_stored(conn.dialect)} WHERE {' AND '.join(terms)}"  # noqa: S608
        " ORDER BY e.at, e.id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [
        {**dict(r), "size": _int(r["size"]), "recording": r["subject"], "stored_at": r["at"]}
        for r in rows
    ]


def _int(value: Any) -> Any:
    """A JSON number read as a number, an int when whole (PostgreSQL reads it as a float)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
