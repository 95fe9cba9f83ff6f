"""The fault rules the daemon runs on a schedule rather than at a docking (docs/faults.md):
overdue recorders, the station's own health, the registers' conflicts, the faults the
centre has not confirmed in time (shown on the empty bays), the battery of the recorders
that stay docked, read again (agent/station/charge.py); and, every
``retention.purge_every_minutes``, the purge pass (agent/station/retention.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog.faults import list_faults
from agent.checks.faults import overdue
from agent.config import Config
from agent.errors import RecdockError
from agent.seams.health import Sensors
from agent.station.charge import ChargeWatch
from agent.station.health import StationHealth
from agent.station.register import check_conflicts
from agent.station.retention import purge
from agent.station.status import daemon_info
from agent.store import Store

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.seams.indicators.devices import Indicators
    from agent.seams.mount import Mounter

log = logging.getLogger(__name__)


class ScheduledRules:
    def __init__(
        self,
        config: Config,
        home: Path,
        indicators: Indicators,
        clock: object,
        sensors: Sensors | None,
        mounter: Mounter | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.indicators = indicators
        self.health = StationHealth(config, home, sensors, clock) if sensors else None  # type: ignore[arg-type]
        self.clock = clock
        self.next_purge = 0.0  # time.monotonic() of the next purge pass
        self.unreported = False  # a fault has not reached the centre in time
        self.charge = ChargeWatch(config, home, mounter, clock) if mounter else None

    def started(self, catalog: Catalog, state_file: Path) -> None:
        """At start-up: the previous run's state file is still there: it never stopped
        cleanly (call before this run writes its own)."""
        previous = daemon_info(self.home)
        if self.health is None or not state_file.exists() or previous.get("running"):
            return
        previous.pop("running", None)
        self.health.restarted(catalog, previous)

    def run(self, catalog: Catalog, dockings: list[Any] | None = None) -> None:
        """Every rule once; ``dockings``: the recorders docked now (their battery read again)."""
        if self.charge is not None:
            self.charge.poll(dockings or [])
        try:
            overdue(catalog, self.config)
            if self.health is not None:
                self.health.check(catalog)
            check_conflicts(catalog, self.config)
            self.show_unreported(catalog)
        except RecdockError:
            log.exception("the scheduled fault rules could not be applied")
        self.purge_when_due(catalog)

    def stop(self) -> None:
        """At a clean stop: the battery readings under way end (and unmount) first."""
        if self.charge is not None:
            self.charge.stop()

    def purge_when_due(self, catalog: Catalog) -> None:
        """The purge pass, every ``retention.purge_every_minutes`` (none on a new station)."""
        cfg = self.config.retention
        if not cfg.enabled or time.monotonic() < self.next_purge:
            return
        self.next_purge = time.monotonic() + cfg.purge_every_minutes * 60
        if catalog.is_empty():
            return
        store = Store(self.home / "store", reserve_bytes=self.config.store.reserve_bytes)
        try:
            report = purge(catalog, store, self.config, now=self.clock.now(), by="station")  # type: ignore[attr-defined]
        except RecdockError:
            log.exception("the purge pass stopped; nothing more is purged until the next one")
            return
        if report.purged or report.finished:
            log.info("purge pass: %d file(s), %d bytes", len(report.purged), report.bytes)

    def show_unreported(self, catalog: Catalog) -> None:
        """Faults the centre has not confirmed in time show on the empty bays."""
        after = self.config.faults.unreported_after_hours
        late = [f.id for f in list_faults(catalog) if f.unreported(after)]
        if bool(late) != self.unreported:
            log.warning("faults not reported to the centre in %g h: %s", after, late or "none now")
            self.unreported = bool(late)
        self.indicators.unreported(bool(late))
