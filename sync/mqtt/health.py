"""The station's health report on ``recdock/<station>/health``: signed, retained, periodic.

The report is gathered by agent/station/report.py (store space, backlogs and their age, clock
synchronised, version, bays); this thread signs it (sync/wire/signing.py, a retained state)
and hands it to the link at every connect, every ``[mqtt] health_interval_s``, and once more
before a clean stop (the link's ``stopped`` follows it on the same connection, so it arrives
first).

It goes straight to the link, not through the outbox: a report is a measurement, not a state
change (rule 3 covers state changes), and a report that waited in the outbox while the broker
was away would arrive stale; the next connect publishes a fresh one instead. Nor is it the
status topic: the broker's Last Will replaces that topic's payload with ``offline``, which
would erase the last report the centre should still show of a station that went away.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agent.catalog import Catalog
from agent.config import Config
from agent.errors import RecdockError
from agent.seams.clock import StationClock
from agent.station.report import station_report
from sync.mqtt.link import Link
from sync.wire import topics
from sync.wire.chain import canonical
from sync.wire.signing import sign_payload

logger = logging.getLogger(__name__)


class HealthReporter:
    """Publishes the signed health report through ``link``; a :class:`LinkListener` of it."""

    def __init__(
        self,
        link: Link,
        config: Config,
        home: Path,
        clock: StationClock,
        *,
        signing_key: Any,
    ) -> None:
        self.link = link
        self.config = config
        self.home = home
        self.clock = clock
        self.signing_key = signing_key
        self.topic = topics.health(config.station_id)
        self.interval_s = float(config.mqtt.health_interval_s)
        self.published = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._catalog: Catalog | None = None
        self._thread = threading.Thread(target=self._run, name="health-report", daemon=True)
        link.add_listener(self)

    # -- LinkListener (paho's network thread: only wake the reporter) --------------------

    def link_connected(self) -> None:
        self._wake.set()

    def link_disconnected(self) -> None:
        """Nothing to do: the next connect publishes a fresh report."""

    def link_acked(self, token: int, ok: bool, reason: str) -> None:
        """Nothing to do: a report that was not taken is superseded by the next one."""

    # -- the report ----------------------------------------------------------------------

    def payload(self) -> bytes:
        """The report as it leaves the station: canonical JSON with its signature."""
        if self._catalog is None:
            self._catalog = Catalog(
                self.home / "catalog.db", station_id=self.config.station_id, create=False
            )
        report = station_report(self._catalog, self.config, self.home, self.clock)
        return sign_payload(self.signing_key, self.topic, canonical(report).encode("utf-8"))

    def publish_once(self) -> bool:
        """Measure and publish one report; whether the link took it. A report that cannot be
        measured (the catalog busy or unreadable, the store's disk gone) is logged and tried
        again at the next one: the station's work goes on."""
        if not self.link.is_connected():
            return False
        try:
            payload = self.payload()
        except (RecdockError, OSError, sqlite3.Error, ValueError):
            logger.exception(
                "health report: could not be measured; trying again in %.0f s", self.interval_s
            )
            return False
        taken = self.link.publish(self.topic, payload, qos=1, retain=True) is not None
        if taken:
            self.published += 1
        return taken

    # -- life cycle ----------------------------------------------------------------------

    def _run(self) -> None:
        due = 0.0  # monotonic time of the next periodic report
        while not self._stop.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            self.publish_once()
            due = time.monotonic() + self.interval_s

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and publish the last report (call before the link's ``stopped``)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.publish_once()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
