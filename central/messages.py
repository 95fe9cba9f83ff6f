"""One station message at the central store: verified, validated, stored, or kept apart.

The centre keeps a station's history only under that station's signature (rule 9,
docs/architecture.md). For each message, in this order:

1. its topic must be a documented one (docs/mqtt.md), else it is **rejected**;
2. an empty payload (a cleared retained topic) clears the broker's copy and changes nothing
   here (**cleared**): a fault is resolved only by its signed ``fault.resolved`` event;
3. the station named by the topic must be enrolled (:class:`central.enrolment.StationKeys`),
   the payload a JSON object carrying a signature that verifies with that station's key (an
   event's hash recomputed from its content first: sync/wire/signing.py); anything else is a
   **security alert**: counted, kept in ``security_alerts``, never stored as the station's
   history, never taking an event id, never marking a chain broken;
4. a validly signed payload must follow its JSON Schema and its topic, else it is **rejected**
   (the station's own bug: kept in ``rejected`` for diagnosis);
5. then it is stored: ``stored``, ``duplicate`` or, for an event that disagrees with one the
   station signed before, ``conflict`` (the chain is broken: :mod:`central.catalog.events`).

One bad message never holds up the others: each is stored in its own savepoint.

A batch (:meth:`MessageHandler.handle_batch`, the consumer's) is decoded once, and a station's
run of chained events in it is proven by the signature of its newest event
(:mod:`central.chain_proof`): those events skip step 3's Ed25519 verification, nothing else.
Steps 1 to 4 need no catalog: a batch runs them for every message before its transaction
begins, so the rows it holds (which another worker's batch may wait for) are held while it
writes, not while it checks signatures.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central import chain_proof
from central.catalog import CentralCatalog, now_utc
from central.enrolment import StationKeys
from sync.wire import commands, topics
from sync.wire.payloads import PAYLOAD_KINDS, load_schema, topic_kind
from sync.wire.signing import BadSignature, verify_doc

logger = logging.getLogger(__name__)


class InvalidMessage(ValueError):
    """A message that does not follow docs/mqtt.md; the text says what is wrong."""


class SecurityAlert(ValueError):
    """A message the centre does not take as the station's: unenrolled, unsigned or forged."""

    def __init__(self, station: str, reason: str) -> None:
        super().__init__(reason)
        self.station = station


class PayloadValidator:
    """JSON Schema validation of every payload kind, compiled once (fastjsonschema).

    The schema files in sync/wire/schemas/ stay the source of truth: each is compiled into
    Python code when the centre starts, and a valid payload (nearly every one) costs that code
    alone. A payload it refuses is checked again by jsonschema (Draft 2020-12, the schemas'
    own draft; imported only then), whose message names the first wrong field, path sorted,
    as before; when jsonschema finds nothing wrong (a ``date-time`` it does not check), the
    compiled validator's own message is the reason. ``compiled=False`` validates with
    jsonschema alone (bench/bench_central.py compares the two in one run).
    """

    KINDS = tuple(PAYLOAD_KINDS)

    def __init__(self, *, compiled: bool = True) -> None:
        self._compiled: dict[str, Any] = {}
        self._slow: dict[str, Any] = {}
        if compiled:
            import fastjsonschema

            self._compiled = {kind: _compile(fastjsonschema, kind) for kind in self.KINDS}

    def check(self, kind: str, doc: Any) -> None:
        fast = self._compiled.get(kind)
        if fast is None:
            self._check_slow(kind, doc)
            return
        try:
            fast(doc)
        except Exception as exc:  # fastjsonschema.JsonSchemaValueException
            self._check_slow(kind, doc)
            where = getattr(exc, "name", "data").removeprefix("data").lstrip(".") or "(top level)"
            reason = getattr(exc, "message", exc)
            raise InvalidMessage(f"{kind} payload: {where}: {reason}") from None

    def _check_slow(self, kind: str, doc: Any) -> None:
        validator = self._slow.get(kind)
        if validator is None:
            from jsonschema import Draft202012Validator, FormatChecker

            validator = Draft202012Validator(load_schema(kind), format_checker=FormatChecker())
            self._slow[kind] = validator
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(top level)"
            raise InvalidMessage(f"{kind} payload: {where}: {first.message}")


def _compile(fastjsonschema: Any, kind: str) -> Any:
    """The compiled validator of one payload kind. The schemas use nothing of Draft 2020-12
    that Draft 7 lacks, so they compile as Draft 7 (fastjsonschema's newest)."""
    schema = dict(load_schema(kind))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema, use_formats=True)


