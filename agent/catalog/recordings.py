"""The recordings (table ``recordings``): one row per file verified in the store.

A row is written in the transaction of its ``file.stored`` (or ``file.recovered``) audit entry
and points at it (``audit_seq``). Its removal from the recorder is announced
(``removal_intent_at``) before the unlink and recorded (``source_removed_at``) after it; its
upload ends with the central receipt (``synced_at``, ``receipt``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: The columns a new row may set; the rest keep their defaults.
COLUMNS = (
    "session_id",
    "station_id",
    "device_serial",
    "officer_id",
    "unit",
    "profile",
    "source_path",
    "source_size",
    "source_mtime",
    "store_path",
    "size",
    "sha256",
    "sm3",
    "recorded_start",
    "recorded_end",
    "offloaded_at",
    "age_hours",
    "late",
    "adopted",
    "audit_seq",
)


def insert(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    """Add one recording inside the caller's transaction; its id."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"recordings: unknown columns {sorted(unknown)}")
    names = [c for c in COLUMNS if c in row]
    cur = conn.execute(
        f"INSERT INTO recordings ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [row[c] for c in names],
    )
    return int(cur.lastrowid or 0)


# -- reading ---------------------------------------------------------------------------------


def listing(catalog: Catalog) -> list[dict[str, Any]]:
    """Every recording, in the order they were stored (a list: for small catalogs and tests;
    :func:`select` streams)."""
    return catalog.query("SELECT * FROM recordings ORDER BY id")


@dataclass(frozen=True)
class Selection:
    """Which recordings to list; None selects everything on that key.

    ``since``/``until`` bound the moment the recording started (its offload when the start
    is unknown), as UTC ``YYYY-MM-DD HH:MM:SS``: ``since`` inclusive, ``until`` exclusive.
    """

    device: str | None = None
    officer: str | None = None
    unit: str | None = None
    since: str | None = None
    until: str | None = None
    synced: bool | None = None
    late: bool | None = None
    limit: int | None = None


#: SQLite's datetime() reads the ISO times with their offset and gives UTC.
_STARTED = "datetime(coalesce(recorded_start, offloaded_at))"


def select(catalog: Catalog, sel: Selection) -> Iterator[dict[str, Any]]:
    """The selected recordings in the order they were stored, streamed (filtered in SQL)."""
    terms: list[str] = []
    params: list[Any] = []
    for column, value in (("device_serial", sel.device), ("officer_id", sel.officer)):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if sel.unit is not None:
        terms.append("unit = ?")
        params.append(sel.unit)
    if sel.since is not None:
        terms.append(f"{_STARTED} >= ?")
        params.append(sel.since)
    if sel.until is not None:
        terms.append(f"{_STARTED} < ?")
        params.append(sel.until)
    if sel.synced is not None:
        terms.append("synced_at IS NOT NULL" if sel.synced else "synced_at IS NULL")
    if sel.late is not None:
        terms.append("late = 1" if sel.late else "late = 0")
    sql = "SELECT * FROM recordings"
    if terms:
        sql += " WHERE " + " AND ".join(terms)
    sql += " ORDER BY id"
    if sel.limit is not None:
        sql += " LIMIT ?"
        params.append(sel.limit)
    return catalog.stream(sql, params)


def by_store_path(catalog: Catalog, store_path: str) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM recordings WHERE store_path = ?", (store_path,))
    return rows[0] if rows else None


def by_id(catalog: Catalog, recording_id: int) -> dict[str, Any] | None:
    rows = catalog.query("SELECT * FROM recordings WHERE id = ?", (recording_id,))
    return rows[0] if rows else None


def knows(catalog: Catalog, column: str, value: str) -> bool:
    """Some recording has this ``device_serial`` or ``officer_id`` (what a hold may name)."""
    if column not in ("device_serial", "officer_id"):
        raise ValueError(f"recordings.knows: {column!r}")
    sql = f"SELECT 1 FROM recordings WHERE {column} = ? LIMIT 1"  # noqa: S608
    return bool(catalog.query(sql, (value,)))


def fingerprint(catalog: Catalog, recording_id: int) -> dict[str, Any] | None:
    """The row's hash, size and store path, read afresh (before a removal trusts it)."""
    rows = catalog.query(
        "SELECT sha256, size, store_path FROM recordings WHERE id = ?", (recording_id,)
    )
    return rows[0] if rows else None


def known_source(
    catalog: Catalog, device_serial: str, source_path: str, size: int
) -> list[dict[str, Any]]:
    """Earlier copies of this device's file at this path and size."""
    return catalog.query(
        "SELECT * FROM recordings WHERE device_serial = ? AND source_path = ? AND size = ?",
        (device_serial, source_path, size),
    )


def of_session(catalog: Catalog, session_id: str) -> list[dict[str, Any]]:
    """A session's recordings in the order they were stored (its manifest's order)."""
    return catalog.query("SELECT * FROM recordings WHERE session_id = ? ORDER BY id", (session_id,))


