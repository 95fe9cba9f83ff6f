"""What a station signs and how the signature travels: one definition for station and centre.

Every message a station publishes carries an Ed25519 signature (made with ``cryptography``; the
centre verifies it with libsodium, central/enrolment.py, through the same :func:`verify_doc`) in
the field ``sig`` of its JSON payload: 64 bytes, standard base64 with padding (88 characters).
What is signed, as UTF-8 bytes, is a domain-separated string:

* an **event** (``recdock/<station>/event``): ``"recdock-event-v1\\n<station>\\n<seq>\\n<hash>"``,
  where ``hash`` is the entry's chain hash (:func:`sync.wire.chain.entry_hash`), which commits
  to the entry's content and to every entry before it. So the signature can be made from the
  audit row and the station id alone, and a receiver checks it by recomputing ``hash`` from
  the content first;
* a **retained state** (status, bay, recorder, fault): ``"recdock-state-v1\\n<topic>\\n<canonical
  JSON of the payload without sig>"``: the topic is signed with the payload, so a state cannot
  be moved to another topic or station.

An empty payload (a cleared retained topic) carries no signature: it only clears the broker's
copy. A station's public key is the 32 raw bytes of its Ed25519 key in standard base64
(:func:`public_key_text`). docs/mqtt.md documents all of this; the JSON Schemas require
``sig``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.wire.chain import canonical, entry_hash

SIG_FIELD = "sig"
EVENT_DOMAIN = "recdock-event-v1"
STATE_DOMAIN = "recdock-state-v1"
SIG_PATTERN = re.compile(r"^[A-Za-z0-9+/]{86}==$")
_PUBLIC = re.compile(r"^[A-Za-z0-9+/]{43}=$")


class BadSignature(ValueError):
    """A message that is not validly signed; the text says why (never the key)."""


class PublicKey(Protocol):
    """What :func:`verify_doc` needs of a key: ``cryptography``'s ``Ed25519PublicKey``, or the
    centre's libsodium key (central/enrolment.py); ``verify`` raises ``InvalidSignature``."""

    def verify(self, signature: bytes, data: bytes) -> None: ...


def event_message(station: str, seq: int, chain_hash: str) -> bytes:
    """The bytes an event's signature covers."""
    return f"{EVENT_DOMAIN}\n{station}\n{seq}\n{chain_hash}".encode()


def state_message(topic: str, doc: dict[str, Any]) -> bytes:
    """The bytes a retained state's signature covers: its topic and payload (without ``sig``)."""
    body = {k: v for k, v in doc.items() if k != SIG_FIELD}
    return f"{STATE_DOMAIN}\n{topic}\n{canonical(body)}".encode()


def _topic_station_and_kind(topic: str) -> tuple[str, str]:
    parts = topic.split("/")
    if len(parts) < 3:
        raise BadSignature(f"{topic!r} is not a station topic")
    return parts[1], parts[2]


def signed_message(topic: str, doc: dict[str, Any]) -> bytes:
    """What the signature of ``doc`` on ``topic`` covers (an event's or a state's form)."""
    station, kind = _topic_station_and_kind(topic)
    if kind == "event":
        seq, chain_hash = doc.get("seq"), doc.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(chain_hash, str):
            raise BadSignature("an event needs an integer seq and a hash to be signed")
        return event_message(station, seq, chain_hash)
    return state_message(topic, doc)


def sign_payload(key: Ed25519PrivateKey, topic: str, payload: bytes) -> bytes:
    """``payload`` (canonical JSON) as it leaves the station: with its ``sig``. An empty
    payload stays empty. Raises ValueError for a payload that is not a JSON object."""
    if not payload:
        return payload
    doc = json.loads(payload.decode("utf-8"))
    if not isinstance(doc, dict):
        # a payload that is not ours to sign: ValueError, as for one that is not JSON
        raise ValueError(f"{topic}: only a JSON object can be signed")  # noqa: TRY004
    doc.pop(SIG_FIELD, None)
    signature = key.sign(signed_message(topic, doc))
    doc[SIG_FIELD] = base64.b64encode(signature).decode("ascii")
    return canonical(doc).encode("utf-8")


def verify_doc(public_key: PublicKey, topic: str, doc: dict[str, Any]) -> None:
    """Check ``doc``'s signature on ``topic``; raises :class:`BadSignature` when it is not valid.

    For an event, the chain hash is first recomputed from the content: a signature over a hash
    the content does not have signs nothing of this content.
    """
    text = doc.get(SIG_FIELD)
    if not isinstance(text, str) or not SIG_PATTERN.match(text):
        raise BadSignature("the message is not signed (no valid 'sig' field)")
    message = signed_message(topic, doc)
    if _topic_station_and_kind(topic)[1] == "event":
        check_event_hash(doc)
    try:
        public_key.verify(base64.b64decode(text), message)
    except InvalidSignature:
        raise BadSignature("the signature does not match the station's enrolled key") from None


def check_event_hash(doc: dict[str, Any]) -> None:
    """Raises :class:`BadSignature` unless the event's ``hash`` is the chain hash of its
    content (what its signature, or a later event's, covers)."""
    try:
        computed = entry_hash(
            str(doc["prev_hash"]),
            int(doc["seq"]),
            str(doc["at"]),
            str(doc["kind"]),
            str(doc["subject"]),
            canonical(doc["data"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSignature(f"the event lacks what its hash covers ({exc})") from None
    if computed != doc.get("hash"):
        raise BadSignature("the event's hash does not match its content")


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A public key as enrolled at the centre: its 32 raw bytes in standard base64."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The inverse of :func:`public_key_text`; ValueError says what is wrong."""
    raw = public_key_raw(text)
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc


def public_key_raw(text: str) -> bytes:
    """The 32 raw bytes of a public key in the form of :func:`public_key_text`; ValueError
    says what is wrong."""
    text = text.strip()
    if not _PUBLIC.match(text):
        raise ValueError("an Ed25519 public key is 44 characters of base64 (32 bytes)")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc
