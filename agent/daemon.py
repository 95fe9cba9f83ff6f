"""The station daemon (`recdock run`): docked recorders in, verdicts out, one bay at a time each.

One main thread takes dock events from a queue and, per docking, starts a worker
thread for that bay. The officer-facing step comes first and fast: the match (by
USB ids, from udev's attributes, no mount needed) and the "recognised" LED are
shown when the event is dispatched, before the worker waits for one of the
``station.max_concurrent_offloads`` slots. The worker then runs the way DESIGN.md
draws it:

    mount read-only → offload (keep the source) → remount read-write → clear the
    verified files → pre-shift checks (the clock is set, the recorder reconnected)
    → checks stored → verdict (READY / NOT_READY and why) → unmount

A recorder pulled out at any step stops that bay's work; the offload core makes sure
nothing is lost (verified copies are catalogued, the rest stays on the recorder) and
the bay shows YANKED. Storage no profile matches is never mounted at all: the bay
shows UNKNOWN_DEVICE, and the docking is an audited event ("device.unknown"), not a
station fault. A station fault (store full, catalog unusable) is reported as a fault
and every bay shows STATION_FAULT until it clears.

Every bay state change is one transaction: the ``bays`` row, an audit entry and the
retained bay topic in the outbox (invariant 3, :func:`set_bay_state`). Offload
progress is not a state change: it only updates the ``bays`` row, at most twice a
second.

SIGTERM stops cleanly: the file in flight is abandoned (its temp file removed),
what is verified is catalogued, everything is unmounted, systemd hears STOPPING=1,
the exit code is 0, and the next start resumes (the offload core recovers an
interrupted session). Under systemd the daemon says READY=1 once the dock listens
and pings the watchdog from a thread that checks the main loop is alive.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent import sdnotify
from agent.catalog import Catalog, now_utc, open_catalog
from agent.config import Config
from agent.dock import Dock, DockEvent, Matched, match_event
from agent.errors import (
    CatalogError,
    RecdockError,
    RecorderGoneError,
    StoreError,
    StoreFullError,
)
from agent.faults import report_fault, resolve_fault
from agent.indicators import Indicators, State
from agent.mount import Mount, Mounter
from agent.offload import Offloader, OffloadReport, Stopped
from agent.profiles import ProfileSet
from agent.recorder import list_media
from agent.signals import SignalRelay
from sync import outbox, topics

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
HEARTBEAT_STALE_S = 10.0
STATION_FAULT_KINDS = ("store", "catalog")
_context = threading.local()


# --- logs: the bay and the device on every line --------------------------------------------------


class BayContextFilter(logging.Filter):
    """Adds ``bay`` and ``device`` to every record, from the thread's current docking."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.bay = getattr(_context, "bay", "-")
        record.device = getattr(_context, "device", "-")
        return True


def set_log_context(bay: int | str | None, device: str | None) -> None:
    _context.bay = "-" if bay is None else bay
    _context.device = device or "-"


def setup_station_logging(level: int = logging.INFO, log_dir: Path | None = None) -> None:
    """Log to stdout (journald keeps it), with the bay and device on every line.

    With ``log_dir``, also to ``<log_dir>/recdock.log``, rotated at 10 MB, 5 kept: the
    station's own log for a Pi whose journal is volatile.
    """
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    fmt = "%(levelname)s [bay %(bay)s %(device)s] %(name)s: %(message)s"
    handler: logging.Handler = logging.StreamHandler(stream=__import__("sys").stdout)
    handler.setFormatter(logging.Formatter(stamp + fmt))
    handlers = [handler]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_dir / "recdock.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        rotating.setFormatter(logging.Formatter("%(asctime)s " + fmt))
        handlers.append(rotating)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for h in handlers:
        h.addFilter(BayContextFilter())
        root.addHandler(h)
    root.setLevel(level)


# --- one bay state change: row + audit + retained topic, one transaction (invariant 3) -----------