# -- removal from the recorder (rule 1) ------------------------------------------------------


def announce_removals(conn: sqlite3.Connection, ids: list[int], at: str) -> None:
    """Mark rows whose sources are about to be unlinked (before the unlink)."""
    conn.executemany(
        "UPDATE recordings SET removal_intent_at = ? WHERE id = ?", [(at, i) for i in ids]
    )


def settle_removals(
    conn: sqlite3.Connection, announced: list[int], removed: list[int], at: str
) -> None:
    """After the unlinks: clear the announcements, record the removals that happened."""
    conn.executemany(
        "UPDATE recordings SET removal_intent_at = NULL WHERE id = ?", [(i,) for i in announced]
    )
    conn.executemany(
        "UPDATE recordings SET source_removed_at = ? WHERE id = ?", [(at, i) for i in removed]
    )


def announced_removals(catalog: Catalog, device_serial: str) -> list[dict[str, Any]]:
    """Rows of this device whose removal was announced and never recorded (a crash)."""
    return catalog.query(
        "SELECT * FROM recordings WHERE device_serial = ? AND removal_intent_at IS NOT NULL",
        (device_serial,),
    )


# -- uploads ---------------------------------------------------------------------------------


def count_unsynced(catalog: Catalog) -> int:
    row = catalog.conn.execute("SELECT count(*) FROM recordings WHERE synced_at IS NULL").fetchone()
    return int(row[0])


def unsynced_totals(catalog: Catalog) -> tuple[int, int]:
    """How many recordings wait for their central receipt, and their bytes (the partial index
    of the unsynced: it grows with the backlog, not with the years)."""
    row = catalog.conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM recordings WHERE synced_at IS NULL"
    ).fetchone()
    return int(row[0]), int(row[1])


def oldest_unsynced(catalog: Catalog) -> dict[str, Any] | None:
    """The recording waiting longest for its central receipt (the partial index of the
    unsynced holds only what is pending)."""
    rows = catalog.query(
        "SELECT id, store_path, offloaded_at FROM recordings WHERE synced_at IS NULL"
        " ORDER BY offloaded_at, id LIMIT 1"
    )
    return rows[0] if rows else None


def pending_upload(catalog: Catalog, *, not_held: str) -> list[dict[str, Any]]:
    """Recordings without a central receipt, in upload order: held, then late, then oldest.

    ``not_held`` is holds.not_held_sql("r"): footage under a hold (disputed, marked on the
    recorder, asked for by a case) reaches the centre's second copy first. The old ``hold``
    column is not read: nothing sets it since holds have their own table."""
    return catalog.query(
        "SELECT r.* FROM recordings r WHERE r.synced_at IS NULL"  # noqa: S608
        " ORDER BY CASE WHEN " + not_held + " THEN 1 ELSE 0 END, r.late DESC,"
        " r.offloaded_at, r.id"
    )


def set_upload_url(conn: sqlite3.Connection, recording_id: int, url: str | None) -> None:
    """Keep (or forget, with None) where an unfinished upload resumes."""
    conn.execute(
        "UPDATE recordings SET upload_url = ? WHERE id = ? AND synced_at IS NULL",
        (url, recording_id),
    )


def mark_synced(
    conn: sqlite3.Connection, recording_id: int, *, at: str, receipt: str, upload_url: str
) -> bool:
    """Record the central receipt; False when the row was already synced."""
    cur = conn.execute(
        "UPDATE recordings SET synced_at = ?, receipt = ?, upload_url = ?"
        " WHERE id = ? AND synced_at IS NULL",
        (at, receipt, upload_url, recording_id),
    )
    return cur.rowcount > 0


def by_ids(catalog: Catalog, ids: list[int]) -> list[dict[str, Any]]:
    """The recordings with these ids, in id order (ids not in the catalog are left out)."""
    import json

    return catalog.query(
        "SELECT * FROM recordings WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
        (json.dumps(sorted(set(ids))),),
    )


# -- retention (docs/retention.md) -------------------------------------------------------------

#: The centre's receipt confirms this very file, for this station: verified, the catalogued
#: hash and size, and the station the row belongs to (rule 4, docs/architecture.md).
_CONFIRMED = (
    "r.synced_at IS NOT NULL AND r.receipt IS NOT NULL"
    " AND json_valid(r.receipt)"
    " AND json_extract(r.receipt, '$.verified') = 1"
    " AND lower(json_extract(r.receipt, '$.sha256')) = r.sha256"
    " AND json_extract(r.receipt, '$.size') = r.size"
    " AND json_extract(r.receipt, '$.station') = r.station_id"
)


