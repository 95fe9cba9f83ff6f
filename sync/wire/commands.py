"""Commands from the centre to a station: one definition for both sides.

The centre tells a station what a person decided at the dashboard (a fault acknowledged or
resolved, a recorder's lifecycle in the register, a hold placed or released): retained, QoS 1, on

    recdock/<station>/command/<kind>/<key>

so a station that is offline when it is sent finds it when it connects. The broker lets only the
centre write there (deploy/mosquitto/recdock.acl) and a station read its own; the payload is a
JSON object signed by the centre's Ed25519 key, which every station holds as its
``[mqtt] centre_public_key``: a station acts only on commands the centre signed, whoever could
publish on its topics. What is signed, as UTF-8 bytes:

    "recdock-command-v1\\n<topic>\\n<canonical JSON of the payload without sig>"

Every command carries ``command_id`` (its idempotency key: a station applies a command once),
``kind``, ``station``, ``at`` (when the centre issued it) and ``by`` (who decided it; the
centre itself for automatic commands). A station that has applied a command says so in its
signed event stream (the audit entry names the ``command_id``); the centre then clears the
retained command with an empty payload. docs/mqtt.md documents the kinds and their fields.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.wire import topics
from sync.wire.chain import canonical
from sync.wire.signing import SIG_FIELD, SIG_PATTERN, BadSignature

COMMAND_DOMAIN = "recdock-command-v1"
#: What each kind of command may ask; the station refuses any other action.
ACTIONS = {
    "fault": ("received", "acknowledge", "resolve"),
    "register": ("set",),
    "hold": ("place", "release"),
}


def topic(station: str, kind: str, key: str) -> str:
    """``recdock/<station>/command/<kind>/<key>``."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown command kind {kind!r}; one of {sorted(ACTIONS)}")
    return f"{topics.PREFIX}/{station}/command/{kind}/{topics.level(key)}"


def parse_topic(text: str) -> tuple[str, str, str] | None:
    """``recdock/<station>/command/<kind>/<key>`` -> (station, kind, key); None when not one."""
    parts = text.split("/")
    if len(parts) != 5 or parts[0] != topics.PREFIX or parts[2] != "command":
        return None
    if parts[3] not in ACTIONS or not parts[4]:
        return None
    return parts[1], parts[3], parts[4]


def command_message(command_topic: str, doc: dict[str, Any]) -> bytes:
    """The bytes a command's signature covers: its topic and its payload without ``sig``."""
    body = {k: v for k, v in doc.items() if k != SIG_FIELD}
    return f"{COMMAND_DOMAIN}\n{command_topic}\n{canonical(body)}".encode()


def sign_command(key: Ed25519PrivateKey, command_topic: str, doc: dict[str, Any]) -> bytes:
    """The payload the centre publishes: ``doc`` with its ``sig``, canonical JSON."""
    body = {k: v for k, v in doc.items() if k != SIG_FIELD}
    signature = key.sign(command_message(command_topic, body))
    return canonical({**body, SIG_FIELD: base64.b64encode(signature).decode("ascii")}).encode()


def verify_command(
    public_key: Ed25519PublicKey, command_topic: str, payload: bytes
) -> dict[str, Any]:
    """The command in ``payload`` when the centre signed it for this topic; raises
    :class:`~sync.wire.signing.BadSignature` (naming why, never the key) otherwise."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadSignature(f"the command is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadSignature("the command is not a JSON object")
    text = doc.get(SIG_FIELD)
    if not isinstance(text, str) or not SIG_PATTERN.match(text):
        raise BadSignature("the command is not signed (no valid 'sig' field)")
    try:
        public_key.verify(base64.b64decode(text), command_message(command_topic, doc))
    except InvalidSignature:
        raise BadSignature("the signature does not match the centre's key") from None
    parsed = parse_topic(command_topic)
    if parsed is None or doc.get("kind") != parsed[1] or doc.get("station") != parsed[0]:
        raise BadSignature("the command's kind or station does not match its topic")
    if doc.get("action") not in ACTIONS[parsed[1]]:
        raise BadSignature(f"the command asks {doc.get('action')!r}, not one of its kind's actions")
    return doc


#: The fields each kind of command carries besides the common ones; a station refuses a command
#: without them (docs/mqtt.md). ``fault``: the fault's id (``note`` optional, for ``resolve``);
#: ``register``: the recorder's serial and lifecycle (``officer``, ``unit`` optional); ``hold``:
#: the hold's id and, to place it, its scope and reason (what it covers, ``reason_text``,
#: ``case_name``, ``case_number`` as agent/catalog/holds.py keeps them; ``note`` to release).
KIND_FIELDS = {
    "fault": ("fault_id",),
    "register": ("serial", "lifecycle"),
    "hold": ("hold_id",),
}
COMMON_FIELDS = ("command_id", "kind", "station", "action", "at", "by")
#: A recorder's lifecycle in the centre's register.
LIFECYCLES = ("in_service", "in_maintenance", "lost", "retired")
#: What a hold covers, and why it was placed: the station's own (agent/catalog/holds.py,
#: SCOPES and REASONS; tests/test_centre_holds.py keeps them the same), here so the centre,
#: which imports nothing of the station, checks a hold it places or receives.
HOLD_SCOPES = ("recording", "session", "device", "officer")
HOLD_REASONS = ("complaint", "obstruction", "major_case", "marked_on_recorder", "other")
#: What a ``hold``/``place`` command names for each scope (besides ``scope`` and ``reason``):
#: the recording by its store path (the ``file.stored`` event's subject), the session by its
#: id, the recorder by its serial, the officer by their id.
HOLD_TARGETS = {
    "recording": "recording",
    "session": "session_id",
    "device": "device_serial",
    "officer": "officer_id",
}


def missing_fields(doc: dict[str, Any]) -> list[str]:
    """The fields a verified command lacks (or has as anything but a non-empty string), and a
    lifecycle that is not one of :data:`LIFECYCLES`: an empty list when the command is whole."""
    wanted = (*COMMON_FIELDS, *KIND_FIELDS.get(str(doc.get("kind")), ()))
    problems = [f for f in wanted if not isinstance(doc.get(f), str) or not doc.get(f)]
    if doc.get("kind") == "register" and doc.get("lifecycle") not in LIFECYCLES:
        problems.append(f"lifecycle (one of {', '.join(LIFECYCLES)})")
    if doc.get("kind") == "hold" and doc.get("action") == "place":
        problems.extend(_hold_problems(doc))
    return problems


def _hold_problems(doc: dict[str, Any]) -> list[str]:
    """What a ``hold``/``place`` command lacks: a known scope and reason, and its target."""
    scope = doc.get("scope")
    if scope not in HOLD_SCOPES:
        return [f"scope (one of {', '.join(HOLD_SCOPES)})"]
    problems = []
    if doc.get("reason") not in HOLD_REASONS:
        problems.append(f"reason (one of {', '.join(HOLD_REASONS)})")
    target = HOLD_TARGETS[scope]
    if not isinstance(doc.get(target), str) or not doc.get(target):
        problems.append(target)
    return problems