def set_bay_state(
    catalog: Catalog,
    bay: int | None,
    state: State,
    *,
    device_serial: str | None = None,
    profile: str | None = None,
    reason: str | None = None,
    session_id: str | None = None,
    detail: str | None = None,
    port: str | None = None,
    audit: tuple[str, str, dict[str, Any]] | None = None,
) -> None:
    """Record that ``bay`` shows ``state``: the bays row, an audit entry and the retained
    bay topic, in one transaction. ``audit`` adds one more audit entry to the same
    transaction (e.g. ``device.unknown``). A port with no bay number gets the audit entry
    only (there is no bay row or topic to update)."""
    at = now_utc()
    payload = {
        "bay": bay,
        "state": state.value,
        "device_serial": device_serial,
        "profile": profile,
        "reason": reason,
        "session_id": session_id,
        "detail": detail,
        "at": at,
    }
    if port is not None:
        payload["port"] = port
    with catalog.tx() as conn:
        if bay is not None:
            conn.execute(
                "INSERT INTO bays (bay, state, device_serial, profile, reason, session_id,"
                " progress_bytes, progress_total, detail, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)"
                " ON CONFLICT(bay) DO UPDATE SET state = excluded.state,"
                " device_serial = excluded.device_serial, profile = excluded.profile,"
                " reason = excluded.reason, session_id = excluded.session_id,"
                " progress_bytes = NULL, progress_total = NULL, detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (bay, state.value, device_serial, profile, reason, session_id, detail, at),
            )
        subject = f"bay {bay}" if bay is not None else f"port {port}"
        if audit is not None:
            catalog.append_audit(*audit)
        entry = catalog.append_audit("bay.state", subject, payload)
        if bay is not None:
            outbox.enqueue(
                conn,
                topics.bay(catalog.station_id, bay),
                {**payload, "station": catalog.station_id, "audit_seq": entry.seq},
                event_id=f"{catalog.station_id}:bay:{bay}:{entry.seq}",
                retain=True,
            )


def set_station_status(catalog: Catalog, state: str, data: dict[str, Any]) -> None:
    """The retained station status ("online", "stopped"), audited, in one transaction."""
    with catalog.tx() as conn:
        entry = catalog.append_audit(f"station.{state}", catalog.station_id, data)
        outbox.enqueue(
            conn,
            topics.status(catalog.station_id),
            {"station": catalog.station_id, "state": state, "at": entry.at, **data},
            event_id=f"{catalog.station_id}:status:{uuid.uuid4().hex}",
            retain=True,
        )


# --- the station ---------------------------------------------------------------------------------


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
    device: str | None = None  # serial, once known

    @property
    def bay(self) -> int | None:
        return self.event.bay


