"""What an offload reports for a person to act on within 24 hours: one fault per recorder and
cause, however many files (agent/catalog/faults.py keeps them).

* ``storage``: files that cannot be read whole, the recorder's storage damaged or failing;
* ``offload``: recordings left on the recorder because they sit deeper than the profile's
  ``media.max_depth``;
* ``identity``: the recorder's USB descriptor, status file and register disagree, or another
  recorder docked at the same time has its serial (rule 8); the session is marked too
  (agent/catalog/identity.py). A later docking whose identity agrees resolves it.
"""

from __future__ import annotations

import logging

from agent.catalog import Catalog, identity
from agent.catalog.faults import report_fault, resolve_fault
from agent.offload.report import REPORTED, OffloadReport
from agent.recorder.identity import add_conflict
from agent.recorder.profiles import Profile

log = logging.getLogger(__name__)


def left_found(catalog: Catalog, report: OffloadReport, profile: Profile) -> None:
    """Faults for what the offload could not take: damaged files, files too deep."""
    if report.damaged:
        report_fault(
            catalog,
            "storage",
            report.device_serial,
            f"{len(report.damaged)} file(s) on the recorder cannot be read whole, its storage "
            f"is damaged or failing: {some(report.damaged)}. They stay on it; take it out of "
            "service and have its card imaged and repaired",
            evidence={"unreadable": report.damaged[:50], "count": len(report.damaged)},
        )
    if report.too_deep:
        report_fault(
            catalog,
            "offload",
            report.device_serial,
            f"{len(report.too_deep)} recording(s) in folders nested deeper than "
            f"{profile.media.max_depth} are left on the recorder: {some(report.too_deep)}. "
            f"Move them up on the recorder, or raise media.max_depth in profile {profile.name}",
            evidence={
                "too_deep": report.too_deep[:50],
                "count": len(report.too_deep),
                "max_depth": profile.media.max_depth,
            },
        )


def identity_found(catalog: Catalog, report: OffloadReport) -> None:
    """An identity conflict marks the session and opens a fault; agreement resolves the
    fault an earlier docking of this recorder opened (rule 8)."""
    info = report.info
    if not info.identity_conflict:
        resolve_fault(catalog, "identity", info.serial, "docked again: its identity agrees")
        return
    _record_conflict(catalog, report, info.identity_conflict)


def conflict_found(catalog: Catalog, report: OffloadReport, reason: str) -> None:
    """A conflict found once the session was open: another recorder docked at the same time
    presents the same serial (the station's bays tell each other)."""
    add_conflict(report.info, reason)
    _record_conflict(catalog, report, reason)


def _record_conflict(catalog: Catalog, report: OffloadReport, reason: str) -> None:
    serial = report.info.serial
    log.warning("%s: identity conflict: %s", serial, reason, extra=REPORTED)
    identity.record(
        catalog,
        session_id=report.session_id,
        device_serial=serial,
        claimed_serial=report.info.status_serial,
        reason=reason,
    )
    report_fault(
        catalog,
        "identity",
        serial,
        f"identity conflict: {reason}. Its recordings are filed under {serial}; check the "
        "recorder and the register ([[devices]])",
        evidence={
            "reason": reason,
            "status_serial": report.info.status_serial,
            "session_id": report.session_id,
        },
    )


def some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
