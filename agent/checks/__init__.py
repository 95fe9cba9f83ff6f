"""Pre-shift checks (rule clause 4): battery, free storage, clock, firmware, nothing left behind.

Each check gives a :class:`CheckResult` with the measured value, the threshold and
the reason in words; ``ok`` is True (pass), False (fail) or None (this recorder
model offers no way to measure it: shown as "unknown"). A recorder is ready when
no check failed; docs/checks.md states every rule.

The clock is the one check that changes the recorder: when the station clock is
NTP-synchronised (agent/seams/clock/__init__.py) and the profile has a way (``time_file``), the
station writes the time file, the dock reconnects the recorder so its firmware
applies it, and the offset is measured again. An unsynchronised station clock
never sets a recorder's clock.

Everything the recorder reports is untrusted (rule 6): its status values are
only measurements, and a missing or broken one fails the check it feeds rather
than passing it.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog import Catalog, now_utc, recordings
from agent.catalog import checks as checks_table
from agent.config import Config
from agent.errors import RecorderError, RecorderGoneError
from agent.recorder.media import (
    MediaFile,
    RecorderInfo,
    gone_or,
    list_media,
    read_info,
    write_small_file,
)
from agent.recorder.profiles import Profile

if TYPE_CHECKING:
    from agent.offload import OffloadReport
    from agent.seams.clock import StationClock

log = logging.getLogger(__name__)

GiB = 1024**3
ORDER = ("battery", "storage", "clock", "firmware", "offload", "late")
LATE_LISTED = 5  # late recordings named in the detail; the full list is in CheckReport.late


@dataclass
class CheckResult:
    name: str  # battery | storage | clock | firmware | offload | late
    ok: bool | None  # None: could not be measured (the model offers no way): "unknown"
    value: str
    threshold: str
    detail: str = ""

    @property
    def state(self) -> str:
        return "pass" if self.ok else ("unknown" if self.ok is None else "FAIL")


@dataclass
class CheckReport:
    results: list[CheckResult]
    ready: bool
    reasons: list[str]
    clock_offset_s: float | None
    clock_offset_after_s: float | None
    clock_set: bool
    late: list[dict[str, Any]] = field(default_factory=list)
    station_clock: str = ""  # StationClock.describe() at the time of the check
    device_serial: str | None = None  # as read from the recorder (or given by the caller)

    def result(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reasons": list(self.reasons),
            "results": [{**asdict(r), "state": r.state} for r in self.results],
            "clock_offset_s": self.clock_offset_s,
            "clock_offset_after_s": self.clock_offset_after_s,
            "clock_set": self.clock_set,
            "late": [dict(x) for x in self.late],
            "station_clock": self.station_clock,
            "device_serial": self.device_serial,
        }


# -- formatting -------------------------------------------------------------------------


def _size(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    return f"{n / 1024**2:.1f} MiB"


def _pct(p: float) -> str:
    return f"{p:.0f} %"


def _offset(s: float) -> str:
    return f"{s:+.1f} s"


def _span(seconds: float) -> str:
    """A clock offset in words: '1 h 0 min ahead', '26.0 years behind'."""
    a = abs(seconds)
    side = "ahead" if seconds > 0 else "behind"
    if a >= 2 * 86400 * 365:
        return f"{a / (86400 * 365.25):.1f} years {side}"
    if a >= 2 * 86400:
        return f"{a / 86400:.1f} days {side}"
    if a >= 3600:
        return f"{int(a // 3600)} h {int(a % 3600 // 60)} min {side}"
    if a >= 60:
        return f"{int(a // 60)} min {int(a % 60)} s {side}"
    return f"{a:.1f} s {side}"


def clock_offset(device_clock: datetime | None, station_now: datetime) -> float | None:
    """Device clock minus station clock, in seconds (None when the device gave no clock)."""
    if device_clock is None:
        return None
    return (device_clock - station_now).total_seconds()


def shift_need_bytes(profile: Profile, config: Config) -> int:
    """Bytes one shift of recording needs: shift hours at the profile's bitrate."""
    return int(config.checks.shift_hours * 3600 * profile.media.bitrate_mbps * 1e6 / 8)


# -- the checks -------------------------------------------------------------------------


