"""MQTT topic names, in one place (docs/mqtt.md documents them).

Everything that goes into a topic level and comes from outside (serials, fault
ids) is reduced to ``[A-Za-z0-9_-]``: MQTT gives ``/``, ``+`` and ``#`` meaning, and RabbitMQ's
MQTT plugin turns a ``.`` into ``/`` on the way out (it routes on ``.``-separated keys), so a
level with a dot would reach the centre as two levels, under a topic its signature does not
cover (docs/deployment.md, "Brokers").
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "recdock"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def level(value: str) -> str:
    """One safe topic level; distinct inputs that clean to the same text get a hash suffix."""
    clean = _UNSAFE.sub("_", value)[:64] or "_"
    if clean != value:
        clean = (
            f"{clean}~{hashlib.sha256(value.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        )
    return clean


def status(station: str) -> str:
    return f"{PREFIX}/{station}/status"


def bay(station: str, number: int) -> str:
    return f"{PREFIX}/{station}/bay/{number}"


def recorder(station: str, serial: str) -> str:
    return f"{PREFIX}/{station}/recorder/{level(serial)}"


def health(station: str) -> str:
    """The station's periodic health report (retained): store space, backlogs, clock."""
    return f"{PREFIX}/{station}/health"


def event(station: str) -> str:
    return f"{PREFIX}/{station}/event"


def fault(station: str, fault_id: str) -> str:
    return f"{PREFIX}/{station}/fault/{level(fault_id)}"
