"""The station fault: a full store or an unusable catalog stops every bay until it clears.

It is reported as a fault (audited, retained on MQTT) and every bay's LED shows STATION_FAULT.
A fault left open by the previous run is shown again at start-up; a store fault clears once the
store has room above its reserve again.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from agent.catalog.faults import open_kinds, report_fault, resolve_fault
from agent.errors import CatalogError, CatalogFullError

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.seams.indicators.devices import Indicators

log = logging.getLogger(__name__)

#: Fault kinds that stop every bay.
STATION_FAULT_KINDS = ("store", "catalog")


class StationFault:
    """Whether the station fault is on, and the indicator that shows it."""

    def __init__(self, home: Path, reserve_bytes: int, indicators: Indicators) -> None:
        self.home = home
        self.reserve_bytes = reserve_bytes
        self.indicators = indicators
        self.active = False
        self._lock = threading.Lock()

    def restore(self, catalog: Catalog) -> None:
        """At start-up: a station fault left open by the previous run is still a fault; show
        it, and let :meth:`check` clear it when its cause is gone."""
        kinds = open_kinds(catalog)
        if kinds & set(STATION_FAULT_KINDS):
            log.error("STATION FAULT still open from before the start: %s", sorted(kinds))
            self.active = True
            self.indicators.station_fault(True)

    def raised(self, exc: Exception, catalog: Catalog) -> None:
        """A store or catalog error stopped a bay's work: report it and show it everywhere.

        A full disk under the catalog is a store fault (the station's disk is full), which
        clears by itself once there is room again; the catalog is fine."""
        full = isinstance(exc, CatalogFullError)
        kind = "catalog" if isinstance(exc, CatalogError) and not full else "store"
        with self._lock:
            try:
                report_fault(catalog, kind, kind, str(exc))
            except Exception:
                log.exception("the fault could not be recorded (catalog unusable?)")
            if not self.active:
                log.error("STATION FAULT (%s): %s", kind, exc)
                self.active = True
                self.indicators.station_fault(True)

    def cleared(self, catalog: Catalog) -> None:
        """An offload went through: check at once whether the fault is gone."""
        if self.active:
            self.check(catalog)

    def check(self, catalog: Catalog) -> None:
        """Clear a store-full fault once the store has room again."""
        if not self.active:
            return
        store = self.home / "store"
        try:
            free = shutil.disk_usage(store if store.exists() else self.home).free
        except OSError:
            return
        if free <= self.reserve_bytes:
            return
        with self._lock:
            note = f"free space {free} bytes above the reserve"
            if resolve_fault(catalog, "store", "store", note):
                log.info("store fault cleared: %d bytes free", free)
            if not open_kinds(catalog) & set(STATION_FAULT_KINDS):
                self.active = False
                self.indicators.station_fault(False)
