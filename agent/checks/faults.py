"""The fault rules a station applies to a recorder at each docking, and to the recorders it has
not seen for too long (docs/faults.md names each rule, its setting and its evidence).

At each docking, once its checks are stored (:func:`after_docking`):

* ``recorder.check``: the pre-shift check failed for the same reason at
  ``repeated_check_failures`` dockings in a row (one fault per recorder and reason);
* ``recorder.clock_reset``: the recorder's clock was found before ``clock_reset_before_year``
  or before its previous docking here;
* ``recorder.clock_drift``: its clock moved more than ``clock_drift_s_per_day`` per day since the
  previous docking left it (GA/T 947);
* ``recorder.battery``: its charge fell faster during the last shift than
  ``battery_drain_factor`` times its own median (from the level it was last read at while
  docked, else from full);
* ``recorder.firmware``: it runs firmware that is not in ``[checks] approved_firmware``;
* ``storage.capacity``: its file system is smaller than its profile's ``storage.capacity_bytes``
  (less ``capacity_tolerance_percent``).

A rule that no longer sees its condition at a later docking resolves the fault (the docking is
the observation). :func:`overdue` runs in the daemon's loop: ``recorder.overdue`` for a
registered recorder not docked again ``overdue_after_hours`` after it left.

Everything a recorder reports is untrusted (rule 6, docs/architecture.md): its values only
feed the rules as measurements, kept as the fault's evidence.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.catalog import Catalog, history
from agent.catalog import checks as checks_table
from agent.catalog.faults import condition_gone, open_subjects, report_fault
from agent.checks.results import CheckReport
from agent.config import Config
from agent.recorder.status import RecorderInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Docking:
    """What the rules know of this docking."""

    serial: str
    session_id: str | None
    at: datetime  # station time the recorder's status was read at docking
    info: RecorderInfo | None
    report: CheckReport
    capacity_bytes: int | None = None  # what its profile says its storage holds


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def _hours(a: str, b: datetime) -> float:
    return (b - datetime.fromisoformat(a)).total_seconds() / 3600


def after_docking(catalog: Catalog, config: Config, d: Docking) -> None:
    """Record this docking in the recorder's history, then apply every docking rule."""
    previous = history.recent(catalog, d.serial, config.faults.battery_history_min + 1)
    report = d.report
    history.record(
        catalog,
        d.serial,
        session_id=d.session_id,
        docked_at=_iso(d.at),
        battery_pct=d.info.battery_pct if d.info else None,
        device_clock=_iso(d.at + timedelta(seconds=report.clock_offset_s))
        if report.clock_offset_s is not None
        else None,
        clock_offset_s=report.clock_offset_s,
        clock_offset_after_s=_left_offset(report),
    )
    _settle(catalog, "recorder.overdue", d.serial, None, "docked again")
    repeated_failures(catalog, config, d.serial)
    if not clock_reset(catalog, config, d, previous[0] if previous else None):
        clock_drift(catalog, config, d, previous[0] if previous else None)
    battery_drain(catalog, config, d, previous)
    firmware(catalog, d)
    storage_capacity(catalog, config, d)


def _left_offset(report: CheckReport) -> float | None:
    """The offset the station left the recorder's clock at."""
    if report.clock_set and report.clock_offset_after_s is not None:
        return report.clock_offset_after_s
    return report.clock_offset_s


def _settle(
    catalog: Catalog, kind: str, serial: str, found: dict[str, Any] | None, *args: str
) -> None:
    """Open (``found``: detail, evidence, severity) or resolve the rule's fault."""
    if found is None:
        condition_gone(catalog, kind, serial, hold_s=0, note=args[0] if args else "condition gone")
        return
    report_fault(
        catalog,
        kind,
        serial,
        found["detail"],
        severity=found.get("severity", "error"),
        evidence=found["evidence"],
    )


def repeated_failures(catalog: Catalog, config: Config, serial: str) -> None:
    """``recorder.check``: the same check failed at the last N dockings."""
    n = config.faults.repeated_check_failures
    rows = checks_table.recent_of_device(catalog, serial, n)
    names = {r["name"] for r in rows[0]["results"]} if rows else set()
    for name in sorted(names):
        failed = [_failed(row, name) for row in rows]
        subject = f"{serial} {name}"
        if len(rows) == n and all(failed):
            evidence = {
                "checks": [
                    {"check_id": r["id"], "at": r["at"], **f}
                    for r, f in zip(rows, failed, strict=True)
                ],
                "in_a_row": n,
            }
            detail = (
                f"{serial} failed its '{name}' check at {n} dockings in a row "
                f"(last: {failed[0].get('detail') or failed[0].get('value')}); take it out "
                "of service and have it seen to"
            )
            _settle(catalog, "recorder.check", subject, {"detail": detail, "evidence": evidence})
        elif not failed[0]:
            _settle(catalog, "recorder.check", subject, None, f"'{name}' passed again")


