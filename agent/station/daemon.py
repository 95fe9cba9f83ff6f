"""The station daemon (`recdock run`): docked recorders in, verdicts out, one bay at a time each.

One main thread takes dock events from a queue and, per docking, starts a worker thread for
that bay (agent/station/bay.py). The officer-facing step comes first and fast: the match (by
USB ids, from udev's attributes, no mount needed) and the "recognised" LED are shown when the
event is dispatched, before the worker waits for one of the
``station.max_concurrent_offloads`` slots.

Storage no profile matches is never mounted at all: the bay shows UNKNOWN_DEVICE, and the
docking is an audited event ("device.unknown"), not a station fault. A station fault (store
full, catalog unusable) is reported as a fault and every bay shows STATION_FAULT until it
clears (agent/station/faults.py). Every bay state change is one transaction: the ``bays`` row,
an audit entry and the retained bay topic in the outbox (rule 3, agent/catalog/bays.py).

SIGTERM stops cleanly: the file in flight is abandoned (its temp file removed), what is
verified is catalogued, everything is unmounted, systemd hears STOPPING=1, the exit code is 0,
and the next start resumes (the offload recovers an interrupted session). Under systemd the
daemon says READY=1 once the dock listens and pings the watchdog from a thread that checks the
main loop is alive.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.catalog import Catalog, now_utc, open_catalog
from agent.catalog.bays import set_bay_state, states
from agent.catalog.faults import report_fault
from agent.catalog.station import set_station_status
from agent.config import Config
from agent.errors import RecdockError
from agent.recorder.profiles import ProfileSet
from agent.seams import sdnotify
from agent.seams.dock import Dock, DockEvent, match_event
from agent.seams.health import Sensors
from agent.seams.indicators.devices import Indicators
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mounter
from agent.seams.signals import SignalRelay
from agent.station.bay import BayWork, Docking
from agent.station.faults import StationFault
from agent.station.logs import set_log_context
from agent.station.schedule import ScheduledRules
from agent.station.status import StationView

log = logging.getLogger(__name__)

HEARTBEAT_STALE_S = 10.0
FAULT_CHECK_EVERY_S = 10.0


class Service(Protocol):
    """A background part of the station (the MQTT publisher, the uploader): sync/services.py."""

    def describe(self) -> str: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wake(self) -> None: ...  # new recordings or events are waiting


class Station:
    def __init__(
        self,
        config: Config,
        home: Path,
        *,
        dock: Dock,
        indicators: Indicators,
        clock: Any,
        profiles: ProfileSet,
        mounter: Mounter,
        simulate: bool = False,
        apply_firmware: Callable[[Path, Any], None] | None = None,
        services: list[Service] | None = None,
        config_fingerprint: dict[str, Any] | None = None,
        sensors: Sensors | None = None,
    ) -> None:
        self.config = config
        self.config_fingerprint = config_fingerprint
        self.home = home
        self.dock = dock
        self.indicators = indicators
        self.clock = clock
        self.profiles = profiles
        self.mounter = mounter
        self.simulate = simulate
        self.apply_firmware = apply_firmware
        self.services = list(services or [])
        self.events: queue.Queue[DockEvent] = queue.Queue()
        self.dockings: dict[str, Docking] = {}
        self.slots = threading.BoundedSemaphore(config.station.max_concurrent_offloads)
        self.stopping = threading.Event()
        self.heartbeat = time.monotonic()
        self.faults = StationFault(home, config.store.reserve_bytes, indicators)
        # serial -> profile name of every registered device
        self.registered = {d.serial: d.profile for d in config.devices}
        self.catalog: Catalog | None = None
        self.state_file = home / "run" / "station.json"
        self.sensors = sensors
        self.scheduled = ScheduledRules(config, home, indicators, clock, sensors, mounter)
        self._serials = threading.Lock()  # dockings claim their serial one at a time

    def bays(self) -> list[int]:
        return sorted(set(self.config.bays.values()) | set(self.config.indicators.bays))

    def seams(self) -> list[str]:
        seams = [
            self.dock.describe(),
            self.indicators.describe(),
            f"clock: {self.clock.describe()}",
        ]
        return seams + [self.sensors.describe()] if self.sensors else seams

    def show(self, bay: int | None, state: State) -> None:
        if bay is not None and bay in self.indicators.bays:
            self.indicators.show(bay, state)

    def same_serial(self, docking: Docking, serial: str) -> list[Docking]:
        """Claim ``serial`` for ``docking``; the other recorders docked now that claim it too
        (rule 8: two recorders with one serial are a conflict, shown at both bays)."""
        with self._serials:
            docking.device = serial
            return [
                o
                for o in list(self.dockings.values())
                if o is not docking and o.device == serial and not o.gone.is_set()
            ]

    # -- life cycle ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop; every bay's work abandons its file in flight at once.

        Never call it from a signal handler (it sets events): install_signal_handlers runs
        it on a relay thread (agent/seams/signals.py says why).
        """
        self.stopping.set()
        for d in list(self.dockings.values()):
            d.stop.set()

    def run(self) -> int:
        catalog = self._start()
        try:
            next_fault_check = 0.0
            while not self.stopping.is_set():
                self.heartbeat = time.monotonic()
                try:
                    event = self.events.get(timeout=0.5)
                except queue.Empty:
                    event = None
                if event is not None:
                    self._dispatch(event)
                self._reap()
                if time.monotonic() >= next_fault_check:
                    self.faults.check(catalog)
                    self.scheduled.run(catalog, list(self.dockings.values()))
                    next_fault_check = time.monotonic() + FAULT_CHECK_EVERY_S
        finally:
            self._shutdown()
        return 0

    def _start(self) -> Catalog:
        set_log_context(None, None)
        for line in self.seams():
            log.info("%s", line)
        self.catalog = catalog = open_catalog(self.home, self.config.station_id)
        self.mounter.clean_stale()
        self._reset_bays("station started")
        self.faults.restore(catalog)
        set_station_status(catalog, "online", {"pid": os.getpid(), "simulate": self.simulate})
        self.scheduled.started(catalog, self.state_file)
        self._write_state_file()
        self.dock.start(self.events.put)
        for service in self.services:
            log.info("%s", service.describe())
            service.start()
        log.info("station %s ready: bays %s", self.config.station_id, self.bays() or "none")
        sdnotify.ready(f"listening; bays {self.bays()}")
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        return catalog

    def _shutdown(self) -> None:
        set_log_context(None, None)
        for d in list(self.dockings.values()):
            d.stop.set()  # first: the file in flight is abandoned at its next buffer
        log.info("stopping: abandoning the files in flight, unmounting")
        sdnotify.stopping("stopping")
        self.dock.stop()
        for d in list(self.dockings.values()):
            if d.thread is not None:
                d.thread.join(timeout=60)
                if d.thread.is_alive():
                    log.error("bay %s: its work did not stop within 60 s", d.bay)
        self.scheduled.stop()  # the battery readings under way unmount their recorders
        for d in list(self.dockings.values()):
            if d.mount is not None:
                self.mounter.unmount(d.mount)
        assert self.catalog is not None
        try:
            self._reset_bays("station stopped")
            set_station_status(self.catalog, "stopped", {"pid": os.getpid()})
        except RecdockError:
            log.exception("could not record the clean stop")
        for service in reversed(self.services):  # after the last events were queued
            try:
                service.stop()
            except Exception:
                log.exception("%s did not stop cleanly", service.describe())
        self.indicators.close()
        self.state_file.unlink(missing_ok=True)
        log.info("stopped")

    def _write_state_file(self) -> None:
        data = {
            "pid": os.getpid(),
            "started_at": now_utc(),
            "simulate": self.simulate,
            "seams": self.seams(),
            "mount_dir": str(self.mounter.mount_dir),
        }
        write_state_file(
            self.state_file, data, StationView.of(self.config), self.config_fingerprint
        )

    def _reset_bays(self, why: str) -> None:
        assert self.catalog is not None
        shown = states(self.catalog)
        for bay in sorted(set(self.bays()) | set(shown)):
            if shown.get(bay) != State.IDLE.value:
                set_bay_state(self.catalog, bay, State.IDLE, detail=why)
            if bay in self.indicators.bays:
                self.indicators.show(bay, State.IDLE)

    def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        log.info("systemd watchdog: pinging every %.1f s while the main loop is alive", interval)
        while not self.stopping.wait(interval):
            if time.monotonic() - self.heartbeat < HEARTBEAT_STALE_S:
                sdnotify.watchdog()
            else:
                log.error(
                    "main loop stalled for %.0f s: watchdog not pinged",
                    time.monotonic() - self.heartbeat,
                )

    # -- events ----------------------------------------------------------------------------

    def _dispatch(self, event: DockEvent) -> None:
        set_log_context(event.bay, event.label())
        try:
            if event.kind == "add":
                self._docked(event)
            else:
                self._undocked(event)
        except RecdockError as exc:
            log.exception("%s event not handled", event.kind)
            assert self.catalog is not None
            self.faults.raised(exc, self.catalog)
        finally:
            set_log_context(None, None)

    def _docked(self, event: DockEvent) -> None:
        assert self.catalog is not None
        if self.dockings.get(event.key) is not None:
            log.warning("docked again without an unplug event: the earlier docking ends")
            self._undocked(event)
        if event.bay is None:
            report_fault(
                self.catalog,
                "config",
                f"port {event.id_path}",
                f"USB port {event.id_path} is not in [bays]: recorders docked there get no LED; "
                "add it to the config",
                severity="warning",
            )
        docking = Docking(event, match_event(event, self.profiles, self.registered))
        self.dockings[event.key] = docking
        if docking.match is None:
            self._unknown_device(docking)
            return
        self.show(event.bay, State.RECOGNISED)
        log.info("recognised as %s", docking.match.profile.name)
        set_bay_state(
            self.catalog,
            event.bay,
            State.RECOGNISED,
            device_serial=event.serial,
            profile=docking.match.profile.name,
            port=docking.port,
            detail="waiting for an offload slot",
        )
        work = BayWork(self, docking)
        docking.thread = threading.Thread(target=work.run, name=f"bay-{event.bay}", daemon=True)
        docking.thread.start()

    def _unknown_device(self, docking: Docking) -> None:
        """Storage no profile and no registered device matches: never mounted (rule 5)."""
        assert self.catalog is not None
        event = docking.event
        # shown first: the officer must see it within a second
        self.show(event.bay, State.UNKNOWN_DEVICE)
        docking.verdict = State.UNKNOWN_DEVICE
        reason = (
            f"storage {event.vendor_id}:{event.product_id}"
            f"{' serial ' + event.serial if event.serial else ''} matches no firmware profile "
            "and no registered device: not read, not written"
        )
        log.warning("unknown device: %s", reason)
        set_bay_state(
            self.catalog,
            event.bay,
            State.UNKNOWN_DEVICE,
            device_serial=event.serial,
            reason=reason,
            port=docking.port,
            also=(
                "device.unknown",
                event.serial or f"{event.vendor_id}:{event.product_id}",
                {
                    "bay": event.bay,
                    "vendor_id": event.vendor_id,
                    "product_id": event.product_id,
                    "serial": event.serial,
                    "port": event.id_path,
                    "fs_type": event.fs_type,
                },
            ),
        )

    def _undocked(self, event: DockEvent) -> None:
        assert self.catalog is not None
        docking = self.dockings.get(event.key)
        if docking is None:
            return
        log.info("undocked")
        if docking.device is not None:
            from agent.catalog.history import undocked

            undocked(self.catalog, docking.device)
        with docking.lock:
            docking.gone.set()
            docking.stop.set()
            finished = docking.verdict is not None
        if docking.mount is not None and event.simulated:
            self.mounter.yank(docking.mount)  # a simulated pull: the mount dies like a cable
        if finished:
            self.dockings.pop(event.key, None)
            with docking.lock:  # after the verdict was shown in full (see BayWork.verdict)
                self.show(docking.bay, State.IDLE)
                set_bay_state(
                    self.catalog, docking.bay, State.IDLE, detail="undocked", port=docking.port
                )
        # otherwise the worker notices, shows YANKED, and _reap forgets the docking

    def _reap(self) -> None:
        for key, d in list(self.dockings.items()):
            if d.thread is not None and not d.thread.is_alive() and d.gone.is_set():
                self.dockings.pop(key, None)


def install_signal_handlers(station: Station) -> SignalRelay:
    """SIGTERM and SIGINT stop the station (close the relay when the station has stopped)."""
    return SignalRelay(station.request_stop)


def write_state_file(
    path: Path, data: dict[str, Any], view: StationView, fingerprint: dict[str, Any] | None
) -> None:
    """``<home>/run/station.json``, replaced whole: ``data`` and, when the configuration's
    fingerprint is known, what `recdock status` may show of it without reading it."""
    if fingerprint is not None:
        data = {**data, "config": {"fingerprint": fingerprint, **view.as_json()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
