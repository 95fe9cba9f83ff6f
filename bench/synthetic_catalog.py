"""A station catalog aged by years, built fast: rows shaped like a real offload's.

    build(home, recordings=1_000_000, sessions=20_000)

``home`` must hold a catalog made by a real offload (bench/bench_catalog.py makes one); its
session, recordings and audit entries are the templates. Each synthetic session is one docking
at a station that uploads: two bay states before the offload, ``session.start``, one
``file.stored`` per recording, ``session.end``, one ``file.removed_from_recorder`` per
recording, the pre-shift ``checks``, two bay states after, and one ``file.synced`` per
recording once the central store confirmed it. With 50 recordings a session that is 157 audit
entries: 20,000 sessions give 1,000,000 recordings and 3.14 million entries. The chain is
real (every hash computed), so `recdock verify --chain-only` walks a valid log.

With MQTT off (the default) every audit entry is also an outbox row: they are copied from
the audit log in SQL (``json_object`` with sorted keys writes the same canonical JSON the
station queues). The retained values (one per bay, recorder, and the station's status) are
queued once each, as the supersede leaves them.

Rows are written with ``synchronous=OFF`` in large transactions: only the bench's catalog,
never a station's, is written this way.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sync.wire.chain import canonical, entry_hash

DEVICES = 20
DOCKINGS_PER_DAY = 40
BATCH_SESSIONS = 100


def build(home: Path, recordings: int, sessions: int, *, log: Any = print) -> dict[str, Any]:
    conn = sqlite3.connect(home / "catalog.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    t0 = time.monotonic()
    tpl = templates(conn)
    seq, prev = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    first_seq = seq + 1
    per = recordings // sessions
    start = datetime(2024, 1, 1, 6, tzinfo=UTC)
    for b in range(0, sessions, BATCH_SESSIONS):
        batch = Batch()
        for i in range(b, min(sessions, b + BATCH_SESSIONS)):
            seq, prev = docking(batch, tpl, i, per, start, seq, prev)
        batch.write(conn)
        if b % (BATCH_SESSIONS * 20) == 0:
            done = min(sessions, b + BATCH_SESSIONS)
            log(f"  sessions {done:,}/{sessions:,} ({time.monotonic() - t0:.0f} s)")
    queue_events(conn, tpl["station"], tpl["catalog_id"], first_seq)
    queue_retained(conn, tpl["station"])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {
        t: conn.execute(f"SELECT max(rowid) FROM {t}").fetchone()[0]
        for t in ("sessions", "recordings", "audit", "outbox")
    }
    counts["outbox_size"] = conn.execute("SELECT n FROM outbox_size").fetchone()[0]
    conn.close()
    counts["build_s"] = round(time.monotonic() - t0, 1)
    return counts


def templates(conn: sqlite3.Connection) -> dict[str, Any]:
    """The real offload's rows, to shape the synthetic ones after."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    session = dict(conn.execute("SELECT * FROM sessions LIMIT 1").fetchone())
    recording = dict(conn.execute("SELECT * FROM recordings LIMIT 1").fetchone())
    data = {}
    for kind in ("session.start", "file.stored", "file.removed_from_recorder", "session.end"):
        row = conn.execute("SELECT data FROM audit WHERE kind = ? LIMIT 1", (kind,)).fetchone()
        data[kind] = json.loads(row[0])
    return {
        "station": meta["station_id"],
        "catalog_id": meta["catalog_id"],
        "session": session,
        "recording": recording,
        "data": data,
    }


