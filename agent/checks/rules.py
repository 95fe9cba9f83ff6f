"""The measured checks: battery, free storage, firmware, nothing left behind, late recordings.

Everything the recorder reports is untrusted (rule 6, docs/architecture.md): its status values
are only measurements, and a missing or broken one fails the check it feeds rather than
passing it.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any

from agent.catalog import Catalog, recordings
from agent.checks.results import LATE_LISTED, CheckResult, fmt_pct, fmt_size
from agent.config import Config
from agent.offload.report import OffloadReport
from agent.recorder.media import MediaFile
from agent.recorder.profiles import Profile
from agent.recorder.status import RecorderInfo


def shift_need_bytes(profile: Profile, config: Config) -> int:
    """Bytes one shift of recording needs: shift hours at the profile's bitrate."""
    return int(config.checks.shift_hours * 3600 * profile.media.bitrate_mbps * 1e6 / 8)


# -- the checks -------------------------------------------------------------------------


def check_battery(info: RecorderInfo | None, profile: Profile, config: Config) -> CheckResult:
    need = config.checks.min_battery_pct
    threshold = f">= {fmt_pct(need)}"
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
            "battery", True, fmt_pct(pct), threshold, "charging" if info.charging else ""
        )
    if not info.charging:
        return CheckResult("battery", False, fmt_pct(pct), threshold, "not charging: charge it")
    minutes = _minutes_to(pct, need, info, profile)
    detail = (
        f"charging, about {minutes} minutes to {fmt_pct(need)}"
        if minutes is not None
        else "charging, no estimate of the time to charge"
    )
    return CheckResult("battery", False, fmt_pct(pct), threshold, detail)


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
        f">= {fmt_size(need)} ({config.checks.shift_hours:g} h at "
        f"{profile.media.bitrate_mbps:g} Mbit/s)"
    )
    if free_bytes is None:
        return CheckResult("storage", None, "unknown", threshold, "free space could not be read")
    ok = free_bytes >= need
    hours = free_bytes * 8 / (profile.media.bitrate_mbps * 1e6) / 3600
    detail = f"room for about {hours:.1f} h of recording"
    return CheckResult("storage", ok, f"{fmt_size(free_bytes)} free", threshold, detail)


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
    if offload.complete:
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
