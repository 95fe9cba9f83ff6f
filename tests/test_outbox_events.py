"""An event waiting for the broker is a reference to its audit entry, not a second copy.

A station without a broker keeps every event queued until one acknowledges it (rule 4,
docs/architecture.md); with the payload rebuilt from the audit log when it is sent, each entry
is kept once (docs/mqtt.md, "What a station without a broker keeps"). What leaves is the event
docs/mqtt.md describes, byte for byte the payload the chain and the signature cover.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.catalog import Catalog, audit, outbox
from sync.wire import topics
from sync.wire.chain import canonical, entry_hash

STATION = "ST-OUT"


@pytest.fixture
def catalog(home: Path) -> Catalog:
    cat = Catalog(home / "catalog.db", station_id=STATION)
    yield cat
    cat.close()


def append(catalog: Catalog, n: int) -> None:
    with catalog.tx():
        for i in range(n):
            audit.append(catalog, "test.event", f"subject-{i}", {"i": i, "text": "ünï"})


def test_queued_events_keep_no_copy_of_the_audit_entry(catalog: Catalog) -> None:
    append(catalog, 5)
    rows = catalog.conn.execute(
        "SELECT audit_seq, length(payload) FROM outbox WHERE topic = ? ORDER BY id",
        (topics.event(STATION),),
    ).fetchall()
    assert [seq for seq, _ in rows] == [1, 2, 3, 4, 5]
    assert all(size == 0 for _, size in rows), "an event row kept a copy of its entry"


def test_each_event_is_sent_as_its_audit_entry_with_the_chain_hash(catalog: Catalog) -> None:
    append(catalog, 3)
    sent = [m for m in outbox.pending(catalog.conn, 100) if m.topic == topics.event(STATION)]
    entries = list(audit.entries(catalog))
    assert [json.loads(m.payload)["seq"] for m in sent] == [e.seq for e in entries]
    for m, e in zip(sent, entries, strict=True):
        doc = json.loads(m.payload)
        assert m.payload == canonical(doc).encode(), "not canonical JSON"
        assert doc == {
            "event_id": f"{STATION}:{catalog.catalog_id}:{e.seq}",
            "station": STATION,
            "seq": e.seq,
            "at": e.at,
            "kind": e.kind,
            "subject": e.subject,
            "data": e.data,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        assert doc["hash"] == entry_hash(
            doc["prev_hash"], doc["seq"], doc["at"], doc["kind"], doc["subject"],
            canonical(doc["data"]),
        )  # fmt: skip
        assert m.event_id == doc["event_id"]


def test_a_row_queued_with_its_payload_is_sent_as_it_is(catalog: Catalog) -> None:
    """Rows queued before migration m041 carry their payload and no reference."""
    old = {"event_id": "ST-OUT:old:1", "kind": "legacy", "seq": 1}
    with catalog.tx() as conn:
        outbox.enqueue(conn, topics.event(STATION), old, event_id="ST-OUT:old:1")
    [m] = outbox.pending(catalog.conn, 10)
    assert json.loads(m.payload) == old


def test_an_event_whose_entry_was_cut_is_named_and_stays_queued(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    append(catalog, 3)
    with catalog.tx() as conn:
        conn.execute("DELETE FROM audit WHERE seq = 2")  # a root user's hand
    with caplog.at_level(logging.ERROR, logger="agent.catalog.outbox"):
        sent = outbox.pending(catalog.conn, 100)
    seqs = [json.loads(m.payload)["seq"] for m in sent if m.topic == topics.event(STATION)]
    assert seqs == [1, 3]
    assert "refers to audit entry 2, which is gone" in caplog.text
    assert "recdock verify" in caplog.text
    left = catalog.conn.execute("SELECT count(*) FROM outbox WHERE audit_seq = 2").fetchone()[0]
    assert left == 1, "the reference stays: nothing is dropped without a broker's PUBACK"
