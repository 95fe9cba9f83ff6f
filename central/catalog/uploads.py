"""The unfinished uploads (table ``uploads``): each one's record and its lease, in the receipts
database (``receipts.sqlite``, :mod:`central.catalog.receipts`), so that every
``recdock-central`` worker on the data folder sees the same uploads (docs/central.md,
"Several workers").

A record is what :class:`central.folder.UploadInfo` holds: station, length, the acknowledged
offset (column ``upload_offset``), hashes, metadata, when it was created, and ``touched_at``
(seconds since the epoch of its last creation or write: expiry reads it). The partial bytes
stay a file in the data folder (:mod:`central.folder`).

The **lease** (``holder``, ``held_until``, seconds since the epoch) is the upload's lock across
workers: a ``PATCH`` takes it before it reads the record and keeps renewing it while it
writes; verification and expiry take it too. :func:`take` is one conditional ``UPDATE``: it
succeeds when nobody holds the lease, when its holder asks again, or when the lease ran out
(a worker killed mid-``PATCH`` blocks its upload only until then). Writes of the offset are
conditional on holding the lease (:func:`save_offset`), so a writer that lost its lease never
records an offset. The SQL is portable (SQLite and PostgreSQL). Every function opens its own
connection (:func:`central.catalog.receipts.connect`): call them from a worker thread.
"""

from __future__ import annotations

import json
from typing import Any

from central.catalog import receipts
from central.catalog.receipts import Place, connect

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT PRIMARY KEY,
        station TEXT NOT NULL,
        length INTEGER NOT NULL,
        upload_offset INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        sm3 TEXT,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        touched_at REAL NOT NULL,
        holder TEXT,
        held_until REAL
    )""",
    "CREATE INDEX IF NOT EXISTS uploads_touched ON uploads (touched_at)",
]

_COLUMNS = "upload_id, station, length, upload_offset, sha256, sm3, metadata, created_at"


def create_table(db_path: Place) -> None:
    receipts.create(db_path, SCHEMA)


def insert(db_path: Place, record: dict[str, Any], *, now: float) -> None:
    """A new upload's record (``record``: the fields of :class:`central.folder.UploadInfo`);
    a record already there stays as it is (an old version's file imported twice)."""
    with connect(db_path) as conn:
        conn.execute(
            f"INSERT INTO uploads ({_COLUMNS}, touched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
            " ON CONFLICT (upload_id) DO NOTHING",
            (
                record["id"],
                record["station"],
                record["length"],
                record["offset"],
                record["sha256"],
                record["sm3"],
                json.dumps(record["metadata"], sort_keys=True),
                record["created_at"],
                now,
            ),
        )


def load(db_path: Place, upload_id: str) -> dict[str, Any] | None:
    """The upload's record (the fields of :class:`central.folder.UploadInfo`), or None."""
    with connect(db_path) as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM uploads WHERE upload_id = ?",  # noqa: S608
            (upload_id,),
        ).fetchone()
    return _record(row) if row else None


def records(db_path: Place) -> list[dict[str, Any]]:
    """Every upload with a record (unfinished, or complete and not yet verified)."""
    with connect(db_path) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM uploads ORDER BY created_at").fetchall()  # noqa: S608
    return [_record(r) for r in rows]


def untouched_since(db_path: Place, cutoff: float) -> list[str]:
    """The uploads neither created nor written since ``cutoff`` (seconds since the epoch)."""
    with connect(db_path) as conn:
        rows = conn.execute(
            "SELECT upload_id FROM uploads WHERE touched_at < ? ORDER BY touched_at", (cutoff,)
        ).fetchall()
    return [r[0] for r in rows]


def touched_at(db_path: Place, upload_id: str) -> float | None:
    with connect(db_path) as conn:
        row = conn.execute(
            "SELECT touched_at FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
    return float(row[0]) if row else None


def set_touched(db_path: Place, upload_id: str, at: float) -> None:
    """Set when the upload was last touched (an administrator's or a test's clock)."""
    with connect(db_path) as conn:
        conn.execute("UPDATE uploads SET touched_at = ? WHERE upload_id = ?", (at, upload_id))


def take(db_path: Place, upload_id: str, holder: str, *, now: float, until: float) -> str | None:
    """Take (or renew) the upload's lease for ``holder`` until ``until``. Returns None when
    taken, else who holds it (``""`` when the upload has no record)."""
    with connect(db_path) as conn:
        cur = conn.execute(
            "UPDATE uploads SET holder = ?, held_until = ? WHERE upload_id = ?"
            " AND (holder IS NULL OR holder = ? OR held_until < ?)",
            (holder, until, upload_id, holder, now),
        )
        if cur.rowcount == 1:
            return None
        row = conn.execute(
            "SELECT holder FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
    return "" if row is None else str(row[0])


def renew(db_path: Place, upload_id: str, holder: str, *, until: float) -> bool:
    """Extend ``holder``'s lease; False when it no longer holds it (it ran out and was taken)."""
    with connect(db_path) as conn:
        cur = conn.execute(
            "UPDATE uploads SET held_until = ? WHERE upload_id = ? AND holder = ?",
            (until, upload_id, holder),
        )
    return cur.rowcount == 1


def release(db_path: Place, upload_id: str, holder: str) -> None:
    with connect(db_path) as conn:
        conn.execute(
            "UPDATE uploads SET holder = NULL, held_until = NULL"
            " WHERE upload_id = ? AND holder = ?",
            (upload_id, holder),
        )


def save_offset(db_path: Place, upload_id: str, offset: int, holder: str, *, now: float) -> bool:
    """Record the acknowledged ``offset`` (the bytes before it are fsynced), only while
    ``holder`` holds the lease; False when it does not (nothing recorded)."""
    with connect(db_path) as conn:
        cur = conn.execute(
            "UPDATE uploads SET upload_offset = ?, touched_at = ? WHERE upload_id = ?"
            " AND holder = ?",
            (offset, now, upload_id, holder),
        )
    return cur.rowcount == 1


def delete(db_path: Place, upload_id: str) -> None:
    with connect(db_path) as conn:
        conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))


def _record(row: Any) -> dict[str, Any]:
    return {
        "id": row["upload_id"],
        "station": row["station"],
        "length": int(row["length"]),
        "offset": int(row["upload_offset"]),
        "sha256": row["sha256"],
        "sm3": row["sm3"],
        "metadata": json.loads(row["metadata"]),
        "created_at": row["created_at"],
    }
