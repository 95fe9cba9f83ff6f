"""Test helpers for signed messages: station keys, signing what a station queued, enrolment.

The station signs each outbox row as it hands it to the link (sync/mqtt/publisher.py); tests
that feed the central consumer directly sign the same rows with the same function
(:func:`sync.wire.signing.sign_payload`), so the centre is tested against what leaves a station.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.catalog import Catalog, outbox
from agent.config.keys import create_signing_key
from sync.wire.signing import public_key_text, sign_payload


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def home_key(home: Path) -> Ed25519PrivateKey:
    """The station key at ``<home>/signing-key`` (where a station without [mqtt] signing_key
    looks), made when missing."""
    from agent.config.keys import load_signing_key

    path = home / "signing-key"
    return load_signing_key(path) if path.exists() else create_signing_key(path)


def signed(key: Ed25519PrivateKey, messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(topic, sign_payload(key, topic, payload)) for topic, payload in messages]


def queued(catalog: Catalog, key: Ed25519PrivateKey) -> list[tuple[str, bytes]]:
    """Everything the station has queued, signed as it would leave, in outbox order."""
    rows = outbox.pending(catalog.conn, limit=1_000_000)
    return signed(key, [(m.topic, m.payload) for m in rows])


def register(keys: dict[str, Ed25519PrivateKey]) -> dict[str, str]:
    """An enrolment register (station id -> public key text)."""
    return {station: public_key_text(k) for station, k in keys.items()}
