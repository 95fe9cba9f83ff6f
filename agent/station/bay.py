"""One docking's pipeline, from plug-in to verdict, in the bay's own thread.

    wait for an offload slot → mount read-only → offload (keep the source) → check its file
    system read-only → (only if that passed and the offload is complete) remount read-write →
    clear the verified files → pre-shift checks (the clock is set, the recorder reconnected,
    when writable) → checks stored → verdict (READY / NOT_READY and why) → unmount

A recorder pulled out at any step stops that bay's work; the offload makes sure nothing is lost
(verified copies are catalogued, the rest stays on the recorder) and the bay shows YANKED.
Whatever fails, the bay ends with a verdict: an officer never faces a bay stuck "working".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.catalog import Catalog, open_catalog
from agent.catalog.bays import set_bay_state, set_progress
from agent.catalog.faults import report_fault
from agent.config import Config
from agent.errors import (
    CatalogError,
    RecdockError,
    RecorderGoneError,
    StoreError,
    StoreFullError,
)
from agent.offload import Offloader, OffloadReport, Stopped
from agent.offload.faults import conflict_found
from agent.recorder.media import list_media
from agent.seams.dock import DockEvent, Matched
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mount, Mounter, MountError
from agent.station.faults import StationFault
from agent.station.findings import (
    WriteGate,
    identity_findings,
    tell_conflict,
    with_conflict,
    write_gate,
)
from agent.station.logs import set_log_context
from agent.station.mounts import mount_failed, mounted_cleanly
from agent.station.register import lifecycle_findings

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
LEFT_BEFORE_VERDICT = (
    "the recorder left the bay before its verdict; nothing was lost, dock it again to finish"
)


class Yanked(RecdockError):
    """The recorder left its bay before the verdict."""


@dataclass
class Docking:
    """One recorder at one bay, from plug-in to unplug."""

    event: DockEvent
    match: Matched | None
    stop: threading.Event = field(default_factory=threading.Event)
    gone: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    mount: Mount | None = None
    thread: threading.Thread | None = None
    verdict: State | None = None  # set once the bay showed its verdict
    reason: str | None = None  # why, when the verdict is not READY
    device: str | None = None  # serial, once known
    #: the offload's report once it returned: a verdict reached by an exception (the
    #: recorder yanked) still names the device and the session
    report: OffloadReport | None = None
    #: another recorder docked now presents the same serial (rule 8); set by its bay
    conflict: str | None = None

    @property
    def bay(self) -> int | None:
        return self.event.bay

    @property
    def port(self) -> str | None:
        """The USB port, for a docking at a port that has no bay number."""
        return self.event.id_path if self.bay is None else None


class Station(Protocol):
    """What a bay's work uses of the station (agent/station/daemon.py)."""

    config: Config
    home: Path
    clock: Any
    mounter: Mounter
    slots: threading.BoundedSemaphore
    stopping: threading.Event
    faults: StationFault
    services: list[Any]
    apply_firmware: Callable[[Path, Any], None] | None

    def show(self, bay: int | None, state: State) -> None: ...
    def same_serial(self, docking: Docking, serial: str) -> list[Docking]: ...


