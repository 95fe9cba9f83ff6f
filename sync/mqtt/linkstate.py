"""Keeps the MQTT link's state where the station's rules read it (agent/station/linkstate.py):
a :class:`~sync.mqtt.link.LinkListener` that rewrites ``<home>/run/mqtt-link.json`` when the
link connects or drops. The ``station.broker`` rule opens a fault when the link has been down
longer than ``[faults] broker_unreachable_minutes``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agent.station.linkstate import LinkState, write_link_state

log = logging.getLogger(__name__)


class LinkStateFile:
    """Writes the link's state on each change (paho's network thread calls it)."""

    def __init__(
        self,
        home: Path,
        broker: str,
        last_error: Callable[[], str | None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.home = home
        self.broker = broker
        self.last_error = last_error
        self.now = now
        self._lock = threading.Lock()
        self._state: LinkState | None = None

    def started(self) -> None:
        """The service starts: not connected yet, from now (a broker away at boot counts)."""
        self._set(connected=False, force=True)

    def link_connected(self) -> None:
        self._set(connected=True)

    def link_disconnected(self) -> None:
        self._set(connected=False)

    def link_acked(self, token: int, ok: bool, reason: str) -> None:
        """Acknowledgements say nothing of the link's state."""

    def _set(self, *, connected: bool, force: bool = False) -> None:
        with self._lock:
            old = self._state
            if old is not None and old.connected == connected and not force:
                return  # still down (paho reports each failed attempt): the drop's time stays
            at = self.now().isoformat()
            last = at if connected else (old.last_connected_at if old else None)
            self._state = LinkState(
                connected, at, self.broker, last, self.last_error(), os.getpid()
            )
            try:
                write_link_state(self.home, self._state)
            except OSError as exc:
                log.warning("mqtt: the link's state could not be kept for the fault rules: %s", exc)
