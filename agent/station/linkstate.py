"""The state of the station's two links out, as the station's rules and `recdock status` see
them: ``<home>/run/mqtt-link.json`` (the MQTT broker) and ``<home>/run/centre-link.json`` (the
central store's tus endpoint).

The links run in the sync services (sync/mqtt/, sync/upload/, above the station's core: rule
of the layers, docs/architecture.md), the station rules in the daemon's loop
(agent/station/health.py). A service keeps its link's state with a :class:`LinkStateWriter`
(the MQTT link on every connect and drop, sync/mqtt/linkstate.py; the uploader on its contacts
with the centre, sync/upload/centrelink.py), and the ``station.broker`` and ``station.centre``
rules read it: whether the link is up, since when it is in that state, the other end and the
last error. The file is replaced whole (written to a temp name, then renamed), so a reader
never sees half of it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

MQTT_LINK = "mqtt-link.json"
CENTRE_LINK = "centre-link.json"


@dataclass(frozen=True)
class LinkState:
    connected: bool  # the other end answered (the centre: any HTTP answer, even 4xx)
    since: str  # ISO time this state began (disconnected: the drop, or the service's start)
    peer: str  # the broker's host:port, or the centre's endpoint (never its credentials)
    last_connected_at: str | None = None  # the last time it was up; never in this run: None
    last_error: str | None = None
    pid: int | None = None
    failure: str | None = None  # why unreachable: refused, dns, tls, timeout, connection
    checked_at: str | None = None  # when the state was last confirmed


def write_link_state(home: Path, state: LinkState, name: str = MQTT_LINK) -> None:
    path = home / "run" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(path)


def read_link_state(home: Path, name: str = MQTT_LINK) -> LinkState | None:
    """The state the service last wrote; None when it never wrote one (not running, or the
    link is not configured)."""
    try:
        data = json.loads((home / "run" / name).read_text())
        return LinkState(**data)
    except (OSError, ValueError, TypeError):
        return None


class LinkStateWriter:
    """Keeps one link's state in its run file; thread-safe (paho's network thread, the
    uploader's thread).

    A change of state (up to down, down to up, or ``restart``) starts a new ``since``. The same
    state seen again keeps its ``since`` (a link still down keeps the time it dropped) and is
    written again only when ``refresh_s`` is set and that long passed since the last write
    (or ``force``): so the file says when the state was last confirmed without one write per
    request."""

    def __init__(
        self,
        home: Path,
        name: str,
        peer: str,
        *,
        refresh_s: float | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.home = home
        self.name = name
        self.peer = peer
        self.refresh_s = refresh_s
        self.now = now
        self._lock = threading.Lock()
        self._state: LinkState | None = None
        self._written: datetime | None = None

    def resume(self) -> None:
        """Go on from the state the file holds for the same peer (a previous run's): a link
        down across a restart keeps the time it went down."""
        with self._lock:
            old = read_link_state(self.home, self.name)
            if self._state is None and old is not None and old.peer == self.peer:
                self._state = old

    def record(
        self,
        connected: bool,
        error: str | None = None,
        failure: str | None = None,
        *,
        restart: bool = False,
        force: bool = False,
    ) -> None:
        """The link was seen up (``connected``) or down (with its ``error``, ``failure``);
        ``restart``: a new state from now whatever the last was (the service starts);
        ``force``: write it now even when the last write still says it."""
        with self._lock:
            at = self.now()
            new = self._next(self._state, connected, error, failure, at, restart, force)
            if new is None:
                return
            self._state, self._written = new, at
            try:
                write_link_state(self.home, new, self.name)
            except OSError as exc:
                log.warning("%s: the link's state could not be kept: %s", self.name, exc)

    def _next(
        self,
        old: LinkState | None,
        connected: bool,
        error: str | None,
        failure: str | None,
        at: datetime,
        restart: bool,
        force: bool,
    ) -> LinkState | None:
        """The state to write, or None when the one written still says it."""
        when = at.isoformat()
        if old is None or old.connected != connected or restart:
            last = when if connected else (old.last_connected_at if old else None)
            return LinkState(connected, when, self.peer, last, error, os.getpid(), failure, when)
        if not (force or self._refresh_due(at)):
            return None
        pid = os.getpid()
        if connected:
            return replace(old, last_connected_at=when, checked_at=when, pid=pid)
        return replace(old, last_error=error, failure=failure, checked_at=when, pid=pid)

    def _refresh_due(self, at: datetime) -> bool:
        if self.refresh_s is None:
            return False
        return self._written is None or (at - self._written).total_seconds() >= self.refresh_s
