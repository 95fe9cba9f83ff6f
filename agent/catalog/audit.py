"""The audit log (table ``audit``): every state change, hash-chained, also queued for MQTT.

Entry ``seq`` commits to its content and to the previous entry's hash
(:func:`sync.wire.chain.entry_hash`, the one definition the central store shares). It is
written in the transaction of the change it records, and the same transaction queues it in the
outbox as an event (rule 3, docs/architecture.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.catalog import canonical, now_utc, outbox
from sync.wire import topics
from sync.wire.chain import GENESIS, entry_hash

if TYPE_CHECKING:
    from agent.catalog import Catalog


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    kind: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


def head(catalog: Catalog) -> tuple[int, str]:
    """The last entry's sequence number and hash (0 and the genesis hash for an empty log)."""
    row = catalog.conn.execute(
        "SELECT seq, hash FROM audit WHERE seq = (SELECT max(seq) FROM audit)"
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append(catalog: Catalog, kind: str, subject: str, data: dict[str, Any]) -> AuditEntry:
    """Append one hash-chained entry, and queue it for MQTT, in the open transaction."""
    conn = catalog.conn
    if not conn.in_transaction:
        raise RuntimeError("append_audit must run inside Catalog.tx()")
    prev_seq, prev_hash = head(catalog)
    seq, at, text = prev_seq + 1, now_utc(), canonical(data)
    digest = entry_hash(prev_hash, seq, at, kind, subject, text)
    conn.execute(
        "INSERT INTO audit (seq, at, kind, subject, data, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, at, kind, subject, text, prev_hash, digest),
    )
    event_id = f"{catalog.station_id}:{catalog.catalog_id}:{seq}"
    outbox.enqueue(  # a reference: the event is built from this entry when it is sent
        conn, topics.event(catalog.station_id), None, event_id=event_id, audit_seq=seq
    )
    return AuditEntry(seq, at, kind, subject, data, prev_hash, digest)


def entries(catalog: Catalog) -> Iterator[AuditEntry]:
    for seq, at, kind, subject, data, prev_hash, digest in catalog.conn.execute(
        "SELECT seq, at, kind, subject, data, prev_hash, hash FROM audit ORDER BY seq"
    ):
        yield AuditEntry(seq, at, kind, subject, json.loads(data), prev_hash, digest)


def chain_problems(
    catalog: Catalog, seen: Callable[[int, str], None] | None = None
) -> Iterator[str]:
    """Problems in the hash chain (altered, removed or reordered entries), streamed: one
    entry at a time, whatever the log's length. ``seen(seq, hash)`` is called for each."""
    expected_seq, prev = 1, GENESIS
    rows = catalog.conn.execute(
        "SELECT seq, at, kind, subject, data, prev_hash, hash FROM audit ORDER BY seq"
    )
    for seq, at, kind, subject, data, prev_hash, digest in rows:
        if seq != expected_seq:
            yield (
                f"audit log: entry {seq} found where entry {expected_seq} was expected "
                "(an entry was removed or the log reordered)"
            )
        if prev_hash != prev:
            yield (
                f"audit log: entry {seq} does not follow the entry before it "
                "(removed, inserted or reordered entries)"
            )
        if entry_hash(prev_hash, seq, at, kind, subject, data) != digest:
            yield f"audit log: entry {seq} ({kind} {subject}) was altered"
        if seen is not None:
            seen(seq, digest)
        expected_seq, prev = seq + 1, digest


def check_chain(catalog: Catalog) -> list[str]:
    """Problems in the hash chain: altered, removed or reordered entries."""
    return list(chain_problems(catalog))


#: The kinds looked up by subject, each through a partial index of its own (migration m040):
#: the index is usable only when the kind is a literal in the query, hence the SQL per kind.
_BY_SUBJECT = {
    "file.upload_rejected": "SELECT {what} FROM audit WHERE kind = 'file.upload_rejected'",
    "fault.resolved": "SELECT {what} FROM audit WHERE kind = 'fault.resolved'",
}


def _by_subject(kind: str, what: str) -> str:
    try:
        return _BY_SUBJECT[kind].format(what=what) + " AND subject = ?"
    except KeyError:
        raise ValueError(f"audit: no index looks up {kind!r} entries by subject") from None


def last_seq(catalog: Catalog, kind: str, subject: str) -> int:
    """The sequence number of the last ``kind`` entry about ``subject`` (0: none)."""
    sql = _by_subject(kind, "coalesce(max(seq), 0)")
    return int(catalog.conn.execute(sql, (subject,)).fetchone()[0])


def count_since(catalog: Catalog, kind: str, subject: str, after_seq: int) -> int:
    """How many ``kind`` entries about ``subject`` came after entry ``after_seq``."""
    sql = _by_subject(kind, "count(*)") + " AND seq > ?"
    return int(catalog.conn.execute(sql, (subject, after_seq)).fetchone()[0])


def hash_at(catalog: Catalog, seq: int) -> str | None:
    """The hash of entry ``seq`` (None when the log has no such entry)."""
    row = catalog.conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
    return str(row[0]) if row else None
