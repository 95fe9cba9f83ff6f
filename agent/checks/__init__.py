"""Pre-shift checks (rule clause 4): battery, free storage, clock, firmware, nothing left behind.

Each check gives a :class:`CheckResult` with the measured value, the threshold and
the reason in words; ``ok`` is True (pass), False (fail) or None (this recorder
model offers no way to measure it: shown as "unknown"). A recorder is ready when
no check failed; docs/checks.md states every rule.

The clock is the one check that changes the recorder: when the station clock is
NTP-synchronised (agent/seams/clock/) and the profile has a way (``time_file``), the
station writes the time file, the dock reconnects the recorder so its firmware
applies it, and the offset is measured again. An unsynchronised station clock
never sets a recorder's clock.

Everything the recorder reports is untrusted (rule 6): its status values are
only measurements, and a missing or broken one fails the check it feeds rather
than passing it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, now_utc
from agent.catalog import checks as checks_table
from agent.checks.clock import ClockOutcome, check_clock
from agent.checks.results import CheckReport, CheckResult, reason_of
from agent.checks.rules import (
    check_battery,
    check_firmware,
    check_late,
    check_offload_catalog,
    check_offload_report,
    check_storage,
    late_from_media,
    late_from_offload,
)
from agent.config import Config
from agent.errors import RecorderError, RecorderGoneError
from agent.offload.report import OffloadReport
from agent.recorder.media import MediaFile, gone_or, list_media
from agent.recorder.profiles import Profile
from agent.recorder.status import RecorderInfo, read_info
from agent.seams.clock import StationClock

log = logging.getLogger(__name__)


def run_checks(
    root: Path,
    profile: Profile,
    config: Config,
    *,
    clock: StationClock,
    info: RecorderInfo | None = None,
    offload: OffloadReport | None = None,
    writable: bool = False,
    reconnect: Callable[[], Path] | None = None,
    catalog: Catalog | None = None,
    clock_read_at: datetime | None = None,
    findings: Sequence[CheckResult] = (),
) -> CheckReport:
    """Run every pre-shift check on the recorder mounted at ``root``, re-read now.

    ``info``: the identity (and the values if the status cannot be read again); ``offload``:
    its verdict and late flags (else the media are looked up in ``catalog``); ``writable``,
    ``reconnect``: the clock may be set, the dock reconnecting the recorder to apply it (and
    returning the new root); ``clock_read_at``: when ``info`` was read (a long offload is no
    drift); ``findings``: the station's own (a damaged file system, an identity conflict).
    """
    listed = offload is None or profile.identity.source == "file_name"
    media, problems = _listed(root, profile) if listed else ([], [])
    current, read_error = _read_current(root, profile, info, media)
    station_now = clock.now()
    battery, storage, firmware = _measured(root, profile, config, current, read_error)
    serial = current.serial if current else (info.serial if info else None)
    if offload is not None:
        off, late = check_offload_report(offload), late_from_offload(offload)
    else:
        off = check_offload_catalog(media, problems, serial, catalog)
        late = late_from_media(media, profile, config, station_now)
    outcome = _clock(  # last: setting the clock may reconnect the recorder (a new mount)
        root,
        profile,
        config,
        current,
        info,
        clock,
        station_now,
        clock_read_at,
        read_error,
        writable=writable,
        reconnect=reconnect,
    )
    results = [battery, storage, outcome.result, firmware, off, check_late(late, config), *findings]
    failed = [r for r in results if r.ok is False]
    return CheckReport(
        results=results,
        ready=not failed,
        reasons=[reason_of(r, config) for r in failed],
        clock_offset_s=outcome.offset,
        clock_offset_after_s=outcome.offset_after,
        clock_set=outcome.clock_set,
        late=late,
        station_clock=clock.describe(),
        device_serial=serial,
        reported=_reported(current or info),
    )


#: What a recorder reports that the health message carries as it is (recorder.json).
REPORTED = (
    "officer",
    "unit",
    "model",
    "firmware",
    "battery_pct",
    "charging",
    "minutes_to_full",
    "free_bytes",
    "total_bytes",
)


def _reported(info: RecorderInfo | None) -> dict[str, Any]:
    """What ``info`` says, each value kept only when it fits the message's schema (a recorder
    that reports a battery of 150 % must not get its whole health message refused)."""
    if info is None:
        return {}
    out = {k: getattr(info, k) for k in REPORTED}
    pct = out["battery_pct"]
    if pct is not None and not 0 <= pct <= 100:
        out["battery_pct"] = None
    for k in ("free_bytes", "total_bytes", "minutes_to_full"):
        if out[k] is not None and out[k] < 0:
            out[k] = None
    clock = info.clock
    out["clock"] = clock.isoformat() if clock and clock.tzinfo else None
    return out


def _listed(root: Path, profile: Profile) -> tuple[list[MediaFile], list[str]]:
    media, found = list_media(root, profile)
    return media, [str(p) for p in found]


def _measured(
    root: Path,
    profile: Profile,
    config: Config,
    current: RecorderInfo | None,
    read_error: str | None,
) -> tuple[CheckResult, CheckResult, CheckResult]:
    """Battery, free storage and firmware, from the status read now."""
    battery = check_battery(current, profile, config)
    free = current.free_bytes if current else _free_bytes(root)
    storage = check_storage(free, profile, config)
    firmware = check_firmware(current, profile, config)
    if read_error:
        for r in (battery, firmware):
            if r.ok is False and r.value in ("not reported", "unknown"):
                r.detail = read_error
    return battery, storage, firmware


def _clock(
    root: Path,
    profile: Profile,
    config: Config,
    current: RecorderInfo | None,
    info: RecorderInfo | None,
    clock: StationClock,
    station_now: datetime,
    clock_read_at: datetime | None,
    read_error: str | None,
    *,
    writable: bool,
    reconnect: Callable[[], Path] | None,
) -> ClockOutcome:
    """The clock check, measured from the status read at docking when the caller has it."""
    device_clock: datetime | None = current.clock if current else None
    measured_at = station_now
    if clock_read_at is not None and info is not None and info.clock is not None:
        device_clock, measured_at = info.clock, clock_read_at
    outcome = check_clock(
        root,
        profile,
        config,
        current,
        clock=clock,
        device_clock=device_clock,
        measured_at=measured_at,
        writable=writable,
        reconnect=reconnect,
    )
    if read_error and outcome.result.value == "not reported":
        outcome.result.detail = read_error
    return outcome


def _free_bytes(root: Path) -> int | None:
    try:
        st = os.statvfs(root)
    except OSError as exc:
        raise gone_or(exc, str(root)) from exc
    return st.f_bavail * st.f_frsize


def _read_current(
    root: Path, profile: Profile, info: RecorderInfo | None, media: list[MediaFile]
) -> tuple[RecorderInfo | None, str | None]:
    """The recorder's status as it is now, and the reason when it could not be read."""
    try:
        fresh = read_info(root, profile, usb_serial=info.serial if info else None, media=media)
    except RecorderGoneError:
        raise
    except RecorderError as exc:
        log.warning("%s: %s", root, exc)
        if info is None:
            return None, str(exc)
        # e.g. a serial taken from file names that were cleared since: the caller's values
        # (read at docking) stand, with the free space as it is now
        return replace(info, free_bytes=_free_bytes(root)), None
    if info is not None:
        fresh.serial = info.serial  # the caller's identity wins (--serial, the register)
    if fresh.problems:
        return fresh, "; ".join(fresh.problems)
    return fresh, None


