"""What keeps a docked recorder read-only, and what makes it not ready besides its checks.

An identity conflict (rule 8: the USB descriptor, the status file and the register disagree,
or two recorders docked at once present one serial) makes the recorder not ready with the
conflict as the reason. When a bay finds that another docked recorder has its serial, it
marks that docking too: its session is recorded as a conflict, and a verdict it already
showed becomes NOT_READY.

Nothing is written to a recorder (no file cleared, no clock set, no file of the simulated
firmware) whose file system check (``fsck.fat -n``, agent/seams/mount/fsck.py) fails or whose
offload did not complete: writing to a damaged FAT can lose what is still readable, and a
recorder that holds recordings the store does not is left as it came. A damaged file system
is a finding of its own (the bay shows it as the reason) and opens a ``storage`` fault; a later
docking that finds the recorder sound and offloads it whole resolves the ``storage`` and
``offload`` faults its earlier dockings opened.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.catalog import Catalog
from agent.catalog.bays import set_bay_state
from agent.catalog.faults import condition_gone, report_fault, resolve_fault
from agent.checks.results import CheckResult
from agent.offload import OffloadReport
from agent.offload.faults import conflict_found
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mount, Mounter
from agent.seams.mount.fsck import FsCheck

log = logging.getLogger(__name__)

#: Fault kinds about one recorder that a sound, complete docking of it resolves.
RECORDER_FAULTS = ("storage", "offload")
DIRTY_FAULT = "recorder.filesystem_dirty"


@dataclass
class WriteGate:
    """May the station write to the recorder now, and what it found that says no."""

    writable: bool
    findings: list[CheckResult] = field(default_factory=list)


def write_gate(
    mounter: Mounter, mount: Mount, report: OffloadReport, catalog: Catalog
) -> WriteGate:
    """Check the recorder's file system, read-only, and decide whether it may be written."""
    serial = report.device_serial
    fs = mounter.check_filesystem(mount)
    gate = WriteGate(writable=fs.ok is not False and report.complete)
    _dirty(catalog, serial, fs)
    if fs.ok is False:
        tool = fs.tool or "the file system check"
        log.warning(
            "%s: file system damaged (%s: %s): nothing is written to it", serial, tool, fs.detail
        )
        gate.findings.append(
            CheckResult(
                "filesystem",
                False,
                "damaged",
                f"no error ({tool} -n)",
                f"{tool}: {fs.detail}; nothing was written to the recorder",
            )
        )
        report_fault(
            catalog,
            "storage",
            serial,
            f"the recorder's file system is damaged ({tool}: {fs.detail}); nothing was written "
            "to it. Take it out of service and have its card imaged and repaired",
            evidence={"check": f"{tool} -n", "found": fs.detail, "dirty": fs.dirty},
        )
    elif not report.complete:
        log.warning("%s: offload incomplete: nothing is written to the recorder", serial)
    elif not report.damaged:
        for kind in RECORDER_FAULTS:
            resolve_fault(catalog, kind, serial, "docked again: file system sound, offloaded whole")
    return gate


def _dirty(catalog: Catalog, serial: str, fs: FsCheck) -> None:
    """A file system marked dirty: no damage, but the recorder was pulled out while mounted
    read-write (or its firmware crashed): a warning fault, resolved by a clean docking."""
    if fs.ok is None:
        return
    if not fs.dirty:
        condition_gone(catalog, DIRTY_FAULT, serial, hold_s=0, note="docked again: not dirty")
        return
    report_fault(
        catalog,
        DIRTY_FAULT,
        serial,
        f"{serial}'s file system is marked dirty ({fs.tool} -n): it was pulled out while "
        "mounted read-write, or its firmware stopped while writing. Nothing is lost; if it "
        "happens again, have the recorder seen to",
        severity="warning",
        evidence={"check": f"{fs.tool} -n", "found": "Dirty bit is set", "damaged": fs.ok is False},
    )


# -- identity conflicts (rule 8) ----------------------------------------------------------


class Docked(Protocol):
    """What a docking (agent/station/bay.py) offers to the bay that finds its twin."""

    lock: threading.Lock
    gone: threading.Event
    match: Any
    verdict: State | None
    reason: str | None
    device: str | None
    report: OffloadReport | None
    conflict: str | None

    @property
    def bay(self) -> int | None: ...
    @property
    def port(self) -> str | None: ...


class Shows(Protocol):
    def show(self, bay: int | None, state: State) -> None: ...


def identity_findings(report: OffloadReport) -> list[CheckResult]:
    """The identity conflict of this docking, as a failed check of its own."""
    conflict = report.info.identity_conflict
    if not conflict:
        return []
    agree = "the USB descriptor, the status file and the register agree"
    detail = f"{conflict}; filed under {report.device_serial}"
    return [CheckResult("identity", False, "conflict", agree, detail)]


def with_conflict(reason: str | None, conflict: str) -> str:
    """A verdict's reason with the identity conflict in it (once)."""
    if reason and conflict in reason:
        return reason
    return "; ".join(filter(None, [reason, f"identity: {conflict}"]))


def tell_conflict(station: Shows, catalog: Catalog, other: Docked, reason: str) -> None:
    """Another docked recorder presents this serial too: its session is marked (now, or by
    its own bay once its offload returns) and a verdict it showed becomes NOT_READY."""
    with other.lock:
        other.conflict = reason
        report = other.report
        if report is not None:
            conflict_found(catalog, report, reason)
        if other.verdict not in (State.READY, State.NOT_READY) or other.gone.is_set():
            return
        other.verdict, other.reason = State.NOT_READY, with_conflict(other.reason, reason)
        log.warning("bay %s: not ready: %s", other.bay, other.reason)
        station.show(other.bay, State.NOT_READY)
        set_bay_state(
            catalog,
            other.bay,
            State.NOT_READY,
            device_serial=report.device_serial if report else other.device,
            profile=other.match.profile.name if other.match else None,
            reason=other.reason,
            session_id=report.session_id if report else None,
            port=other.port,
        )