class Batch:
    """Rows of some sessions, written together."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.recordings: list[dict[str, Any]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.checks: list[tuple[Any, ...]] = []

    def write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        insert(conn, "sessions", self.sessions)
        insert(conn, "recordings", self.recordings)
        conn.executemany(
            "INSERT INTO audit (seq, at, kind, subject, data, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.audit,
        )
        conn.executemany(
            "INSERT INTO checks (session_id, device_serial, bay, at, ready, results)"
            " VALUES (?, ?, ?, ?, 1, ?)",
            self.checks,
        )
        conn.execute("COMMIT")


def insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        cols = list(rows[0])
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in rows],
        )


def docking(
    batch: Batch,
    tpl: dict[str, Any],
    i: int,
    per: int,
    start: datetime,
    seq: int,
    prev: str,
) -> tuple[int, str]:
    """One docking's rows and audit entries; returns the chain's new head."""
    when = start + timedelta(days=i // DOCKINGS_PER_DAY, minutes=15 * (i % DOCKINGS_PER_DAY))
    device = f"SIM{i % DEVICES + 1:04d}"
    sid = f"{when:%Y%m%dT%H%M%SZ}-{i:08x}"
    store_dir = f"{when:%Y/%m/%d}/{device}/{sid}"
    bay = i % 4 + 1
    entries: list[tuple[str, str, dict[str, Any]]] = []

    def at(k: int) -> str:
        return (when + timedelta(milliseconds=20 * k)).isoformat(timespec="microseconds")

    entries += bay_states(bay, device, sid, ("recognised", "recognised"))
    entries.append(
        ("session.start", sid, {**tpl["data"]["session.start"], "device_serial": device})
    )
    files = [file_of(tpl, store_dir, device, sid, i, n) for n in range(per)]
    stored_at = len(entries)
    entries += [("file.stored", f["store_path"], f["stored"]) for f in files]
    entries.append(("session.end", sid, {**tpl["data"]["session.end"], "files_stored": per}))
    entries += [("file.removed_from_recorder", f["source_path"], f["removed"]) for f in files]
    entries.append(("checks", device, checks_data(device, sid, bay)))
    entries += bay_states(bay, device, sid, ("ready", "idle"))
    entries += [("file.synced", f["store_path"], f["synced"]) for f in files]
    for k, (kind, subject, data) in enumerate(entries):
        seq += 1
        text = canonical(data)
        digest = entry_hash(prev, seq, at(k), kind, subject, text)
        batch.audit.append((seq, at(k), kind, subject, text, prev, digest))
        prev = digest
        if stored_at <= k < stored_at + per:
            files[k - stored_at]["row"]["audit_seq"] = seq
    batch.recordings += [f["row"] for f in files]
    batch.sessions.append(session_row(tpl, sid, device, store_dir, at(0), at(len(entries)), per))
    batch.checks.append(
        (sid, device, bay, at(len(entries) - 3), canonical(checks_data(device, sid, bay)))
    )
    return seq, prev


def file_of(
    tpl: dict[str, Any], store_dir: str, device: str, sid: str, i: int, n: int
) -> dict[str, Any]:
    source = f"DCIM/100RDSIM/RD_{i:08d}_{n:04d}.MP4"
    path = f"{store_dir}/media/{source}"
    sha = hashlib.sha256(path.encode()).hexdigest()
    size = tpl["recording"]["size"]
    row = {k: v for k, v in tpl["recording"].items() if k != "id"}
    row.update(
        session_id=sid,
        device_serial=device,
        source_path=source,
        store_path=path,
        sha256=sha,
        source_removed_at=row["offloaded_at"],
        synced_at=row["offloaded_at"],
        upload_url=f"https://central.example/files/{sha[:32]}",
        receipt=canonical({"object_id": sha[:32], "sha256": sha, "size": size, "verified": True}),
    )
    stored = {**tpl["data"]["file.stored"], "device_serial": device, "session_id": sid}
    stored.update(sha256=sha, source_path=source)
    removed = {"device_serial": device, "sha256": sha, "store_path": path}
    synced = {
        "session_id": sid,
        "device_serial": device,
        "sha256": sha,
        "size": size,
        "object_id": sha[:32],
        "received_at": row["offloaded_at"],
        "upload_url": row["upload_url"],
        "deduplicated": False,
    }
    return {
        "row": row,
        "store_path": path,
        "source_path": source,
        "stored": stored,
        "removed": removed,
        "synced": synced,
    }


def bay_states(
    bay: int, device: str, sid: str, states: tuple[str, ...]
) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (
            "bay.state",
            f"bay {bay}",
            {
                "bay": bay,
                "state": state,
                "device_serial": device,
                "profile": "simulated",
                "reason": None,
                "session_id": sid if state != "recognised" else None,
                "detail": "offloading 50 files" if state == "recognised" else None,
                "at": "2024-01-01T06:00:00.000000+00:00",
            },
        )
        for state in states
    ]


def checks_data(device: str, sid: str, bay: int) -> dict[str, Any]:
    """Shaped like agent.checks.results.CheckReport.as_dict() with its ids."""
    names = ("battery", "storage", "clock", "firmware", "offload", "late")
    return {
        "ready": True,
        "reasons": [],
        "results": [
            {
                "name": n,
                "ok": True,
                "value": "90 %",
                "threshold": ">= 80 %",
                "detail": "",
                "state": "pass",
            }
            for n in names
        ],
        "clock_offset_s": -3.485,
        "clock_offset_after_s": 0.002,
        "clock_set": True,
        "late": [],
        "station_clock": "simulated (synchronised)",
        "device_serial": device,
        "check_id": 0,
        "session_id": sid,
        "bay": bay,
    }


def session_row(
    tpl: dict[str, Any], sid: str, device: str, store_dir: str, started: str, ended: str, n: int
) -> dict[str, Any]:
    row = dict(tpl["session"])
    row.update(
        id=sid,
        device_serial=device,
        store_dir=store_dir,
        started_at=started,
        ended_at=ended,
        state="done",
        files_seen=n,
        files_stored=n,
        bytes_stored=n * tpl["recording"]["size"],
    )
    return row


def queue_events(conn: sqlite3.Connection, station: str, catalog_id: str, first_seq: int) -> None:
    """Every synthetic entry queued as its event, as audit.append queues it (MQTT off)."""
    conn.execute(
        "INSERT INTO outbox (event_id, topic, payload, qos, retain, created_at)"
        " SELECT ? || seq, ?, json_object('at', at, 'data', json(data), 'event_id', ? || seq,"
        " 'hash', hash, 'kind', kind, 'prev_hash', prev_hash, 'seq', seq, 'station', ?,"
        " 'subject', subject), 1, 0, at FROM audit WHERE seq >= ? ORDER BY seq",
        (
            f"{station}:{catalog_id}:",
            f"recdock/{station}/event",
            f"{station}:{catalog_id}:",
            station,
            first_seq,
        ),
    )


def queue_retained(conn: sqlite3.Connection, station: str) -> None:
    """The newest retained value of each bay, recorder and the station's status."""
    topics = [f"recdock/{station}/bay/{b}" for b in range(1, 5)]
    topics += [f"recdock/{station}/recorder/SIM{d:04d}" for d in range(1, DEVICES + 1)]
    topics.append(f"recdock/{station}/status")
    conn.executemany(
        "INSERT INTO outbox (event_id, topic, payload, qos, retain, created_at)"
        " VALUES (?, ?, '{}', 1, 1, '2026-01-01T00:00:00+00:00')",
        [(f"{station}:retained:{t}", t) for t in topics],
    )