class BayWork:
    """The work on one docking, run by :meth:`run` in the bay's thread."""

    def __init__(self, station: Station, docking: Docking) -> None:
        self.station = station
        self.d = docking
        self.catalog: Catalog | None = None  # this bay thread's, while it works

    def run(self) -> None:
        """Whatever fails, the bay ends with a verdict."""
        d = self.d
        try:
            self._work()
        except Exception:
            # the handlers themselves failed (the catalog unusable, say): the officer must
            # still see that this recorder is not ready, and the bay must not stay "working"
            log.exception("bay %s: the work failed without a verdict", d.bay)
            with d.lock:
                if d.verdict is None:
                    d.verdict = State.YANKED if d.gone.is_set() else State.NOT_READY
                state = d.verdict
            try:
                self.station.show(d.bay, state)
            except Exception:
                log.exception("bay %s: indicator failed", d.bay)

    def _work(self) -> None:
        d, station = self.d, self.station
        assert d.match is not None
        set_log_context(d.bay, d.event.label())
        catalog = self.catalog = open_catalog(station.home, station.config.station_id)
        report: OffloadReport | None = None
        try:
            while not station.slots.acquire(timeout=0.2):
                if d.stop.is_set():
                    raise Yanked("left the bay while waiting for an offload slot")
            try:
                report = self._offload_and_check(catalog)
            finally:
                station.slots.release()
        except (Yanked, RecorderGoneError, Stopped) as exc:
            self.verdict(catalog, State.YANKED, str(exc), report)
        except (StoreFullError, CatalogError, StoreError) as exc:
            log.exception("station fault")
            station.faults.raised(exc, catalog)
            self.verdict(catalog, State.NOT_READY, f"station fault: {exc}", report)
        except RecdockError as exc:
            log.exception("not ready")
            self.verdict(catalog, State.NOT_READY, str(exc), report)
        except Exception as exc:
            log.exception("unexpected error")
            report_fault(catalog, "software", f"bay {d.bay}", f"{type(exc).__name__}: {exc}")
            self.verdict(catalog, State.NOT_READY, f"station error: {exc}", report)
        finally:
            if d.mount is not None:
                try:
                    station.mounter.unmount(d.mount)
                except Exception:
                    log.exception("unmount failed")
            catalog.close()

    # -- the steps ---------------------------------------------------------------------------

    def _offload_and_check(self, catalog: Catalog) -> OffloadReport:
        d = self.d
        if d.stop.is_set():
            raise Yanked("left the bay before the offload started")
        offloader, report = self._offload(catalog)
        self._gone_or_stopping()
        if isinstance(report.exception, (StoreFullError, CatalogError, StoreError)):
            raise report.exception
        if isinstance(report.exception, RecorderGoneError):
            raise Yanked(str(report.exception))
        self.station.faults.cleared(catalog)
        assert d.mount is not None
        gate = write_gate(self.station.mounter, d.mount, report, catalog)
        if gate.writable:
            self._clear(offloader, report)
        self._check(catalog, report, gate)
        return report

    def _same_serial(self, serial: str) -> str | None:
        """Another recorder docked now with the same serial: both are in conflict (rule 8)."""
        d = self.d
        others = self.station.same_serial(d, serial)
        if not others:
            return None
        bays = ", ".join(str(o.bay or o.port) for o in sorted([d, *others], key=_bay_order))
        reason = (
            f"two recorders docked at once with serial {serial} (bays {bays}): "
            "at most one of them is that recorder"
        )
        assert self.catalog is not None
        for other in others:
            tell_conflict(self.station, self.catalog, other, reason)
        return reason

    def _offload(self, catalog: Catalog) -> tuple[Offloader, OffloadReport]:
        """Mount read-only, offload with the source kept."""
        d, station = self.d, self.station
        assert d.match is not None
        profile = d.match.profile
        d.mount = self._mount(catalog)
        log.info("%s", d.mount.describe())
        media, _problems = list_media(d.mount.path, profile)
        set_bay_state(
            catalog,
            d.bay,
            State.RECOGNISED,
            device_serial=d.event.serial,
            profile=profile.name,
            detail=f"offloading {len(media)} files",
            port=d.port,
        )
        offloader = Offloader(
            station.config,
            station.home,
            catalog,
            keep_source=True,
            progress=self._progress_hook(catalog, sum(m.size for m in media)),
            stop=d.stop,
            clock=station.clock.now,
        )
        report = offloader.run(
            d.mount.path, profile, usb_serial=d.event.serial, identity_check=self._same_serial
        )
        with d.lock:
            d.report, d.device, told = report, report.device_serial, d.conflict
        if told:  # another bay found the clash before this session was known to it
            conflict_found(catalog, report, told)
        set_log_context(d.bay, f"{report.device_serial} {d.event.label()}")
        log.info("offload: %s", json.dumps(report.as_dict(), ensure_ascii=False))
        return offloader, report

    def _mount(self, catalog: Catalog) -> Mount:
        """Mount read-only; a failed mount is counted against the recorder (recorder.mount)."""
        d, station = self.d, self.station
        try:
            mount = station.mounter.mount_readonly(d.event)
        except MountError as exc:
            if not d.gone.is_set():  # pulled out while mounting: not the recorder's fault
                mount_failed(catalog, station.config, d.event, str(exc), station.clock.now())
            raise
        mounted_cleanly(catalog, d.event)
        return mount

    def _clear(self, offloader: Offloader, report: OffloadReport) -> None:
        """Remount read-write (only through the match: rule 5) and clear the verified files."""
        d = self.d
        assert d.mount is not None and d.match is not None
        d.mount = self.station.mounter.mount_readwrite(d.mount, d.match)
        self._simulated_firmware()
        removed = offloader.clear(d.mount.path, report)
        log.info("cleared %d verified files from the recorder", removed)
        self._gone_or_stopping()

    def _check(self, catalog: Catalog, report: OffloadReport, gate: WriteGate) -> None:
        """The pre-shift checks (the clock set only on a writable recorder), stored; then the
        verdict."""
        from agent.checks import record_checks, run_checks

        d, station = self.d, self.station
        assert d.mount is not None and d.match is not None
        checks = run_checks(
            d.mount.path,
            d.match.profile,
            station.config,
            clock=station.clock,
            info=report.info,
            offload=report,
            writable=gate.writable,
            reconnect=self._reconnect if gate.writable else None,
            catalog=catalog,
            clock_read_at=report.info_read_at,
            findings=[
                *gate.findings,
                *identity_findings(report),
                *lifecycle_findings(catalog, report.device_serial),
            ],
        )
        self._gone_or_stopping()
        record_checks(
            catalog,
            checks,
            device_serial=report.device_serial,
            session_id=report.session_id,
            bay=d.bay,
        )
        self._rules(catalog, report, checks)
        for service in station.services:
            service.wake()
        state = State.READY if checks.ready else State.NOT_READY
        reason = None if checks.ready else "; ".join(checks.reasons) or "not ready"
        self.verdict(catalog, state, reason, report)

    def _rules(self, catalog: Catalog, report: OffloadReport, checks: Any) -> None:
        """The recorder's fault rules (agent/checks/faults.py); never a reason for no verdict."""
        from agent.checks.faults import Docking as Seen
        from agent.checks.faults import after_docking

        if self.d.conflict or report.info.identity_conflict:
            # whose history would it be? (rule 8): no trend is judged on a doubtful identity
            log.info(
                "%s: identity in conflict: the fault rules skip this docking", report.device_serial
            )
            return
        at = report.info_read_at or self.station.clock.now()
        capacity = self.d.match.profile.storage.capacity_bytes if self.d.match else None
        seen = Seen(report.device_serial, report.session_id, at, report.info, checks, capacity)
        try:
            after_docking(catalog, self.station.config, seen)
        except Exception:
            log.exception("%s: the fault rules could not be applied", report.device_serial)

    def _reconnect(self) -> Path:
        """The dock reconnects the recorder, so its firmware applies the time file."""
        d = self.d
        assert d.mount is not None and d.match is not None
        d.mount = self.station.mounter.reconnect(d.mount, d.match)
        self._simulated_firmware()
        return d.mount.path

    def _simulated_firmware(self) -> None:
        """A simulated recorder applies TIME.TXT and refreshes its clock when connected."""
        d, apply = self.d, self.station.apply_firmware
        if not (d.event.simulated and apply and d.mount and d.mount.writable):
            return
        if not (d.mount.path / "DEVICE.JSN").is_file():
            return
        try:
            apply(d.mount.path, self.station.clock.now())
        except (OSError, ValueError) as exc:
            log.warning("simulated firmware could not refresh its status: %s", exc)

    def _gone_or_stopping(self) -> None:
        if self.d.gone.is_set():
            raise Yanked(LEFT_BEFORE_VERDICT)
        if self.station.stopping.is_set():
            raise Stopped("the station is stopping")

    # -- the verdict -------------------------------------------------------------------------

    def verdict(
        self, catalog: Catalog, state: State, reason: str | None, report: OffloadReport | None
    ) -> None:
        d, station = self.d, self.station
        report = report or d.report
        if station.stopping.is_set() and not d.gone.is_set():
            log.info("station stopping: no verdict for this docking (%s)", reason)
            return
        # the lock is held until the LED and the bays row show the verdict, so an unplug
        # handled meanwhile (IDLE) cannot be overwritten by it: the two are serialised
        with d.lock:
            if d.gone.is_set() and state is not State.YANKED:
                state, reason = State.YANKED, LEFT_BEFORE_VERDICT
            if d.conflict and state in (State.READY, State.NOT_READY):
                state, reason = State.NOT_READY, with_conflict(reason, d.conflict)
            d.verdict, d.reason = state, reason
            if state is State.YANKED:
                reason = reason or "left the bay before its verdict"
                log.warning("yanked: %s", reason)
            elif state is State.READY:
                log.info("ready")
            else:
                log.warning("not ready: %s", reason)
            station.show(d.bay, state)
            set_bay_state(
                catalog,
                d.bay,
                state,
                device_serial=(report.device_serial if report else d.device or d.event.serial),
                profile=d.match.profile.name if d.match else None,
                reason=reason,
                session_id=report.session_id if report else None,
                port=d.port,
            )
        if state is State.YANKED and d.mount is not None:
            station.mounter.unmount(d.mount)
            d.mount = None

    def _progress_hook(self, catalog: Catalog, total: int) -> Callable[[int], None]:
        bay = self.d.bay
        done = 0
        last = 0.0

        def hook(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if bay is None or (now - last < PROGRESS_EVERY_S and done < total):
                return
            last = now
            try:  # progress is for `recdock status` only: never a reason to abandon a copy
                set_progress(catalog, bay, done, total)
            except RecdockError as exc:
                log.warning("bay %s: progress not recorded: %s", bay, exc)

        return hook


def _bay_order(d: Docking) -> tuple[int, str]:
    return (d.bay or 0, d.port or "")
