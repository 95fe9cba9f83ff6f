"""Commands from the centre to a station (sync/wire/commands.py): signed by the centre, for one
topic, one station and one of its kind's actions."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.wire import commands
from sync.wire.signing import BadSignature

CENTRE = Ed25519PrivateKey.generate()


def command(**extra: object) -> dict[str, object]:
    return {
        "command_id": "c-1",
        "kind": "fault",
        "station": "ST-1",
        "action": "acknowledge",
        "at": "2026-12-01T10:00:00+00:00",
        "by": "supervisor li",
        "fault_id": "store-store-1234abcd",
        **extra,
    }


def test_a_command_signed_by_the_centre_verifies_on_its_topic() -> None:
    topic = commands.topic("ST-1", "fault", "store-store-1234abcd")
    assert topic == "recdock/ST-1/command/fault/store-store-1234abcd"
    payload = commands.sign_command(CENTRE, topic, command())
    doc = commands.verify_command(CENTRE.public_key(), topic, payload)
    assert doc["action"] == "acknowledge" and doc["by"] == "supervisor li"
    assert commands.parse_topic(topic) == ("ST-1", "fault", "store-store-1234abcd")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t, p: (t, p.replace(b"acknowledge", b"resolve")), "signature"),
        (lambda t, p: (t.replace("ST-1", "ST-2"), p), "signature"),
        (
            lambda t, p: (t, commands.sign_command(Ed25519PrivateKey.generate(), t, command())),
            "signature",
        ),
        (lambda t, p: (t, json.dumps({**command()}).encode()), "not signed"),
        (lambda t, p: (t, b"not json"), "not JSON"),
    ],
    ids=["payload altered", "moved to another station", "another key", "unsigned", "garbage"],
)
def test_a_command_the_centre_did_not_sign_for_this_topic_is_refused(change, why) -> None:
    topic = commands.topic("ST-1", "fault", "store-store-1234abcd")
    payload = commands.sign_command(CENTRE, topic, command())
    topic2, payload2 = change(topic, payload)
    with pytest.raises(BadSignature, match=why):
        commands.verify_command(CENTRE.public_key(), topic2, payload2)


def test_a_signed_command_must_name_its_topic_and_an_action_of_its_kind() -> None:
    topic = commands.topic("ST-1", "fault", "f1")
    for doc, why in (
        (command(station="ST-9"), "kind or station"),
        (command(kind="register"), "kind or station"),
        (command(action="delete_everything"), "actions"),
    ):
        with pytest.raises(BadSignature, match=why):
            commands.verify_command(
                CENTRE.public_key(), topic, commands.sign_command(CENTRE, topic, doc)
            )
    with pytest.raises(ValueError, match="unknown command kind"):
        commands.topic("ST-1", "shell", "x")
    assert commands.parse_topic("recdock/ST-1/fault/x") is None
    assert commands.parse_topic("recdock/ST-1/command/shell/x") is None


def test_a_command_lacking_its_kinds_fields_is_named() -> None:
    assert commands.missing_fields(command()) == []
    assert commands.missing_fields(command(fault_id="")) == ["fault_id"]
    register = command(kind="register", action="set", serial="A1", lifecycle="lost")
    register.pop("fault_id")
    assert commands.missing_fields(register) == []
    assert commands.missing_fields({**register, "lifecycle": "stolen"}) == [
        "lifecycle (one of in_service, in_maintenance, lost, retired)"
    ]
    assert "command_id" in commands.missing_fields({**register, "command_id": None})