def check_battery(info: RecorderInfo | None, profile: Profile, config: Config) -> CheckResult:
    need = config.checks.min_battery_pct
    threshold = f">= {_pct(need)}"
    if not profile.status.battery:
        return CheckResult(
            "battery", None, "unknown", threshold, "this recorder model does not report its battery"
        )
    if info is None or info.battery_pct is None:
        return CheckResult(
            "battery",
            False,
            "not reported",
            threshold,
            f"the recorder did not report a valid battery level ({profile.status.file})",
        )
    pct = info.battery_pct
    if pct >= need:
        return CheckResult(
            "battery", True, _pct(pct), threshold, "charging" if info.charging else ""
        )
    if not info.charging:
        return CheckResult("battery", False, _pct(pct), threshold, "not charging: charge it")
    minutes = _minutes_to(pct, need, info, profile)
    detail = (
        f"charging, about {minutes} minutes to {_pct(need)}"
        if minutes is not None
        else "charging, no estimate of the time to charge"
    )
    return CheckResult("battery", False, _pct(pct), threshold, detail)


def _minutes_to(pct: float, need: float, info: RecorderInfo, profile: Profile) -> int | None:
    """Minutes until the battery reaches ``need``: the device's own estimate, else the profile's."""
    if info.minutes_to_full is not None and pct < 100:
        # the device estimates the time to full; take the share up to the threshold
        return max(1, math.ceil(info.minutes_to_full * (need - pct) / (100 - pct)))
    rate = profile.battery.charge_pct_per_minute
    if rate:
        return max(1, math.ceil((need - pct) / rate))
    return None


def check_storage(free_bytes: int | None, profile: Profile, config: Config) -> CheckResult:
    need = shift_need_bytes(profile, config)
    threshold = (
        f">= {_size(need)} ({config.checks.shift_hours:g} h at "
        f"{profile.media.bitrate_mbps:g} Mbit/s)"
    )
    if free_bytes is None:
        return CheckResult("storage", None, "unknown", threshold, "free space could not be read")
    ok = free_bytes >= need
    hours = free_bytes * 8 / (profile.media.bitrate_mbps * 1e6) / 3600
    detail = f"room for about {hours:.1f} h of recording"
    return CheckResult("storage", ok, f"{_size(free_bytes)} free", threshold, detail)


def check_firmware(info: RecorderInfo | None, profile: Profile, config: Config) -> CheckResult:
    approved = config.checks.approved_firmware
    version = info.firmware if info else None
    value = version or "unknown"
    if not approved:
        return CheckResult("firmware", True, value, "any", "no approved list configured")
    threshold = "one of " + ", ".join(approved)
    if version is None:
        why = (
            "this recorder model does not report its firmware"
            if not profile.status.firmware
            else "the recorder did not report its firmware version"
        )
        return CheckResult("firmware", False, value, threshold, f"{why}; an approved list is set")
    if version in approved:
        return CheckResult("firmware", True, value, threshold, "approved")
    return CheckResult("firmware", False, value, threshold, f"firmware {version} is not approved")


def check_offload_report(offload: OffloadReport) -> CheckResult:
    n = len(offload.files)
    verified = sum(1 for f in offload.files if f.status in ("stored", "already"))
    value = f"{verified} of {n} verified in the store"
    threshold = "every recording verified in the store"
    if offload.ok:
        return CheckResult("offload", True, value, threshold, "nothing left behind")
    failures = offload.failures
    first = failures[0] if failures else "offload incomplete"
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return CheckResult("offload", False, value, threshold, f"{first}{more}")


def check_offload_catalog(
    media: list[MediaFile], problems: list[str], serial: str | None, catalog: Catalog | None
) -> CheckResult:
    """Without an offload: is every recording on the recorder in the catalog (name and size)?"""
    threshold = "every recording in the catalog"
    if catalog is None or serial is None:
        why = "no catalog to compare with" if catalog is None else "device serial unknown"
        return CheckResult("offload", None, "unknown", threshold, why)
    missing = [
        m.name for m in media if not recordings.known_source(catalog, serial, m.name, m.size)
    ]
    n = len(media)
    value = f"{n - len(missing)} of {n} in the catalog"
    if not missing and not problems:
        detail = "nothing left behind" if n else "no recordings on the recorder"
        return CheckResult("offload", True, value, threshold, detail)
    lines = [f"{name}: not offloaded" for name in missing] + problems
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return CheckResult("offload", False, value, threshold, f"{lines[0]}{more}; offload it")


def late_from_offload(offload: OffloadReport) -> list[dict[str, Any]]:
    return [
        {"source_path": f.source_path, "age_hours": f.age_hours} for f in offload.files if f.late
    ]