def _failed(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    for r in row["results"]:
        if r.get("name") == name and r.get("ok") is False:
            return {"value": r.get("value"), "detail": r.get("detail")}
    return None


def clock_reset(catalog: Catalog, config: Config, d: Docking, prev: history.Docked | None) -> bool:
    """``recorder.clock_reset``: found before the firmware-default cut-off year, or before its
    previous docking here. True when it was found reset."""
    offset = d.report.clock_offset_s
    if offset is None:
        return False
    device = d.at + timedelta(seconds=offset)
    cutoff = config.faults.clock_reset_before_year
    why, before = None, _went_back(config, device, prev)
    if device.year < cutoff:
        why = f"its clock read {device.isoformat()}, before {cutoff}: it was reset"
    elif before is not None:
        why = (
            f"its clock read {device.isoformat()}, before it read at its previous docking "
            f"here ({before}): it was reset or set back"
        )
    if why is None:
        _settle(catalog, "recorder.clock_reset", d.serial, None, "its clock reads a sane time")
        return False
    evidence = {
        "device_clock": device.isoformat(),
        "station_clock": _iso(d.at),
        "offset_s": offset,
        "before_year": cutoff,
        "previous_docked_at": prev.docked_at if prev else None,
        "previous_device_clock": before,
    }
    detail = f"{d.serial}: {why}; its battery or clock cell may be failing"
    _settle(catalog, "recorder.clock_reset", d.serial, {"detail": detail, "evidence": evidence})
    return True


def _went_back(config: Config, device: datetime, prev: history.Docked | None) -> str | None:
    """What the clock read at the previous docking (as the station left it), when it reads
    earlier now (beyond the clock tolerance): a clock that ran backwards was reset."""
    if prev is None or prev.clock_offset_after_s is None:
        return None
    then = datetime.fromisoformat(prev.docked_at) + timedelta(seconds=prev.clock_offset_after_s)
    if device >= then - timedelta(seconds=config.checks.clock_tolerance_s):
        return None
    return then.isoformat()


def clock_drift(catalog: Catalog, config: Config, d: Docking, prev: history.Docked | None) -> None:
    """``recorder.clock_drift``: seconds per day since the previous docking left its clock."""
    offset, rules = d.report.clock_offset_s, config.faults
    if offset is None or prev is None or prev.clock_offset_after_s is None:
        return
    hours = _hours(prev.docked_at, d.at)
    if hours < rules.clock_drift_min_hours:
        return
    per_day = (offset - prev.clock_offset_after_s) / (hours / 24)
    if abs(per_day) <= rules.clock_drift_s_per_day:
        _settle(catalog, "recorder.clock_drift", d.serial, None, f"drift {per_day:+.1f} s/day")
        return
    evidence = {
        "drift_s_per_day": round(per_day, 3),
        "limit_s_per_day": rules.clock_drift_s_per_day,
        "offset_s": offset,
        "previous_offset_left_s": prev.clock_offset_after_s,
        "previous_docked_at": prev.docked_at,
        "docked_at": _iso(d.at),
        "hours_between": round(hours, 2),
    }
    detail = (
        f"{d.serial}: its clock drifts {per_day:+.1f} s per day (at most "
        f"{rules.clock_drift_s_per_day:g} s/day, GA/T 947); have its clock seen to"
    )
    _settle(catalog, "recorder.clock_drift", d.serial, {"detail": detail, "evidence": evidence})


def _left_with(left: history.Docked) -> float:
    """The level it left a full dock with: the last reading while it stayed docked, when the
    station read one (agent/station/charge.py), else taken as full."""
    return 100.0 if left.battery_last_pct is None else left.battery_last_pct


def _shift_rates(rows: list[history.Docked], full_hours: float) -> list[float]:
    """%/h over each shift that followed a full dock: oldest first. ``rows`` newest first;
    each pair is (the docking it left, the docking it came back to)."""
    rates = []
    for back, left in zip(rows, rows[1:], strict=False):
        if left.undocked_at is None or back.battery_pct is None:
            continue
        if _hours(left.docked_at, datetime.fromisoformat(left.undocked_at)) < full_hours:
            continue
        shift = _hours(left.undocked_at, datetime.fromisoformat(back.docked_at))
        if shift > 0:
            rates.append(max(0.0, _left_with(left) - back.battery_pct) / shift)
    return rates[::-1]


def battery_drain(
    catalog: Catalog, config: Config, d: Docking, previous: list[history.Docked]
) -> None:
    """``recorder.battery``: the last shift's drain against the recorder's own median."""
    rules = config.faults
    rows = history.recent(catalog, d.serial, rules.battery_history_min + 2)
    rates = _shift_rates(rows, rules.battery_full_dock_hours)
    if len(rates) < rules.battery_history_min + 1:
        return
    *own, last = rates
    median = statistics.median(own)
    if median <= 0 or last <= rules.battery_drain_factor * median:
        _settle(catalog, "recorder.battery", d.serial, None, f"drain {last:.1f} %/h")
        return
    evidence = {
        "drain_pct_per_h": round(last, 2),
        "median_pct_per_h": round(median, 2),
        "factor": rules.battery_drain_factor,
        "history_pct_per_h": [round(r, 2) for r in own],
        "battery_pct_at_docking": d.info.battery_pct if d.info else None,
        "battery_pct_at_undocking": rows[1].battery_last_pct,
    }
    detail = (
        f"{d.serial}: its battery fell {last:.1f} %/h during the last shift, more than "
        f"{rules.battery_drain_factor:g} x its own median ({median:.1f} %/h); have the "
        "battery replaced"
    )
    _settle(catalog, "recorder.battery", d.serial, {"detail": detail, "evidence": evidence})


def firmware(catalog: Catalog, d: Docking) -> None:
    """``recorder.firmware``: firmware outside ``[checks] approved_firmware``."""
    result = next((r for r in d.report.results if r.name == "firmware"), None)
    if result is None or result.ok is None or result.value in ("unknown", "not reported"):
        return
    if result.ok:
        _settle(catalog, "recorder.firmware", d.serial, None, f"firmware {result.value} approved")
        return
    evidence = {"firmware": result.value, "approved": result.threshold}
    detail = (
        f"{d.serial} runs firmware {result.value}, not approved ({result.threshold}); update it"
    )
    _settle(
        catalog,
        "recorder.firmware",
        d.serial,
        {"detail": detail, "evidence": evidence, "severity": "warning"},
    )


def storage_capacity(catalog: Catalog, config: Config, d: Docking) -> None:
    """``storage.capacity``: its file system is smaller than its profile says (less the
    tolerance): a counterfeit card, or one that lost capacity."""
    stated, total = d.capacity_bytes, d.info.total_bytes if d.info else None
    if stated is None or total is None:
        return
    tolerance = config.faults.capacity_tolerance_percent
    floor = stated * (1 - tolerance / 100)
    if total >= floor:
        _settle(catalog, "storage.capacity", d.serial, None, f"capacity {total} bytes")
        return
    evidence = {
        "total_bytes": total,
        "capacity_bytes": stated,
        "tolerance_percent": tolerance,
        "at_least_bytes": int(floor),
        "profile": d.info.profile if d.info else None,
    }
    detail = (
        f"{d.serial}: its storage holds {total / 1e9:.2f} GB, its profile says "
        f"{stated / 1e9:.2f} GB (at most {tolerance:g} % less): a counterfeit or failing card; "
        "take it out of service and have the card replaced"
    )
    _settle(catalog, "storage.capacity", d.serial, {"detail": detail, "evidence": evidence})


def overdue(catalog: Catalog, config: Config, now: datetime | None = None) -> list[str]:
    """``recorder.overdue``: registered recorders not docked again in time; their serials."""
    now = now or datetime.now(UTC)
    limit = config.faults.overdue_after_hours
    late = []
    already = open_subjects(catalog, "recorder.overdue")
    for serial, last in history.last_undocked(catalog, [d.serial for d in config.devices]).items():
        if last is None or last.undocked_at is None:
            continue  # never docked here, or docked now
        hours = _hours(last.undocked_at, now)
        if hours < limit:
            continue
        late.append(serial)
        if serial in already:
            continue  # open: seen again each loop would only count the loop
        evidence = {
            "undocked_at": last.undocked_at,
            "hours_since": round(hours, 2),
            "limit_hours": limit,
            "last_session_id": last.session_id,
        }
        detail = (
            f"{serial} has not been docked for {hours:.1f} h since it left "
            f"({last.undocked_at}; at most {limit:g} h): find it and dock it"
        )
        report_fault(catalog, "recorder.overdue", serial, detail, evidence=evidence)
    return late
