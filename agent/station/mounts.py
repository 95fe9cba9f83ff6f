"""The ``recorder.mount`` rule: a recorder that fails to mount at N dockings in a row
(``[faults] mount_failures_in_a_row``, docs/faults.md).

The dock knows a recorder before it is mounted only by what its USB descriptor says, so the
count (agent/catalog/mounts.py) is kept by the USB serial where there is one, and otherwise by
the USB port (udev's ``ID_PATH``) with the USB ids: a recorder without a USB serial moved to
another port starts a count of its own there. A clean mount of the same recorder resets the
count and resolves the fault at once (the docking is the observation, as for every recorder
rule).
"""

from __future__ import annotations

import logging
from datetime import datetime

from agent.catalog import Catalog, mounts
from agent.catalog.faults import condition_gone, report_fault
from agent.config import Config
from agent.seams.dock import DockEvent

log = logging.getLogger(__name__)

KIND = "recorder.mount"


def recorder_key(event: DockEvent) -> tuple[str, str]:
    """(subject, identified_by): the USB serial, else the port and the USB ids."""
    if event.serial:
        return event.serial, "usb_serial"
    ids = f"{event.vendor_id or '?'}:{event.product_id or '?'}"
    return f"port {event.id_path or event.key} {ids}", "usb_port"


def mount_failed(
    catalog: Catalog, config: Config, event: DockEvent, error: str, at: datetime
) -> None:
    """Count a failed mount; open the fault once it failed N dockings in a row."""
    subject, identified_by = recorder_key(event)
    seen = {
        "at": at.isoformat(),
        "bay": event.bay,
        "port": event.id_path,
        "usb_id": f"{event.vendor_id}:{event.product_id}",
        "fs_type": event.fs_type,
        "error": error[:500],
    }
    row = mounts.failed(catalog, subject, identified_by, seen)
    n = config.faults.mount_failures_in_a_row
    log.warning("%s: mount failed (%d in a row): %s", subject, row["in_a_row"], error)
    if row["in_a_row"] < n:
        return
    evidence = {**row, "limit": n, "events": row["events"][-n:]}
    detail = (
        f"{subject} failed to mount at {row['in_a_row']} dockings in a row (last: {error}); "
        "take it out of service and have its card and USB connector seen to"
    )
    report_fault(catalog, KIND, subject, detail, evidence=evidence)


def mounted_cleanly(catalog: Catalog, event: DockEvent) -> None:
    """The recorder mounted: its count starts again and an open fault is resolved."""
    subject, _ = recorder_key(event)
    mounts.mounted(catalog, subject)
    condition_gone(catalog, KIND, subject, hold_s=0, note="docked again: it mounted cleanly")