def late_from_media(
    media: list[MediaFile], profile: Profile, config: Config, now: datetime
) -> list[dict[str, Any]]:
    """Recordings whose start time (from the file name, as the offload reads it) is too old."""
    out = []
    limit = config.offload.late_after_hours
    for m in media:
        start = profile.start_from_name(os.path.basename(m.relpath).decode("utf-8", "replace"))
        if start is None:
            continue
        age = (now - start).total_seconds() / 3600
        if age > limit:
            out.append({"source_path": m.name, "age_hours": round(age, 2)})
    return out


def check_late(late: list[dict[str, Any]], config: Config) -> CheckResult:
    limit = config.offload.late_after_hours
    threshold = f"<= {limit:g} h old at docking"
    if not late:
        return CheckResult("late", True, "0 late", threshold, "")
    names = ", ".join(
        f"{x['source_path']} ({x['age_hours']:.1f} h)"
        if x["age_hours"] is not None
        else x["source_path"]
        for x in late[:LATE_LISTED]
    )
    more = f" and {len(late) - LATE_LISTED} more" if len(late) > LATE_LISTED else ""
    detail = f"offloaded late (rule: within {limit:g} h): {names}{more}"
    return CheckResult("late", True, f"{len(late)} late", threshold, detail)


# -- the clock --------------------------------------------------------------------------


@dataclass
class _ClockOutcome:
    result: CheckResult
    offset: float | None
    offset_after: float | None
    clock_set: bool


def write_time_file(root: Path, profile: Profile, station_now: datetime) -> Path:
    """Write the profile's time file (station time in the device's zone) on the recorder.

    The time is rounded to the nearest second, since the format has whole seconds.
    The recorder's file system is FAT: a plain write and fsync (no rename), without
    following a symbolic link the recorder may present in its place.
    """
    name = profile.clock.time_file
    if not name:
        raise RecorderError(f"profile {profile.name!r} has no clock.time_file")
    path = root / name
    local = (station_now + timedelta(milliseconds=500)).astimezone(profile.tz())
    text = local.replace(microsecond=0).strftime(profile.clock.time_format) + "\n"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise gone_or(exc, str(path)) from exc
    else:
        if not stat.S_ISREG(st.st_mode):
            raise RecorderError(f"{path}: exists and is not a regular file: clock not set")
    try:
        write_small_file(path, text.encode("ascii"))
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise RecorderError(
                f"{path}: the recorder is mounted read-only: clock not set"
            ) from exc
        raise gone_or(exc, str(path)) from exc
    log.info("%s: wrote %s = %s", root, name, text.strip())
    return path


def check_clock(
    root: Path,
    profile: Profile,
    config: Config,
    info: RecorderInfo | None,
    *,
    clock: StationClock,
    device_clock: datetime | None,
    measured_at: datetime,
    writable: bool,
    reconnect: Callable[[], Path] | None,
) -> _ClockOutcome:
    tol = config.checks.clock_tolerance_s
    threshold = f"|offset| <= {tol:g} s after setting"
    if not profile.status.clock:
        r = CheckResult(
            "clock", None, "unknown", threshold, "this recorder model does not report its clock"
        )
        return _ClockOutcome(r, None, None, False)
    offset = clock_offset(device_clock, measured_at)
    value = _offset(offset) if offset is not None else "not reported"
    if offset is not None and abs(offset) <= tol:
        detail = "within tolerance, not set"
        if not clock.synchronised():
            detail += " (measured against a station clock that is not NTP-synchronised)"
        return _ClockOutcome(
            CheckResult("clock", True, value, threshold, detail), offset, None, False
        )
    off_words = _span(offset) if offset is not None else "the recorder did not report its clock"
    # may the station set it?
    if not clock.synchronised():
        detail = f"{off_words}; the station clock is not NTP-synchronised, so it was not set"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, False
        )
    why_not = None
    if not config.checks.set_clock:
        why_not = "setting clocks is off (checks.set_clock = false)"
    elif profile.clock.set_method != "time_file":
        why_not = f"profile {profile.name!r} has no way to set the clock"
    elif not writable:
        why_not = "the recorder is mounted read-only"
    if why_not:
        detail = f"{off_words}; not set: {why_not}"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, False
        )
    try:
        write_time_file(root, profile, clock.now())
    except RecorderGoneError:
        raise
    except RecorderError as exc:
        detail = f"{off_words}; {exc}"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, False
        )
    if reconnect is None:
        detail = f"{off_words}; clock set; re-dock to confirm"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, True
        )
    new_root = reconnect()
    try:
        after_info = read_info(new_root, profile, usb_serial=info.serial if info else None)
    except RecorderGoneError:
        raise
    except RecorderError as exc:
        detail = f"{off_words}; clock set, but the recorder could not be read again: {exc}"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, True
        )
    after = clock_offset(after_info.clock, clock.now())
    if after is None:
        detail = f"{off_words}; clock set, but the recorder reported no clock after reconnecting"
        return _ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, True
        )
    ok = abs(after) <= tol
    value = f"{_offset(offset) if offset is not None else 'unknown'} -> {_offset(after)}"
    detail = (
        f"was {off_words}; set from the NTP-synchronised station clock"
        if ok
        else f"was {off_words}; set, but still {_span(after)} after reconnecting"
    )
    return _ClockOutcome(CheckResult("clock", ok, value, threshold, detail), offset, after, True)