class Service(Protocol):
    """A background part of the station (the MQTT publisher, the uploader)."""

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
    ) -> None:
        self.config = config
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
        self.station_fault = False
        self._fault_lock = threading.Lock()
        # serial -> profile name of every registered device
        self.registered = {d.serial: d.profile for d in config.devices}
        self.catalog: Catalog | None = None
        self.state_file = home / "run" / "station.json"

    def bays(self) -> list[int]:
        return sorted(set(self.config.bays.values()) | set(self.config.indicators.bays))

    def seams(self) -> list[str]:
        return [self.dock.describe(), self.indicators.describe(), f"clock: {self.clock.describe()}"]

    # -- life cycle ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop; every bay's work abandons its file in flight at once.

        Never call it from a signal handler (it sets events): install_signal_handlers runs
        it on a relay thread (agent/signals.py says why).
        """
        self.stopping.set()
        for d in list(self.dockings.values()):
            d.stop.set()

    def run(self) -> int:
        set_log_context(None, None)
        for line in self.seams():
            log.info("%s", line)
        self.catalog = open_catalog(self.home, self.config.station_id)
        self.mounter.clean_stale()
        self._reset_bays("station started")
        # a station fault left open by the previous run is still a fault: show it, and
        # let the periodic check clear it when its cause is gone
        open_kinds = {
            r["kind"]
            for r in self.catalog.query("SELECT kind FROM faults WHERE resolved_at IS NULL")
        }
        if open_kinds & set(STATION_FAULT_KINDS):
            log.error("STATION FAULT still open from before the start: %s", sorted(open_kinds))
            self.station_fault = True
            self.indicators.station_fault(True)
        set_station_status(self.catalog, "online", {"pid": os.getpid(), "simulate": self.simulate})
        self._write_state_file()
        self.dock.start(self.events.put)
        for service in self.services:
            log.info("%s", service.describe())
            service.start()
        log.info("station %s ready: bays %s", self.config.station_id, self.bays() or "none")
        sdnotify.ready(f"listening; bays {self.bays()}")
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        watchdog.start()
        next_fault_check = 0.0
        try:
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
                    self._check_station_fault()
                    next_fault_check = time.monotonic() + 10
        finally:
            self._shutdown()
        return 0

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
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "pid": os.getpid(),
            "started_at": now_utc(),
            "simulate": self.simulate,
            "seams": self.seams(),
            "mount_dir": str(self.mounter.mount_dir),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.state_file)

    def _reset_bays(self, why: str) -> None:
        assert self.catalog is not None
        rows = {r["bay"]: r["state"] for r in self.catalog.query("SELECT bay, state FROM bays")}
        for bay in sorted(set(self.bays()) | set(rows)):
            if rows.get(bay) != State.IDLE.value:
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
            self._station_fault_from(exc)
        finally:
            set_log_context(None, None)

    def _show(self, bay: int | None, state: State) -> None:
        if bay is not None and bay in self.indicators.bays:
            self.indicators.show(bay, state)

    def _docked(self, event: DockEvent) -> None:
        assert self.catalog is not None
        old = self.dockings.get(event.key)
        if old is not None:
            log.warning("docked again without an unplug event: the earlier docking ends")
            self._undocked(event)
        port = event.id_path if event.bay is None else None
        if event.bay is None:
            report_fault(
                self.catalog,
                "config",
                f"port {event.id_path}",
                f"USB port {event.id_path} is not in [bays]: recorders docked there get no LED; "
                "add it to the config",
                severity="warning",
            )
        match = match_event(event, self.profiles, self.registered)
        docking = Docking(event, match)
        self.dockings[event.key] = docking
        if match is None:
            # shown first: the officer must see it within a second
            self._show(event.bay, State.UNKNOWN_DEVICE)
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
                port=port,
                audit=(
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
            return
        self._show(event.bay, State.RECOGNISED)
        log.info("recognised as %s", match.profile.name)
        set_bay_state(
            self.catalog,
            event.bay,
            State.RECOGNISED,
            device_serial=event.serial,
            profile=match.profile.name,
            port=port,
            detail="waiting for an offload slot",
        )
        docking.thread = threading.Thread(
            target=self._work, args=(docking,), name=f"bay-{event.bay}", daemon=True
        )
        docking.thread.start()

    def _undocked(self, event: DockEvent) -> None:
        assert self.catalog is not None
        docking = self.dockings.get(event.key)
        if docking is None:
            return
        log.info("undocked")
        with docking.lock:
            docking.gone.set()
            docking.stop.set()
            finished = docking.verdict is not None
        if docking.mount is not None and event.simulated:
            self.mounter.yank(docking.mount)  # a simulated pull: the mount dies like a cable
        if finished:
            self.dockings.pop(event.key, None)
            with docking.lock:  # after the verdict was shown in full (see _verdict)
                self._show(docking.bay, State.IDLE)
                set_bay_state(
                    self.catalog,
                    docking.bay,
                    State.IDLE,
                    detail="undocked",
                    port=event.id_path if docking.bay is None else None,
                )
        # otherwise the worker notices, shows YANKED, and _reap forgets the docking

    def _reap(self) -> None:
        for key, d in list(self.dockings.items()):
            if d.thread is not None and not d.thread.is_alive() and d.gone.is_set():
                self.dockings.pop(key, None)

    # -- one docking's work (its own thread and catalog connection) ------------------------

    def _work(self, d: Docking) -> None:
        """A bay's worker thread: whatever fails, the bay ends with a verdict."""
        try:
            self._work_on(d)
        except Exception:
            # the handlers themselves failed (the catalog unusable, say): the officer must
            # still see that this recorder is not ready, and the bay must not stay "working"
            log.exception("bay %s: the work failed without a verdict", d.bay)
            with d.lock:
                if d.verdict is None:
                    d.verdict = State.YANKED if d.gone.is_set() else State.NOT_READY
                state = d.verdict
            try:
                self._show(d.bay, state)
            except Exception:
                log.exception("bay %s: indicator failed", d.bay)

    def _work_on(self, d: Docking) -> None:
        assert d.match is not None
        set_log_context(d.bay, d.event.label())
        catalog = open_catalog(self.home, self.config.station_id)
        port = d.event.id_path if d.bay is None else None
        report: OffloadReport | None = None
        try:
            while not self.slots.acquire(timeout=0.2):
                if d.stop.is_set():
                    raise Yanked("left the bay while waiting for an offload slot")
            try:
                report = self._offload_and_check(d, catalog, port)
            finally:
                self.slots.release()
        except (Yanked, RecorderGoneError, Stopped) as exc:
            self._verdict(d, catalog, State.YANKED, str(exc), report, port)
        except (StoreFullError, CatalogError, StoreError) as exc:
            log.exception("station fault")
            self._station_fault_from(exc, catalog)
            self._verdict(d, catalog, State.NOT_READY, f"station fault: {exc}", report, port)
        except RecdockError as exc:
            log.exception("not ready")
            self._verdict(d, catalog, State.NOT_READY, str(exc), report, port)
        except Exception as exc:
            log.exception("unexpected error")
            report_fault(catalog, "software", f"bay {d.bay}", f"{type(exc).__name__}: {exc}")
            self._verdict(d, catalog, State.NOT_READY, f"station error: {exc}", report, port)
        finally:
            if d.mount is not None:
                try:
                    self.mounter.unmount(d.mount)
                except Exception:
                    log.exception("unmount failed")
            catalog.close()

    def _offload_and_check(self, d: Docking, catalog: Catalog, port: str | None) -> OffloadReport:
        from agent.checks import record_checks, run_checks

        assert d.match is not None
        profile = d.match.profile
        if d.stop.is_set():
            raise Yanked("left the bay before the offload started")
        d.mount = self.mounter.mount_readonly(d.event)
        log.info("%s", d.mount.describe())
        media, _problems = list_media(d.mount.path, profile)
        total = sum(m.size for m in media)
        set_bay_state(
            catalog,
            d.bay,
            State.RECOGNISED,
            device_serial=d.event.serial,
            profile=profile.name,
            detail=f"offloading {len(media)} files",
            port=port,
        )
        progress = self._progress_hook(catalog, d.bay, total)
        offloader = Offloader(
            self.config,
            self.home,
            catalog,
            keep_source=True,
            progress=progress,
            stop=d.stop,
            clock=self.clock.now,
        )
        report = offloader.run(d.mount.path, profile, usb_serial=d.event.serial)
        d.device = report.device_serial
        set_log_context(d.bay, f"{report.device_serial} {d.event.label()}")
        log.info("offload: %s", json.dumps(report.as_dict(), ensure_ascii=False))
        self._gone_or_stopping(d)
        if isinstance(report.exception, (StoreFullError, CatalogError, StoreError)):
            raise report.exception
        if isinstance(report.exception, RecorderGoneError):
            raise Yanked(str(report.exception))
        self._station_fault_cleared(catalog)
        # read-write only now, and only through the match (invariant 5)
        d.mount = self.mounter.mount_readwrite(d.mount, d.match)
        self._simulated_firmware(d)
        removed = offloader.clear(d.mount.path, report)
        log.info("cleared %d verified files from the recorder", removed)
        self._gone_or_stopping(d)

        def reconnect() -> Path:
            assert d.mount is not None and d.match is not None
            d.mount = self.mounter.reconnect(d.mount, d.match)
            self._simulated_firmware(d)
            return d.mount.path

        checks = run_checks(
            d.mount.path,
            profile,
            self.config,
            clock=self.clock,
            info=report.info,
            offload=report,
            writable=True,
            reconnect=reconnect,
            catalog=catalog,
            clock_read_at=report.info_read_at,
        )
        self._gone_or_stopping(d)
        record_checks(
            catalog,
            checks,
            device_serial=report.device_serial,
            session_id=report.session_id,
            bay=d.bay,
        )
        for service in self.services:
            service.wake()
        state = State.READY if checks.ready else State.NOT_READY
        reason = None if checks.ready else "; ".join(checks.reasons) or "not ready"
        self._verdict(d, catalog, state, reason, report, port)
        return report

    def _simulated_firmware(self, d: Docking) -> None:
        """A simulated recorder applies TIME.TXT and refreshes its clock when connected."""
        if not (d.event.simulated and self.apply_firmware and d.mount and d.mount.writable):
            return
        if not (d.mount.path / "DEVICE.JSN").is_file():
            return
        try:
            self.apply_firmware(d.mount.path, self.clock.now())
        except (OSError, ValueError) as exc:
            log.warning("simulated firmware could not refresh its status: %s", exc)

    def _gone_or_stopping(self, d: Docking) -> None:
        if d.gone.is_set():
            raise Yanked(
                "the recorder left the bay before its verdict; nothing was lost, "
                "dock it again to finish"
            )
        if self.stopping.is_set():
            raise Stopped("the station is stopping")

    def _verdict(
        self,
        d: Docking,
        catalog: Catalog,
        state: State,
        reason: str | None,
        report: OffloadReport | None,
        port: str | None,
    ) -> None:
        if self.stopping.is_set() and not d.gone.is_set():
            log.info("station stopping: no verdict for this docking (%s)", reason)
            return
        # the lock is held until the LED and the bays row show the verdict, so an unplug
        # handled meanwhile (IDLE) cannot be overwritten by it: the two are serialised
        with d.lock:
            if d.gone.is_set() and state is not State.YANKED:
                state, reason = (
                    State.YANKED,
                    (
                        "the recorder left the bay before its verdict; nothing was lost, "
                        "dock it again to finish"
                    ),
                )
            d.verdict = state
            if state is State.YANKED:
                reason = reason or "left the bay before its verdict"
                log.warning("yanked: %s", reason)
            elif state is State.READY:
                log.info("ready")
            else:
                log.warning("not ready: %s", reason)
            self._show(d.bay, state)
            set_bay_state(
                catalog,
                d.bay,
                state,
                device_serial=(report.device_serial if report else d.event.serial),
                profile=d.match.profile.name if d.match else None,
                reason=reason,
                session_id=report.session_id if report else None,
                port=port,
            )
        if state is State.YANKED and d.mount is not None:
            self.mounter.unmount(d.mount)
            d.mount = None

    def _progress_hook(
        self, catalog: Catalog, bay: int | None, total: int
    ) -> Callable[[int], None]:
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
                with catalog.tx() as conn:
                    conn.execute(
                        "UPDATE bays SET progress_bytes = ?, progress_total = ? WHERE bay = ?",
                        (done, total, bay),
                    )
            except RecdockError as exc:
                log.warning("bay %s: progress not recorded: %s", bay, exc)

        return hook

    # -- station faults --------------------------------------------------------------------

    def _station_fault_from(self, exc: Exception, catalog: Catalog | None = None) -> None:
        kind = "catalog" if isinstance(exc, CatalogError) else "store"
        with self._fault_lock:
            try:
                report_fault(catalog or self.catalog, kind, kind, str(exc))  # type: ignore[arg-type]
            except Exception:
                log.exception("the fault could not be recorded (catalog unusable?)")
            if not self.station_fault:
                log.error("STATION FAULT (%s): %s", kind, exc)
                self.station_fault = True
                self.indicators.station_fault(True)

    def _station_fault_cleared(self, catalog: Catalog) -> None:
        if not self.station_fault:
            return
        self._check_station_fault(catalog)

    def _check_station_fault(self, catalog: Catalog | None = None) -> None:
        """Clear a store-full fault once the store has room again."""
        if not self.station_fault:
            return
        store = self.home / "store"
        try:
            free = shutil.disk_usage(store if store.exists() else self.home).free
        except OSError:
            return
        if free <= self.config.store.reserve_bytes:
            return
        with self._fault_lock:
            cat = catalog or self.catalog
            assert cat is not None
            if resolve_fault(cat, "store", "store", f"free space {free} bytes above the reserve"):
                log.info("store fault cleared: %d bytes free", free)
            open_kinds = {
                r["kind"] for r in cat.query("SELECT kind FROM faults WHERE resolved_at IS NULL")
            }
            if not open_kinds & set(STATION_FAULT_KINDS):
                self.station_fault = False
                self.indicators.station_fault(False)


def install_signal_handlers(station: Station) -> SignalRelay:
    """SIGTERM and SIGINT stop the station (close the relay when the station has stopped)."""
    return SignalRelay(station.request_stop)


# --- simulation: observable mock pins ------------------------------------------------------------


def recording_pin_factory(path: Path) -> Any:
    """gpiozero's MockFactory whose pins also append every change to ``path`` (JSON lines).

    Only for ``recdock run --simulate``: a test or a curious user can watch the simulated
    LEDs and buzzer of a running station: ``{"t": <unix time>, "pin": 17, "state": 1}``
    (``pin`` is the BCM number).
    """
    from gpiozero.pins.mock import MockFactory, MockPin

    path.parent.mkdir(parents=True, exist_ok=True)
    sink = path.open("a", buffering=1, encoding="utf-8")
    lock = threading.Lock()

    class RecordingPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: Any) -> bool:
            changed = bool(super()._change_state(value))
            if changed:
                name = str(self.info.name)
                pin = int(name[4:]) if name.startswith("GPIO") and name[4:].isdigit() else name
                line = json.dumps({"t": time.time(), "pin": pin, "state": int(value)})
                with lock:
                    sink.write(line + "\n")
            return changed

    return MockFactory(pin_class=RecordingPin)
