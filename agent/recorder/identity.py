"""Who a docked recorder is: the identity its USB descriptor, its status file and the register
agree on (rule 8, docs/architecture.md).

The USB descriptor's serial (or the one given by hand with ``--serial``) is read by the station
from the device itself; the status file is written by the recorder and untrusted (rule 6). When
both name a serial and they differ, or the register gives the serial to one officer and the
status file names another, that is a conflict: the recordings are still offloaded (nothing is
lost), filed under the USB identity with the register's officer and unit for it (none when it
is not registered), and the conflict is shown and reported, never silently resolved. When
they agree, the register fills in the officer and unit the recorder does not report.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.config import DeviceEntry
from agent.recorder.status import RecorderInfo


def agree(info: RecorderInfo, usb_serial: str | None, register: Mapping[str, DeviceEntry]) -> None:
    """Settle ``info``'s serial, officer and unit; set ``identity_conflict`` on a conflict."""
    usb = (usb_serial or "").strip() or None
    serial = usb or info.serial
    entry = register.get(serial)
    conflicts = []
    named = info.status_serial
    if usb and named and named != usb:
        other = register.get(named)
        whose = f" (registered to officer {other.officer})" if other and other.officer else ""
        conflicts.append(
            f"the USB descriptor says serial {usb}, the status file says {named}{whose}"
        )
    if entry and entry.officer and info.officer and info.officer != entry.officer:
        conflicts.append(
            f"serial {serial} is registered to officer {entry.officer}, the recorder names "
            f"officer {info.officer}"
        )
    info.serial = serial
    if conflicts:
        info.identity_conflict = "; ".join(conflicts)
        info.officer = entry.officer if entry else None
        info.unit = entry.unit if entry else None
    elif entry:
        info.officer = info.officer or entry.officer
        info.unit = info.unit or entry.unit


def add_conflict(info: RecorderInfo, reason: str) -> None:
    """One more conflict (two recorders docked at once with the same serial)."""
    info.identity_conflict = "; ".join(filter(None, [info.identity_conflict, reason]))