# -- all together -----------------------------------------------------------------------


def _reason(r: CheckResult, config: Config) -> str:
    if r.name == "battery":
        if r.value in ("not reported", "unknown"):
            return "battery level not reported"
        base = f"battery {r.value} < {_pct(config.checks.min_battery_pct)}"
        return f"{base}, {r.detail}" if r.detail.startswith("charging") else base
    if r.name == "storage":
        return f"storage {r.value} < {r.threshold.removeprefix('>= ')}"
    if r.name == "clock":
        if "not NTP-synchronised" in r.detail:
            return f"clock {r.value} off; station clock not synchronised"
        if "re-dock" in r.detail:
            return "clock set; re-dock to confirm"
        return f"clock {r.value} off"
    if r.name == "firmware":
        return f"firmware {r.value} not approved"
    if r.name == "offload":
        return f"offload: only {r.value}"
    return f"{r.name}: {r.detail or r.value}"


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
) -> CheckReport:
    """Run every pre-shift check on the recorder mounted at ``root``.

    The recorder is re-read here (status file, free space) so the values are those
    after the offload and clearing. ``info`` supplies the identity (and the values,
    when the status file cannot be read again); ``offload`` the offload's verdict
    and late flags; without it, the media are listed and looked up in ``catalog``.
    ``writable`` allows setting the clock; ``reconnect`` makes the dock reconnect the
    recorder so its firmware applies the time file, and returns the new root.
    ``clock_read_at`` is the station time when ``info`` was read at docking: the
    recorder writes its clock into its status file when it is docked, so after a long
    offload the offset is measured from ``info.clock`` at that time, not from the
    status file read again now. A recorder that went away raises RecorderGoneError.
    """
    media: list[MediaFile] = []
    problems: list[str] = []
    if offload is None or profile.identity.source == "file_name":
        media, found = list_media(root, profile)
        problems = [str(p) for p in found]
    current, read_error = _read_current(root, profile, info, media)
    station_now = clock.now()

    battery = check_battery(current, profile, config)
    free = current.free_bytes if current else _free_bytes(root)
    storage = check_storage(free, profile, config)
    firmware = check_firmware(current, profile, config)
    if read_error:
        for r in (battery, firmware):
            if r.ok is False and r.value in ("not reported", "unknown"):
                r.detail = read_error
    if offload is not None:
        off = check_offload_report(offload)
        late = late_from_offload(offload)
    else:
        serial = current.serial if current else (info.serial if info else None)
        off = check_offload_catalog(media, problems, serial, catalog)
        late = late_from_media(media, profile, config, station_now)
    late_r = check_late(late, config)
    device_clock: datetime | None = current.clock if current else None
    measured_at = station_now
    if clock_read_at is not None and info is not None and info.clock is not None:
        device_clock, measured_at = info.clock, clock_read_at
    # last: setting the clock may reconnect the recorder (a new mount)
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
    results = [battery, storage, outcome.result, firmware, off, late_r]
    failed = [r for r in results if r.ok is False]
    return CheckReport(
        results=results,
        ready=not failed,
        reasons=[_reason(r, config) for r in failed],
        clock_offset_s=outcome.offset,
        clock_offset_after_s=outcome.offset_after,
        clock_set=outcome.clock_set,
        late=late,
        station_clock=clock.describe(),
        device_serial=current.serial if current else (info.serial if info else None),
    )


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
