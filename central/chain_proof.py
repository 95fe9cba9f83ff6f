"""Which events of a batch one signature proves: a station's run of chained events.

An event's signature covers ``recdock-event-v1\\n<station>\\n<seq>\\n<chain hash>``
(sync/wire/signing.py), and the chain hash commits to the event's content and to its
``prev_hash``, the chain hash of the event before it (sync/wire/chain.py). So when events
``n``, ``n+1`` .. ``m`` of one station each hash to their own ``hash`` (recomputed here from
their content) and each ``prev_hash`` is the ``hash`` of the one before, a valid signature of
the station on ``m`` proves the content of all of them: forging any of them would take a
second preimage of SHA-256. The centre then checks that one signature and the hashes and
links of the rest (:func:`proven`), instead of one Ed25519 verification per event.

Runs are built per station (the topic's), in the order the batch holds its events: an event
joins the station's current run when it is the next seq and links to the run's last event,
and otherwise starts a new run. An event whose hash does not match its content, or without a
well-formed ``sig``, joins none and is verified on its own, as is a run of one event (a gap,
one out of order), as every event was before. When the signature of a run's last event does
not verify, none of that run is proven and each of its events is verified on its own, so a
forged event among genuine ones is caught, and alerted, exactly as before. docs/security.md
says what the centre knows of an event whose own signature it did not check.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from sync.wire.payloads import topic_kind
from sync.wire.signing import (
    SIG_FIELD,
    SIG_PATTERN,
    BadSignature,
    check_event_hash,
    event_message,
)


@dataclass(frozen=True)
class _Link:
    index: int
    seq: int
    prev_hash: str
    hash: str


def proven(
    batch: Sequence[tuple[str, dict[str, Any] | None]],
    key_for: Callable[[str], Any],
) -> set[int]:
    """The indexes in ``batch`` (topic, decoded payload or None) of the events whose
    signature need not be checked: every member of a run of a station's events whose last
    event's signature verifies with ``key_for(station)``; a run of one event proves nothing
    beyond its own check, so it is left out."""
    runs: list[tuple[str, list[_Link]]] = []
    current: dict[str, list[_Link]] = {}  # each station's newest run
    for index, (topic, doc) in enumerate(batch):
        parsed = topic_kind(topic)
        if doc is None or parsed is None or parsed[1] != "event":
            continue
        link = _link(index, doc)
        if link is None:
            continue
        run = current.get(parsed[0])
        if run and link.seq == run[-1].seq + 1 and link.prev_hash == run[-1].hash:
            run.append(link)
        else:
            current[parsed[0]] = [link]
            runs.append((parsed[0], current[parsed[0]]))
    out: set[int] = set()
    for station, run in runs:
        if len(run) > 1 and _signed(station, run[-1], batch, key_for):
            out.update(link.index for link in run)
    return out


def _link(index: int, doc: dict[str, Any]) -> _Link | None:
    """The event's place in its chain, when its hash is its content's and it carries a
    well-formed signature field; else None (it is verified on its own)."""
    sig, seq = doc.get(SIG_FIELD), doc.get("seq")
    if not isinstance(sig, str) or not SIG_PATTERN.match(sig):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    try:
        check_event_hash(doc)
    except BadSignature:
        return None
    return _Link(index, seq, str(doc["prev_hash"]), str(doc["hash"]))


def _signed(
    station: str,
    last: _Link,
    batch: Sequence[tuple[str, dict[str, Any] | None]],
    key_for: Callable[[str], Any],
) -> bool:
    """Whether the run's last event is signed by the station (its hash was recomputed from
    its content already, by :func:`_link`)."""
    key = key_for(station)
    if key is None:
        return False
    doc = batch[last.index][1]
    assert doc is not None
    try:
        key.verify(base64.b64decode(doc[SIG_FIELD]), event_message(station, last.seq, last.hash))
    except InvalidSignature:
        return False
    return True
