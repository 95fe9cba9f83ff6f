"""The MQTT link's state as the station's rules see it: ``<home>/run/mqtt-link.json``.

The link runs in the MQTT service (sync/mqtt/, above the station's core: rule of the layers,
docs/architecture.md), the station rules in the daemon's loop (agent/station/health.py). The
service writes this file whenever the link connects or drops (sync/mqtt/linkstate.py), and
the ``station.broker`` rule reads it: whether the link is connected, since when it is in that
state, the broker and the last connection error. The file is replaced whole (written to a temp
name, then renamed), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = Path("run") / "mqtt-link.json"


@dataclass(frozen=True)
class LinkState:
    connected: bool
    since: str  # ISO time this state began (disconnected: the drop, or the service's start)
    broker: str  # host:port
    last_connected_at: str | None = None  # never connected in this run: None
    last_error: str | None = None
    pid: int | None = None


def write_link_state(home: Path, state: LinkState) -> None:
    path = home / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(path)


def read_link_state(home: Path) -> LinkState | None:
    """The state the MQTT service last wrote; None when it never wrote one (not running)."""
    try:
        data = json.loads((home / FILE).read_text())
        return LinkState(**data)
    except (OSError, ValueError, TypeError):
        return None
