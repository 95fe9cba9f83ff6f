"""The ``battery.charge`` rule: a recorder docked at least ``[faults] battery_full_dock_hours``
whose battery still reads below ``battery_charge_min_pct`` (docs/faults.md).

The station reads a recorder at its docking, and :class:`ChargeWatch` reads its battery again
while it stays docked after its verdict: every ``battery_reread_minutes`` the daemon's loop
starts a short thread per such docking that mounts it read-only again (rule 5: the same
read-only mount as the offload), reads its status file through its profile (the same reading
the pre-shift battery check uses, agent/recorder/status.py), unmounts it and keeps the reading
in the recorder's history (``battery_readings``; the docking's row keeps the last, which the
drain rule takes as the level it left with). A clean stop of the daemon waits for the readings
under way (:meth:`ChargeWatch.stop`), so none leaves its recorder mounted. A reading is a
measurement of an untrusted recorder (rule 6): it only feeds the rule, and is kept as the
fault's evidence.

A reading at or above the limit after a full dock resolves the fault (the observation is the
reading, as a docking is for the other recorder rules).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, history, open_catalog
from agent.catalog.faults import condition_gone, report_fault
from agent.config import Config
from agent.errors import RecdockError
from agent.recorder.status import read_info
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mounter

log = logging.getLogger(__name__)

KIND = "battery.charge"
READ = (State.READY, State.NOT_READY)  # verdicts after which a recorder sits charging


def charge_reached(
    catalog: Catalog,
    config: Config,
    docking: history.Docked,
    battery_pct: float | None,
    now: datetime,
) -> None:
    """Judge one reading of a docked recorder's battery against the full-dock limit."""
    rules = config.faults
    hours = (now - datetime.fromisoformat(docking.docked_at)).total_seconds() / 3600
    if battery_pct is None or hours < rules.battery_full_dock_hours:
        return
    serial = docking.device_serial
    if battery_pct >= rules.battery_charge_min_pct:
        note = f"charged to {battery_pct:g} % after {hours:.1f} h docked"
        condition_gone(catalog, KIND, serial, hold_s=0, note=note, now=now)
        return
    evidence = {
        "battery_pct": battery_pct,
        "limit_pct": rules.battery_charge_min_pct,
        "docked_at": docking.docked_at,
        "read_at": now.isoformat(),
        "hours_docked": round(hours, 2),
        "full_dock_hours": rules.battery_full_dock_hours,
        "battery_pct_at_docking": docking.battery_pct,
        "readings": history.readings(catalog, docking.id),
        "session_id": docking.session_id,
    }
    detail = (
        f"{serial}: its battery reads {battery_pct:g} % after {hours:.1f} h docked (at least "
        f"{rules.battery_charge_min_pct:g} % after {rules.battery_full_dock_hours:g} h): it no "
        "longer charges fully; have its battery or charging contacts seen to"
    )
    report_fault(catalog, KIND, serial, detail, evidence=evidence)


class ChargeWatch:
    """Reads the battery of the docked recorders again, each every ``battery_reread_minutes``."""

    def __init__(self, config: Config, home: Path, mounter: Mounter, clock: Any) -> None:
        self.config = config
        self.home = home
        self.mounter = mounter
        self.clock = clock
        self._last: dict[int, datetime] = {}  # id(docking) -> when it was last read
        self._busy: set[int] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._lock = threading.Lock()

    def poll(self, dockings: list[Any]) -> None:
        """From the daemon's loop: start a reading for each docking that is due one."""
        now = self.clock.now()
        every = timedelta(minutes=self.config.faults.battery_reread_minutes)
        live = {id(d) for d in dockings}
        with self._lock:
            self._last = {k: v for k, v in self._last.items() if k in live}
        for d in dockings:
            if not self._wanted(d) or now - self._last.get(id(d), now - every) < every:
                continue
            with self._lock:
                if id(d) in self._busy or self._stopping:
                    continue
                self._busy.add(id(d))
                self._last[id(d)] = now
                thread = threading.Thread(
                    target=self._read_in_thread, args=(d,), name=f"charge-{d.bay}", daemon=True
                )
                self._threads.add(thread)
            thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """At a clean stop: start no more readings, and wait for those under way, which
        unmount what they mounted (a daemon thread cut off at exit would leave the recorder
        mounted). A reading is one small file: ``timeout`` keeps a recorder that stopped
        answering from holding the stop past systemd's TimeoutStopSec (90 s, with the bays')."""
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        if threads:
            log.info("stopping: waiting for %d battery reading(s) to unmount", len(threads))
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s: the battery reading did not end within %.0f s", thread.name, timeout)

    @staticmethod
    def _wanted(d: Any) -> bool:
        match = d.match
        return (
            d.verdict in READ
            and not d.gone.is_set()
            and d.device is not None
            and not d.conflict
            and match is not None
            and match.profile.status.battery is not None
        )

    def _read_in_thread(self, d: Any) -> None:
        try:
            catalog = open_catalog(self.home, self.config.station_id)
            try:
                self.read(catalog, d)
            finally:
                catalog.close()
        except Exception:
            log.exception("%s: its battery could not be read again", d.device)
        finally:
            with self._lock:
                self._busy.discard(id(d))
                self._threads.discard(threading.current_thread())

    def read(self, catalog: Catalog, d: Any) -> float | None:
        """Mount the docked recorder read-only, read its battery, keep it, judge it."""
        docked = history.docked_now(catalog, d.device)
        if docked is None:
            return None
        try:
            mount = self.mounter.mount_readonly(d.event)
        except RecdockError as exc:
            log.warning("%s: not mounted to read its battery again: %s", d.device, exc)
            return None
        try:
            info = read_info(mount.path, d.match.profile, usb_serial=d.event.serial)
        except (RecdockError, OSError) as exc:
            log.warning("%s: its battery could not be read again: %s", d.device, exc)
            return None
        finally:
            self.mounter.unmount(mount)
        if d.gone.is_set() or info.serial != d.device:
            return None  # it left meanwhile, or another recorder answers: nothing to keep
        now = self.clock.now()
        history.record_reading(catalog, docked.id, now.isoformat(), info.battery_pct, info.charging)
        log.info("%s: battery %s %% while docked", d.device, info.battery_pct)
        charge_reached(catalog, self.config, docked, info.battery_pct, now)
        return info.battery_pct