class MessageHandler:
    """Verifies and stores messages into ``catalog``; counts outcomes in ``stats``."""

    def __init__(self, catalog: CentralCatalog, keys: StationKeys, stats: Counter[str]) -> None:
        self.catalog = catalog
        self.keys = keys
        self.stats = stats
        self.validator = PayloadValidator()
        self._lock = threading.RLock()

    def handle_batch(self, batch: list[tuple[str, bytes, bool]]) -> list[str]:
        """Handle (topic, payload, retained) messages in one transaction, in order; each as
        :meth:`handle` would, but a station's run of chained events is proven by the
        signature of its newest (:mod:`central.chain_proof`) rather than one by one. Every
        message is checked (signature, schema, topic) before the transaction begins, so the
        rows and locks it takes are held for the writes alone: another worker's batch (its
        checks) runs meanwhile."""
        docs = [_decode_or_none(payload) for _, payload, _ in batch]
        proven = chain_proof.proven(
            [(topic, doc) for (topic, _, _), doc in zip(batch, docs, strict=True)],
            self.keys.key_for,
        )
        checked = [
            self._check(topic, payload, doc, i in proven)
            for i, ((topic, payload, _), doc) in enumerate(zip(batch, docs, strict=True))
        ]
        named = {parsed[0] for topic, _, _ in batch if (parsed := topic_kind(topic)) is not None}
        enrolled = [name for name in named if self.keys.key_for(name) is not None]
        with self._lock, self.catalog.tx():
            # every enrolled station's row this batch may write, in one order for every worker
            self.catalog.hold_stations(sorted(enrolled))
            return [
                self._one(topic, payload, retained, check)
                for (topic, payload, retained), check in zip(batch, checked, strict=True)
            ]

    def handle(
        self,
        topic: str,
        payload: bytes,
        *,
        retained: bool = False,
        doc: dict[str, Any] | None = None,
        proven: bool = False,
    ) -> str:
        """Handle one message; returns ``stored``, ``duplicate``, ``conflict``, ``cleared``,
        ``alert`` or ``rejected``. Raises only for a catalog that cannot store anything now
        (``catalog.unavailable``: locked, disk full, a lock waited for too long, the database
        gone). ``doc`` is the payload decoded already, if it was; ``proven``: its signature is
        proven by a later event's (:meth:`handle_batch`)."""
        check = self._check(topic, payload, doc, proven)
        with self._lock, self.catalog.tx():
            return self._one(topic, payload, retained, check)

    def _one(self, topic: str, payload: bytes, retained: bool, check: _Checked) -> str:
        """One checked message, inside the open transaction (the lock held): stored in its
        own savepoint, or kept apart as an alert or a rejected message."""
        self.stats["received"] += 1
        try:
            if check.error is not None:
                raise check.error
            if check.outcome is not None:
                outcome = check.outcome
            else:
                with self.catalog.savepoint():
                    outcome = self._store(check, retained)
        except self.catalog.unavailable:
            raise  # rolled back to the savepoint; the catalog cannot store anything now
        except SecurityAlert as alert:
            self.stats["alert"] += 1
            logger.warning(
                "central consumer: SECURITY ALERT on %s (station %r): %s",
                topic,
                alert.station,
                alert,
            )
            self.catalog.record_alert(alert.station, topic, str(alert), payload)
            return "alert"
        except Exception as exc:  # InvalidMessage, or content no check foresaw
            self.stats["rejected"] += 1
            reason = str(exc) if isinstance(exc, InvalidMessage) else f"{type(exc).__name__}"
            logger.warning("central consumer: dropped a message on %s: %s", topic, reason)
            self.catalog.record_rejected(topic, reason, payload)
            return "rejected"
        self.stats[outcome] += 1
        return outcome

    def _check(
        self, topic: str, payload: bytes, doc: dict[str, Any] | None, proven: bool
    ) -> _Checked:
        """Steps 1 to 4 for one message, no catalog needed: what to store, an outcome that
        stores nothing, or the error that keeps it apart."""
        try:
            return self._checked(topic, payload, doc, proven)
        except Exception as exc:  # SecurityAlert, InvalidMessage, or what no check foresaw
            return _Checked(error=exc)

    def _checked(
        self, topic: str, payload: bytes, doc: dict[str, Any] | None, proven: bool
    ) -> _Checked:
        if commands.parse_topic(topic) is not None:
            # the centre's own command, echoed by the broker: nothing to store
            return _Checked(outcome="command")
        parsed = topic_kind(topic)
        if parsed is None:
            raise InvalidMessage(f"unknown topic {topic!r} (see docs/mqtt.md)")
        station, kind, key = parsed
        if not payload:
            if kind == "event":
                raise InvalidMessage("event message with an empty payload")
            return _Checked(outcome="cleared")  # the broker's copy is gone; nothing changes
        doc = self._verified(station, topic, payload, doc, proven)
        self.validator.check(kind, doc)
        if doc.get("station") != station:
            raise InvalidMessage(
                f"payload station {doc.get('station')!r} differs from the topic's {station!r}"
            )
        for field in ("at", "opened_at"):
            if field in doc and not _is_time(doc[field]):
                raise InvalidMessage(f"{field} {str(doc[field])[:40]!r} is not an ISO 8601 time")
        _agrees_with_topic(station, kind, key, doc)
        return _Checked(station=station, kind=kind, doc=doc)

    def _verified(
        self, station: str, topic: str, payload: bytes, doc: dict[str, Any] | None, proven: bool
    ) -> dict[str, Any]:
        """The payload as a JSON object signed by the station's enrolled key, or an alert.
        A ``proven`` event's content is signed by a later event of its run
        (:mod:`central.chain_proof`): its own signature is not checked again."""
        public_key = self.keys.key_for(station)
        if public_key is None:
            raise SecurityAlert(station, f"station {station[:64]!r} is not enrolled")
        if proven and doc is not None:
            return doc
        try:
            doc = _decode(payload) if doc is None else doc
            verify_doc(public_key, topic, doc)
        except (InvalidMessage, BadSignature) as exc:
            raise SecurityAlert(station, f"not signed by the station: {exc}") from None
        return doc

    def _store(self, check: _Checked, retained: bool) -> str:
        station, kind, doc = check.station, check.kind, check.doc
        assert station is not None and doc is not None
        received_at = now_utc()
        if kind == "event":
            return self.catalog.record_event(doc, received_at=received_at)
        if kind == "status":
            self.catalog.record_status(station, doc, live=not retained, received_at=received_at)
        elif kind == "health":
            self.catalog.record_health(station, doc, live=not retained, received_at=received_at)
        elif kind == "bay":
            self.catalog.record_bay(station, doc["bay"], doc, received_at=received_at)
        elif kind == "recorder":
            self.catalog.record_recorder(station, doc, received_at=received_at)
        elif kind == "fault":
            self.catalog.record_fault(station, doc["id"], doc)
        return "stored"