@dataclass(frozen=True)
class Retention:
    """When each recording's retention runs out, as SQL: the default cut-off (an ISO UTC time:
    a recording offloaded before it has run out), and per unit or per category (glob patterns
    on the recorder's path, lower-cased) cut-offs; where several apply, the earliest cut-off
    (the longest retention) wins. ``None`` as ``default``: no retention condition (disk
    pressure purges confirmed, unheld files whatever their age)."""

    default: str | None
    units: tuple[tuple[str, str], ...] = ()
    categories: tuple[tuple[tuple[str, ...], str], ...] = ()

    def sql(self) -> tuple[str, list[Any]]:
        if self.default is None:
            return "1", []
        params: list[Any] = []
        unit = "NULL"
        if self.units:
            unit = "CASE r.unit" + " WHEN ? THEN ?" * len(self.units) + " END"
            params += [v for pair in self.units for v in pair]
        cat = "NULL"
        if self.categories:
            cat = "CASE"
            for globs, cutoff in self.categories:
                cat += " WHEN (" + " OR ".join(["lower(r.source_path) GLOB ?"] * len(globs))
                cat += ") THEN ?"
                params += [*globs, cutoff]
            cat += " END"
        expr = f"r.offloaded_at < min(COALESCE({unit}, {cat}, ?), COALESCE({cat}, {unit}, ?))"
        # the same CASEs twice over: their parameters twice, in order
        first = params[: 2 * len(self.units)]
        second = params[2 * len(self.units) :]
        ordered = [*first, *second, self.default, *second, *first, self.default]
        return expr, ordered


def purgeable(
    catalog: Catalog, *, station_id: str, retention: Retention, not_held: str, limit: int
) -> list[dict[str, Any]]:
    """Recordings a purge may remove, oldest offload first: the centre's receipt confirmed
    them (:data:`_CONFIRMED`), their session ended (its manifest is written), their retention
    ran out, and ``not_held`` (holds.not_held_sql("r")) is true. Searches the partial index of
    the synced and unpurged (``recordings_purgeable``) in offload order."""
    expr, params = retention.sql()
    bound = ""
    if retention.default is not None:
        # the latest cut-off of all bounds the index range; the expression sorts out the rest
        latest = max([retention.default, *(c for _, c in retention.units)]
                     + [c for _, c in retention.categories])  # fmt: skip
        bound = " AND r.offloaded_at < ?"
        params = [latest, *params]
    return catalog.query(
        "SELECT r.* FROM recordings r"  # noqa: S608
        " WHERE r.synced_at IS NOT NULL AND r.purged_at IS NULL"
        + bound
        + " AND "
        + expr
        + " AND "
        + _CONFIRMED
        + " AND "
        + not_held
        + " AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = r.session_id"
        " AND s.ended_at IS NOT NULL)"
        " AND r.station_id = ? ORDER BY r.offloaded_at, r.id LIMIT ?",
        (*params, station_id, limit),
    )


def still_purgeable(
    catalog: Catalog, recording_id: int, *, station_id: str, not_held: str
) -> dict[str, Any] | None:
    """The row again, inside the purge's transaction, if it is still confirmed, unpurged and
    unheld (a hold placed since the search wins)."""
    rows = catalog.query(
        "SELECT r.* FROM recordings r WHERE r.id = ? AND r.purged_at IS NULL"  # noqa: S608
        " AND r.station_id = ? AND " + _CONFIRMED + " AND " + not_held,
        (recording_id, station_id),
    )
    return rows[0] if rows else None


def mark_purged(
    conn: sqlite3.Connection, recording_id: int, *, at: str, by: str, reason: str
) -> None:
    """The row is purged (its file is removed next: ``purge_intent_at`` until then)."""
    conn.execute(
        "UPDATE recordings SET purged_at = ?, purged_by = ?, purge_reason = ?,"
        " purge_intent_at = ? WHERE id = ? AND purged_at IS NULL",
        (at, by, reason, at, recording_id),
    )


def settle_purges(conn: sqlite3.Connection, ids: list[int]) -> None:
    """The files of these purged rows are gone from the store."""
    conn.executemany(
        "UPDATE recordings SET purge_intent_at = NULL WHERE id = ?", [(i,) for i in ids]
    )


def unsettled_purges(catalog: Catalog) -> list[dict[str, Any]]:
    """Purged rows whose file removal was not recorded (a pass that was killed)."""
    return catalog.query("SELECT * FROM recordings WHERE purge_intent_at IS NOT NULL ORDER BY id")


def unpurged_bytes(catalog: Catalog, *, confirmed: bool) -> int:
    """Bytes of the recordings still in the store that the centre confirmed (or not yet).
    Read only when the store cannot be freed (the fault's evidence)."""
    where = "r.purged_at IS NULL AND " + (_CONFIRMED if confirmed else f"NOT ({_CONFIRMED})")
    rows = catalog.query(f"SELECT COALESCE(sum(r.size), 0) AS n FROM recordings r WHERE {where}")
    return int(rows[0]["n"])
