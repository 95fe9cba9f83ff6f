"""The centre's compiled payload validation says what jsonschema says (central/messages.py).

The JSON Schema files in sync/wire/schemas/ are the source of truth; the centre compiles them
(fastjsonschema) for speed. Each payload below is judged by the compiled validator and by
jsonschema alone: both take the same ones, both refuse the same ones, and a refusal names
the wrong field.
"""

from __future__ import annotations

import copy

import pytest

from central.messages import InvalidMessage, PayloadValidator

SIG = "A" * 86 + "=="
EVENT = {
    "event_id": "ST-1:cat:1",
    "station": "ST-1",
    "seq": 1,
    "at": "2026-12-01T10:00:00+00:00",
    "kind": "file.stored",
    "subject": "R-1",
    "data": {"size": 1},
    "prev_hash": "0" * 64,
    "hash": "a" * 64,
    "sig": SIG,
}
STATUS = {"station": "ST-1", "state": "online", "at": "2026-12-01T10:00:00+00:00", "sig": SIG}


def _with(doc: dict, **changes: object) -> dict:
    out = copy.deepcopy(doc)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


CASES = [
    ("event", EVENT, None),
    ("status", STATUS, None),
    ("event", _with(EVENT, seq="1"), "seq"),
    ("event", _with(EVENT, seq=0), "seq"),
    ("event", _with(EVENT, seq=True), "seq"),
    ("event", _with(EVENT, hash=...), "(top level)"),
    ("event", _with(EVENT, extra=1), "(top level)"),
    ("event", _with(EVENT, prev_hash="g" * 64), "prev_hash"),
    ("event", _with(EVENT, station="bad station"), "station"),
    ("event", _with(EVENT, data=[]), "data"),
    ("event", _with(EVENT, kind=""), "kind"),
    ("status", _with(STATUS, state=...), "(top level)"),
    ("status", _with(STATUS, station=7), "station"),
    ("status", [], "(top level)"),
]


@pytest.mark.parametrize(("kind", "doc", "field"), CASES)
def test_compiled_validation_agrees_with_jsonschema(kind: str, doc: object, field) -> None:
    compiled, reference = PayloadValidator(), PayloadValidator(compiled=False)
    assert compiled._compiled, "the compiled validators are in use"
    verdicts = []
    for validator in (compiled, reference):
        try:
            validator.check(kind, doc)
            verdicts.append(None)
        except InvalidMessage as exc:
            verdicts.append(str(exc))
    if field is None:
        assert verdicts == [None, None]
        return
    assert None not in verdicts, verdicts
    assert verdicts[0] == verdicts[1]  # the same message: jsonschema words the refusal
    assert verdicts[0].startswith(f"{kind} payload: {field}: "), verdicts[0]
