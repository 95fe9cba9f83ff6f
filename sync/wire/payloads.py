"""The payloads on the wire: their JSON Schemas (sync/wire/schemas/), topic parsing, the status.

docs/mqtt.md documents every payload; the central consumer validates against these schemas.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.wire import topics
from sync.wire.chain import canonical

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
PAYLOAD_KINDS = ("status", "health", "bay", "recorder", "event", "fault")
STATUS_STATES = ("online", "offline", "stopped")


def status_payload(station: str, state: str, *, client_id: str | None = None) -> bytes:
    """The retained station status. The Last Will (``offline``) carries no time: the broker
    publishes it when it notices the silence, and the receiver notes when it arrived."""
    if state not in STATUS_STATES:
        raise ValueError(f"status state must be one of {STATUS_STATES}, not {state!r}")
    doc: dict[str, Any] = {"station": station, "state": state}
    if state != "offline":
        doc["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    if client_id:
        doc["client_id"] = client_id
    return canonical(doc).encode("utf-8")


def decode_payload(payload: bytes) -> Any:
    """A payload as JSON; an empty payload (a cleared retained topic) is None."""
    if not payload:
        return None
    return json.loads(payload.decode("utf-8"))


def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one payload kind (``status``, ``health``, ``bay``, ``recorder``,
    ``event``, ``fault``), from ``sync/wire/schemas/<kind>.json``."""
    if kind not in PAYLOAD_KINDS:
        raise ValueError(f"unknown payload kind {kind!r}; one of {PAYLOAD_KINDS}")
    return json.loads((SCHEMA_DIR / f"{kind}.json").read_text(encoding="utf-8"))


def topic_kind(topic: str) -> tuple[str, str, str | None] | None:
    """``recdock/<station>/<kind>[/<key>]`` -> (station, kind, key), or None when not ours."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != topics.PREFIX:
        return None
    station, kind = parts[1], parts[2]
    if kind in ("status", "health", "event") and len(parts) == 3:
        return station, kind, None
    if kind in ("bay", "recorder", "fault") and len(parts) == 4 and parts[3]:
        return station, kind, parts[3]
    return None
