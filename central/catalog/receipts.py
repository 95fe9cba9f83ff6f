"""The upload receipts (tables ``receipts`` and ``failures``).

A receipt says that an upload's bytes were stored and match the hashes the station announced;
a failure says why they did not. Where they live (:func:`location`): with a SQLite catalog, in
their own database file, ``receipts.sqlite`` in the upload store's data folder
(:mod:`central.upload`), apart from the MQTT-fed catalog; with a PostgreSQL catalog, in the
catalog's database (one URL to run and back up). Every function takes that place, opens its own
connection (on SQLite: WAL, ``synchronous=FULL``, a 30 s busy timeout), commits and closes it:
call them from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from central.catalog import db

FILE_NAME = "receipts.sqlite"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS receipts (
    upload_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    sm3 TEXT,
    size INTEGER NOT NULL,
    station TEXT NOT NULL,
    metadata TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deduplicated INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS receipts_sha256 ON receipts (sha256)",
    "CREATE INDEX IF NOT EXISTS receipts_station_day ON receipts (station, received_at)",
    """CREATE TABLE IF NOT EXISTS failures (
    upload_id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at TEXT NOT NULL
)""",
]

#: Where the receipts are: a SQLite file, or the PostgreSQL catalog's database.
Place = Path | db.Database


def location(data_dir: Path, catalog: str | Path | db.Database | None = None) -> Place:
    """Where the receipts of the upload store in ``data_dir`` are, for a catalog in
    ``catalog`` (a path or URL; None: the SQLite default)."""
    if catalog is not None and db.parse(catalog).dialect is db.POSTGRESQL:
        return db.parse(catalog)
    return Path(data_dir) / FILE_NAME


@contextlib.contextmanager
def connect(place: Place) -> Iterator[Any]:
    """One connection for one operation, committed when the block ends without an error."""
    conn = db.connect(place if isinstance(place, db.Database) else db.parse(place))
    try:
        with db.transaction(conn):
            yield conn
    finally:
        conn.close()


def create(place: Place, schema: list[str] | None = None) -> None:
    """Create the tables the database lacks: the receipts', or another owner's ``schema``
    kept in the same database (:mod:`central.catalog.uploads`)."""
    with connect(place) as conn:
        conn.execute(conn.dialect.schema_lock)
        for statement in SCHEMA if schema is None else schema:
            conn.execute(db.ddl(statement, conn.dialect))


def receipt(place: Place, upload_id: str) -> dict[str, Any] | None:
    with connect(place) as conn:
        row = conn.execute("SELECT * FROM receipts WHERE upload_id = ?", (upload_id,)).fetchone()
    return _receipt_dict(row) if row else None


def first_receipt_of(place: Place, station: str, sha256: str, size: int) -> dict[str, Any] | None:
    """The oldest receipt of this content (SHA-256 and size) that ``station`` itself was given,
    or None: another station's uploads are never looked at."""
    with connect(place) as conn:
        row = conn.execute(
            "SELECT * FROM receipts WHERE station = ? AND sha256 = ? AND size = ?"
            " ORDER BY received_at LIMIT 1",
            (station, sha256, size),
        ).fetchone()
    return _receipt_dict(row) if row else None


def stored_bytes_on(place: Place, station: str, day: str) -> int:
    """The bytes ``station`` stored on the UTC day ``day`` (``YYYY-MM-DD``): its receipts of
    that day, without those answered from its own earlier uploads (they stored no byte)."""
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    with connect(place) as conn:
        (total,) = conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM receipts WHERE station = ?"
            " AND received_at >= ? AND received_at < ? AND deduplicated = 0",
            (station, day, next_day),
        ).fetchone()
    return int(total)


def record_receipt(
    place: Place,
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
    with connect(place) as conn:
        conn.execute(
            "INSERT INTO receipts (upload_id, sha256, sm3, size, station, metadata, received_at,"
            " deduplicated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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


def failure(place: Place, upload_id: str) -> dict[str, Any] | None:
    """Why ``upload_id`` failed verification (with its station), or None."""
    with connect(place) as conn:
        row = conn.execute("SELECT * FROM failures WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        return None
    return {"station": row["station"], **json.loads(row["reason"])}


def record_failure(
    place: Place, upload_id: str, station: str, reason: dict[str, Any], *, failed_at: str
) -> None:
    """Record why ``upload_id`` failed verification, replacing an earlier failure of it."""
    with connect(place) as conn:
        conn.execute(
            "INSERT INTO failures (upload_id, station, reason, failed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (upload_id) DO UPDATE SET station = excluded.station,"
            " reason = excluded.reason, failed_at = excluded.failed_at",
            (upload_id, station, json.dumps(reason), failed_at),
        )


def _receipt_dict(row: Any) -> dict[str, Any]:
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
