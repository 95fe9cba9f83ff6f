"""The clock check: the one check that changes the recorder.

When the station clock is NTP-synchronised (agent/seams/clock/) and the profile has a way
(``time_file``), the station writes the time file, the dock reconnects the recorder so its
firmware applies it, and the offset is measured again. An unsynchronised station clock never
sets a recorder's clock.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from agent.checks.results import CheckResult, fmt_offset, fmt_span
from agent.config import Config
from agent.errors import RecorderError, RecorderGoneError
from agent.recorder.media import gone_or, write_small_file
from agent.recorder.profiles import Profile
from agent.recorder.status import RecorderInfo, read_info
from agent.seams.clock import StationClock

log = logging.getLogger(__name__)


def clock_offset(device_clock: datetime | None, station_now: datetime) -> float | None:
    """Device clock minus station clock, in seconds (None when the device gave no clock)."""
    if device_clock is None:
        return None
    return (device_clock - station_now).total_seconds()


@dataclass
class ClockOutcome:
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
) -> ClockOutcome:
    tol = config.checks.clock_tolerance_s
    threshold = f"|offset| <= {tol:g} s after setting"
    if not profile.status.clock:
        r = CheckResult(
            "clock", None, "unknown", threshold, "this recorder model does not report its clock"
        )
        return ClockOutcome(r, None, None, False)
    offset = clock_offset(device_clock, measured_at)
    value = fmt_offset(offset) if offset is not None else "not reported"

    def failed(detail: str, clock_set: bool = False) -> ClockOutcome:
        return ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, clock_set
        )

    if offset is not None and abs(offset) <= tol:
        detail = "within tolerance, not set"
        if not clock.synchronised():
            detail += " (measured against a station clock that is not NTP-synchronised)"
        return ClockOutcome(
            CheckResult("clock", True, value, threshold, detail), offset, None, False
        )
    off_words = fmt_span(offset) if offset is not None else "the recorder did not report its clock"
    why_not = _why_not_set(profile, config, clock, writable)
    if why_not:
        return failed(f"{off_words}; {why_not}")
    try:
        write_time_file(root, profile, clock.now())
    except RecorderGoneError:
        raise
    except RecorderError as exc:
        return failed(f"{off_words}; {exc}")
    if reconnect is None:
        return failed(f"{off_words}; clock set; re-dock to confirm", clock_set=True)
    return _confirm(reconnect(), profile, info, clock, tol, threshold, offset, off_words)


def _why_not_set(
    profile: Profile, config: Config, clock: StationClock, writable: bool
) -> str | None:
    """Why the station may not set this recorder's clock now, or None."""
    if not clock.synchronised():
        return "the station clock is not NTP-synchronised, so it was not set"
    if not config.checks.set_clock:
        return "not set: setting clocks is off (checks.set_clock = false)"
    if profile.clock.set_method != "time_file":
        return f"not set: profile {profile.name!r} has no way to set the clock"
    if not writable:
        return "not set: the recorder is mounted read-only"
    return None


def _confirm(
    new_root: Path,
    profile: Profile,
    info: RecorderInfo | None,
    clock: StationClock,
    tol: float,
    threshold: str,
    offset: float | None,
    off_words: str,
) -> ClockOutcome:
    """After the time file was written and the recorder reconnected: measure again."""
    value = fmt_offset(offset) if offset is not None else "not reported"

    def failed(detail: str) -> ClockOutcome:
        return ClockOutcome(
            CheckResult("clock", False, value, threshold, detail), offset, None, True
        )

    try:
        after_info = read_info(new_root, profile, usb_serial=info.serial if info else None)
    except RecorderGoneError:
        raise
    except RecorderError as exc:
        return failed(f"{off_words}; clock set, but the recorder could not be read again: {exc}")
    after = clock_offset(after_info.clock, clock.now())
    if after is None:
        return failed(
            f"{off_words}; clock set, but the recorder reported no clock after reconnecting"
        )
    ok = abs(after) <= tol
    value = f"{fmt_offset(offset) if offset is not None else 'unknown'} -> {fmt_offset(after)}"
    detail = (
        f"was {off_words}; set from the NTP-synchronised station clock"
        if ok
        else f"was {off_words}; set, but still {fmt_span(after)} after reconnecting"
    )
    return ClockOutcome(CheckResult("clock", ok, value, threshold, detail), offset, after, True)