# -- recording the result ---------------------------------------------------------------


def health_payload(
    catalog: Catalog,
    report: CheckReport,
    *,
    device_serial: str,
    session_id: str | None,
    bay: int | None,
    at: str,
) -> dict[str, Any]:
    """The retained recorder-health message (topic recdock/<station>/recorder/<serial>)."""
    return {
        "station": catalog.station_id,
        "device_serial": device_serial,
        "at": at,
        "bay": bay,
        "session_id": session_id,
        "ready": report.ready,
        "reasons": list(report.reasons),
        "checks": {
            r.name: {"ok": r.ok, "value": r.value, "threshold": r.threshold, "detail": r.detail}
            for r in report.results
        },
        "clock_offset_s": report.clock_offset_s,
        "clock_offset_after_s": report.clock_offset_after_s,
        "clock_set": report.clock_set,
        "late": [dict(x) for x in report.late],
        **report.reported,
    }


def record_checks(
    catalog: Catalog,
    report: CheckReport,
    *,
    device_serial: str,
    session_id: str | None,
    bay: int | None,
) -> None:
    """Store a check in one transaction: checks row, session drift, audit entry, health message."""
    at = now_utc()
    checks_table.record(
        catalog,
        at=at,
        device_serial=device_serial,
        session_id=session_id,
        bay=bay,
        ready=report.ready,
        results=report.as_dict()["results"],
        clock_offset_s=report.clock_offset_s,
        clock_offset_after_s=report.clock_offset_after_s,
        audit_data=report.as_dict(),
        health=health_payload(
            catalog, report, device_serial=device_serial, session_id=session_id, bay=bay, at=at
        ),
    )
