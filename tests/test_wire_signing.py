"""What a station signs and how the centre checks it: sync/wire/signing.py, one definition.

An event's signature covers the station id, its seq and its chain hash, and nothing else, so
it can be made from the audit row and the station id alone; a retained state's covers its
topic and payload; anything changed after signing, another key, another topic or no signature
at all fails verification.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.catalog import Catalog, audit, outbox
from sync.wire import topics
from sync.wire.signing import (
    BadSignature,
    event_message,
    parse_public_key,
    public_key_text,
    sign_payload,
    verify_doc,
)
from tests.test_mqtt import add_events

STATION = "ST-W1"
new_key = Ed25519PrivateKey.generate


# -- the wire rules -------------------------------------------------------------------------


def test_an_event_signature_is_over_station_seq_and_chain_hash_alone(home: Path) -> None:
    """So it can be made from the audit row and the station id (a publisher reading the audit
    log instead of the outbox signs the same bytes)."""
    key = new_key()
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 2)
    [row1, row2] = outbox.pending(catalog.conn)
    doc = json.loads(sign_payload(key, row2.topic, row2.payload))
    entry = list(audit.entries(catalog))[1]
    key.public_key().verify(
        base64.b64decode(doc["sig"]), event_message(STATION, entry.seq, entry.hash)
    )
    verify_doc(key.public_key(), row2.topic, doc)


def test_verification_refuses_what_the_station_did_not_sign(home: Path) -> None:
    key = new_key()
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 1)
    [row] = outbox.pending(catalog.conn)
    doc = json.loads(sign_payload(key, row.topic, row.payload))
    verify_doc(key.public_key(), row.topic, doc)
    cases = {
        "another key": (new_key().public_key(), row.topic, doc),
        "unsigned": (key.public_key(), row.topic, {k: v for k, v in doc.items() if k != "sig"}),
        "content changed": (key.public_key(), row.topic, {**doc, "data": {"i": 1}}),
        "seq changed": (key.public_key(), row.topic, {**doc, "seq": 2}),
        "another station's topic": (key.public_key(), topics.event("ST-OTHER"), doc),
    }
    for name, (public, topic, candidate) in cases.items():
        with pytest.raises(BadSignature):
            verify_doc(public, topic, candidate)
            pytest.fail(f"accepted: {name}")


@settings(max_examples=50, deadline=None)
@given(
    doc=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k != "sig"),
        st.integers() | st.text(max_size=20) | st.booleans() | st.none(),
        max_size=5,
    )
)
def test_a_retained_state_round_trips_and_any_change_breaks_it(doc: dict) -> None:
    key = new_key()
    topic = topics.bay(STATION, 3)
    signed = json.loads(sign_payload(key, topic, json.dumps(doc).encode()))
    verify_doc(key.public_key(), topic, signed)
    with pytest.raises(BadSignature):
        verify_doc(key.public_key(), topic, {**signed, "extra": "added"})
    with pytest.raises(BadSignature):
        verify_doc(key.public_key(), topics.bay(STATION, 4), signed)


def test_public_keys_are_44_characters_of_base64() -> None:
    key = new_key()
    text = public_key_text(key)
    assert len(text) == 44 and parse_public_key(text) is not None
    for bad in ("", "x" * 44, text[:-2], text + "A"):
        with pytest.raises(ValueError):
            parse_public_key(bad)
