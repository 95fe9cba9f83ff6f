"""A recorder's identity and status (serial, officer, unit, battery, clock...), per its profile.

The status file is untrusted (rule 6, docs/architecture.md): size-limited, never followed
through a symlink, schema-checked value by value; a value that is missing or out of range stays
None, and the clock is only a measurement.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.errors import RecorderError
from agent.recorder.media import MediaFile, gone_or
from agent.recorder.profiles import Profile

MAX_STATUS_BYTES = 64 * 1024


@dataclass
class RecorderInfo:
    serial: str
    profile: str
    officer: str | None = None
    unit: str | None = None
    model: str | None = None
    firmware: str | None = None
    battery_pct: float | None = None
    charging: bool | None = None
    minutes_to_full: float | None = None
    clock: datetime | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    problems: list[str] = field(default_factory=list)
    status_serial: str | None = None  # the serial the status file names (untrusted)
    #: why the USB descriptor, the status file and the register disagree (rule 8)
    identity_conflict: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "profile": self.profile,
            "officer": self.officer,
            "unit": self.unit,
            "model": self.model,
            "firmware": self.firmware,
            "battery_pct": self.battery_pct,
            "charging": self.charging,
            "minutes_to_full": self.minutes_to_full,
            "clock": self.clock.isoformat() if self.clock else None,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "problems": list(self.problems),
            "status_serial": self.status_serial,
            "identity_conflict": self.identity_conflict,
        }


def _read_status(root: Path, profile: Profile) -> dict[str, Any] | None:
    name = profile.status.file
    if not name:
        return None
    path = root / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise gone_or(exc, str(path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise RecorderError(f"{path}: status file is not a regular file")
    if st.st_size > MAX_STATUS_BYTES:
        raise RecorderError(f"{path}: status file larger than {MAX_STATUS_BYTES} bytes: refused")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        raw = os.read(fd, MAX_STATUS_BYTES + 1)
    except OSError as exc:
        raise gone_or(exc, str(path)) from exc
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "replace")
    if profile.status.format == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecorderError(f"{path}: status file is not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise RecorderError(f"{path}: status file is not a JSON object")
        return data
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _text(value: Any, limit: int = 64) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return "".join(ch for ch in text if ch.isprintable())[:limit] or None


def _number(value: Any, lo: float, hi: float) -> float | None:
    try:
        num = float(value)
    except (TypeError, ValueError):
        return None
    if num != num or not lo <= num <= hi:  # NaN or out of range
        return None
    return num


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    if isinstance(value, int):
        return bool(value)
    return None


def _clock(value: Any, profile: Profile) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        if profile.status.clock_format == "iso8601":
            dt = datetime.fromisoformat(text)
        else:
            dt = datetime.strptime(text, profile.status.clock_format)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=profile.tz())
    return dt


def read_info(
    root: Path,
    profile: Profile,
    *,
    usb_serial: str | None = None,
    media: list[MediaFile] | None = None,
) -> RecorderInfo:
    """Identity and status of a recorder, per its profile. Missing values stay None."""
    status = _read_status(root, profile)
    problems: list[str] = []
    s = profile.status
    if profile.status.file and status is None:
        problems.append(f"status file {profile.status.file} not found")
    status = status or {}

    def get(key: str | None) -> Any:
        return status.get(key) if key else None

    status_serial = _text(get(s.serial))
    serial = _serial(root, profile, status_serial, usb_serial, media)
    officer = _text(get(s.officer))
    if officer is None and media:
        for m in media:
            officer = profile.name_fields(
                os.path.basename(m.relpath).decode("utf-8", "replace")
            ).get("officer")
            if officer:
                break
    info = RecorderInfo(
        serial=serial,
        profile=profile.name,
        officer=officer,
        unit=_text(get(s.unit)),
        model=_text(get(s.model)),
        firmware=_text(get(s.firmware)),
        battery_pct=_number(get(s.battery), 0, 100),
        charging=_bool(get(s.charging)),
        minutes_to_full=_number(get(s.charge_minutes_to_full), 0, 24 * 60),
        clock=_clock(get(s.clock), profile),
        problems=problems,
        status_serial=status_serial,
    )
    try:
        st = os.statvfs(root)
        info.free_bytes = st.f_bavail * st.f_frsize
        info.total_bytes = st.f_blocks * st.f_frsize
    except OSError as exc:
        raise gone_or(exc, str(root)) from exc
    return info


def _serial(
    root: Path,
    profile: Profile,
    from_status: str | None,
    usb_serial: str | None,
    media: list[MediaFile] | None,
) -> str:
    """The device serial, from where the profile says to take it."""
    serial: str | None
    if profile.identity.source == "status_file":
        serial = from_status
    elif profile.identity.source == "usb_serial":
        serial = _text(usb_serial)
    else:
        serial = None
        for m in media or []:
            fields = profile.name_fields(os.path.basename(m.relpath).decode("utf-8", "replace"))
            if fields.get("device"):
                serial = fields["device"]
                break
    if not serial:
        raise RecorderError(
            f"{root}: no device serial found ({profile.identity.source} per profile "
            f"{profile.name!r}); offload refused. Check the profile, or pass --serial"
        )
    return serial
