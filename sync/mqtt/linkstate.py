"""Keeps the MQTT link's state where the station's rules read it (agent/station/linkstate.py):
a :class:`~sync.mqtt.link.LinkListener` that rewrites ``<home>/run/mqtt-link.json`` when the
link connects or drops. The ``station.broker`` rule opens a fault when the link has been down
longer than ``[faults] broker_unreachable_minutes``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agent.station.linkstate import MQTT_LINK, LinkStateWriter


class LinkStateFile:
    """Writes the link's state on each change (paho's network thread calls it)."""

    def __init__(
        self,
        home: Path,
        broker: str,
        last_error: Callable[[], str | None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.last_error = last_error
        # no refresh: paho reports each failed attempt, and the drop's time must stay
        self.writer = LinkStateWriter(home, MQTT_LINK, broker, now=now)

    def started(self) -> None:
        """The service starts: not connected yet, from now (a broker away at boot counts)."""
        self.writer.record(False, self.last_error(), restart=True)

    def link_connected(self) -> None:
        self.writer.record(True, self.last_error())

    def link_disconnected(self) -> None:
        self.writer.record(False, self.last_error())

    def link_acked(self, token: int, ok: bool, reason: str) -> None:
        """Acknowledgements say nothing of the link's state."""