def _agrees_with_topic(station: str, kind: str, key: str | None, doc: dict[str, Any]) -> None:
    """What the payload names (event id, bay, fault id) is what its topic names, or
    InvalidMessage."""
    if kind == "event" and (
        not _EVENT_ID.match(doc["event_id"])
        or not doc["event_id"].startswith(f"{station}:")
        or not doc["event_id"].endswith(f":{doc['seq']}")
    ):
        raise InvalidMessage(
            f"event_id {str(doc['event_id'])[:80]!r} is not {station}:<catalog>:{doc['seq']}"
        )
    if kind == "bay" and str(doc["bay"]) != key:
        raise InvalidMessage(f"payload bay {doc['bay']} differs from the topic's {key}")
    # a station before topic levels lost their dots published a fault's id as it is
    if kind == "fault" and key not in (doc["id"], topics.level(doc["id"])):
        raise InvalidMessage(f"payload fault id {doc['id']!r} differs from {key!r}")


@dataclass(frozen=True)
class _Checked:
    """A message after its checks (:meth:`MessageHandler._check`): what to store (``station``,
    ``kind``, ``doc``), an ``outcome`` that stores nothing, or the ``error`` that
    keeps it apart."""

    station: str | None = None
    kind: str | None = None
    doc: dict[str, Any] | None = None
    outcome: str | None = None
    error: Exception | None = None


_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[A-Za-z0-9_-]{1,64}:[1-9][0-9]{0,18}$")


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _decode_or_none(payload: bytes) -> dict[str, Any] | None:
    """The payload as a JSON object, or None (:func:`_decode` says why, when it is needed)."""
    try:
        return _decode(payload) if payload else None
    except InvalidMessage:
        return None


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError too
        raise InvalidMessage(f"payload is not UTF-8 JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise InvalidMessage("payload is not a JSON object")
    return doc
