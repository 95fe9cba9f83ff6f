"""The upload receipts (tables ``receipts`` and ``failures``), in their own database file.

The file is ``receipts.sqlite`` in the upload store's data folder (:mod:`central.upload`), apart
from the MQTT-fed catalog. A receipt says that an upload's bytes were stored and match the
hashes the station announced; a failure says why they did not. Every function opens its own
connection (WAL, ``synchronous=FULL``, a 30 s busy timeout), commits and closes it: call them
from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    upload_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    sm3 TEXT,
    size INTEGER NOT NULL,
    station TEXT NOT NULL,
    metadata TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deduplicated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS receipts_sha256 ON receipts (sha256);
CREATE INDEX IF NOT EXISTS receipts_station_day ON receipts (station, received_at);
CREATE TABLE IF NOT EXISTS failures (
    upload_id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
"""


@contextlib.contextmanager
def _connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    """One connection for one operation, committed when the block ends without an error."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.row_factory = sqlite3.Row
        with db:
            yield db
    finally:
        db.close()


def create(db_path: Path) -> None:
    """Create the tables the file lacks."""
    with _connect(db_path) as db:
        db.executescript(SCHEMA)


def receipt(db_path: Path, upload_id: str) -> dict[str, Any] | None:
    with _connect(db_path) as db:
        row = db.execute("SELECT * FROM receipts WHERE upload_id = ?", (upload_id,)).fetchone()
    return _receipt_dict(row) if row else None


def first_receipt_of(db_path: Path, station: str, sha256: str, size: int) -> dict[str, Any] | None:
    """The oldest receipt of this content (SHA-256 and size) that ``station`` itself was given,
    or None: another station's uploads are never looked at."""
    with _connect(db_path) as db:
        row = db.execute(
            "SELECT * FROM receipts WHERE station = ? AND sha256 = ? AND size = ?"
            " ORDER BY received_at LIMIT 1",
            (station, sha256, size),
        ).fetchone()
    return _receipt_dict(row) if row else None


def stored_bytes_on(db_path: Path, station: str, day: str) -> int:
    """The bytes ``station`` stored on the UTC day ``day`` (``YYYY-MM-DD``): its receipts of
    that day, without those answered from its own earlier uploads (they stored no byte)."""
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    with _connect(db_path) as db:
        (total,) = db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM receipts WHERE station = ?"
            " AND received_at >= ? AND received_at < ? AND deduplicated = 0",
            (station, day, next_day),
        ).fetchone()
    return int(total)


def record_receipt(
    db_path: Path,
    upload_id: str,
    sha256: str,
    sm3: str | None,
    size: int,
    station: str,
    metadata: dict[str, str],
    *,
    received_at: str,
    dedup: bool,
) -> None:
    """Record the receipt of ``upload_id``; a receipt already recorded stays as it is."""
    with _connect(db_path) as db:
        db.execute(
            "INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                upload_id,
                sha256,
                sm3,
                size,
                station,
                json.dumps(metadata, sort_keys=True),
                received_at,
                int(dedup),
            ),
        )


def failure(db_path: Path, upload_id: str) -> dict[str, Any] | None:
    """Why ``upload_id`` failed verification (with its station), or None."""
    with _connect(db_path) as db:
        row = db.execute("SELECT * FROM failures WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        return None
    return {"station": row["station"], **json.loads(row["reason"])}


def record_failure(
    db_path: Path, upload_id: str, station: str, reason: dict[str, Any], *, failed_at: str
) -> None:
    """Record why ``upload_id`` failed verification, replacing an earlier failure of it."""
    with _connect(db_path) as db:
        db.execute(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
            (upload_id, station, json.dumps(reason), failed_at),
        )


def _receipt_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "upload_id": row["upload_id"],
        "object_id": f"sha256:{row['sha256']}",
        "sha256": row["sha256"],
        "sm3": row["sm3"],
        "size": row["size"],
        "station": row["station"],
        "metadata": json.loads(row["metadata"]),
        "received_at": row["received_at"],
        "verified": True,
        "deduplicated": bool(row["deduplicated"]),
    }
