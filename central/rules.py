"""The centre's own fault rules: what no single station can see.

:func:`evaluate` runs every rule once at a chosen ``now`` (recdock-central runs it every
``rules_interval_s`` seconds; tests call it directly) in one transaction. Each rule finds the
conditions that hold now, each with its evidence (the values that tripped it); a condition
with no open fault opens one (``origin`` centre, id ``centre:<rule>:<digest of its
subject>``, central/catalog/faults.py), one that is still open has its evidence renewed, and
an open centre fault whose condition is gone is resolved by ``recdock-central`` with a note.
docs/faults.md lists the rules, their thresholds and their settings
(:class:`central.settings.CentreSettings`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from central.catalog import CentralCatalog, devices, faults, history, register, stations
from central.health import hours_since
from central.settings import CentreSettings
from central.views import drift_series

logger = logging.getLogger(__name__)

CENTRE = faults.CENTRE


@dataclass(frozen=True)
class Finding:
    """One condition that holds: the fault it opens or keeps open."""

    rule: str
    station: str
    subject: str
    severity: str
    detail: str
    evidence: dict[str, Any]
    device: str | None = None

    def fault(self) -> dict[str, Any]:
        digest = hashlib.sha256(f"{self.station}\0{self.subject}".encode()).hexdigest()[:12]
        return {
            "id": f"centre:{self.rule}:{digest}",
            "station": self.station,
            "rule": self.rule,
            "kind": self.rule,
            "subject": self.subject,
            "severity": self.severity,
            "detail": self.detail,
            "device": self.device,
            "evidence": self.evidence,
        }


Rule = Callable[[Any, CentreSettings, datetime], Iterator[Finding]]


def _stations(conn: Any, c: CentreSettings, now: datetime) -> Iterator[Finding]:
    """``station.offline``: its status has been ``offline`` (the Last Will) longer than
    ``station_offline_minutes``; ``station.silent``: no message for ``station_silent_hours``."""
    for row in stations.rows(conn):
        name = row["station"]
        if row["status"] == "offline":
            hours = hours_since(row["status_at"], now) or 0.0
            if hours * 60 > c.station_offline_minutes:
                yield Finding(
                    "station.offline", name, name, "error",
                    f"station {name} is offline (its Last Will) for {hours:.1f} h",
                    {"status": "offline", "since": row["status_at"], "hours": round(hours, 2),
                     "threshold_minutes": c.station_offline_minutes},
                )  # fmt: skip
            continue
        silent = hours_since(row["last_seen"] or row["status_at"], now)
        if silent is not None and silent > c.station_silent_hours:
            yield Finding(
                "station.silent", name, name, "warning",
                f"no message from station {name} for {silent:.1f} h",
                {"last_seen": row["last_seen"], "status": row["status"],
                 "hours": round(silent, 2), "threshold_hours": c.station_silent_hours},
            )  # fmt: skip


def _overdue(conn: Any, c: CentreSettings, now: datetime) -> Iterator[Finding]:
    """``recorder.overdue``: a recorder in service (or not registered) whose last report, from
    any station, is older than ``overdue_hours``."""
    before = (now - timedelta(hours=c.overdue_hours)).isoformat()
    entries = register.by_serial(conn)
    for d in devices.not_seen_since(conn, before):
        entry = entries.get(d["serial"])
        if entry is not None and entry["lifecycle"] != "in_service":
            continue
        hours = hours_since(d["at"], now) or 0.0
        yield Finding(
            "recorder.overdue", CENTRE, d["serial"], "warning",
            f"recorder {d['serial']} docked nowhere for {hours:.1f} h (last at {d['station']})",
            {"last_docked": d["at"], "last_station": d["station"], "hours": round(hours, 2),
             "threshold_hours": c.overdue_hours},
            device=d["serial"],
        )  # fmt: skip


def _trends(conn: Any, c: CentreSettings, now: datetime) -> Iterator[Finding]:
    """``recorder.clock_drift``: the clock drifted more than ``clock_drift_s_per_day`` between
    its last two dockings (any stations); ``recorder.battery``: battery at docking below
    ``battery_low_pct`` at its last ``battery_low_dockings`` dockings (any stations)."""
    for serial in [d["serial"] for d in devices.listing(conn)]:
        series = history.series(conn, serial, limit=max(2, c.battery_low_dockings))
        drift = drift_series(series[-2:])
        if drift and abs(drift[-1]["s_per_day"]) > c.clock_drift_s_per_day:
            rate = drift[-1]["s_per_day"]
            yield Finding(
                "recorder.clock_drift", CENTRE, serial, "warning",
                f"recorder {serial}'s clock drifts {rate:+.1f} s a day",
                {"s_per_day": round(rate, 3), "threshold_s_per_day": c.clock_drift_s_per_day,
                 "dockings": series[-2:]},
                device=serial,
            )  # fmt: skip
        last = series[-c.battery_low_dockings :]
        low = [
            p for p in last if p["battery_pct"] is not None and p["battery_pct"] < c.battery_low_pct
        ]
        if len(last) >= c.battery_low_dockings and len(low) == len(last):
            yield Finding(
                "recorder.battery", CENTRE, serial, "warning",
                f"recorder {serial} docked below {c.battery_low_pct:g}% battery "
                f"{len(last)} times in a row",
                {"dockings": [{k: p[k] for k in ("at", "station", "battery_pct")} for p in last],
                 "threshold_pct": c.battery_low_pct},
                device=serial,
            )  # fmt: skip


def _late(conn: Any, c: CentreSettings, now: datetime) -> Iterator[Finding]:
    """``unit.late_footage``: more than ``late_max`` recordings of a unit offloaded over 24 h
    after they were made, within ``late_window_hours``."""
    since = (now - timedelta(hours=c.late_window_hours)).isoformat()
    for unit, late in history.late_by_unit(conn, since).items():
        if late["late"] > c.late_max:
            yield Finding(
                "unit.late_footage", CENTRE, unit or "(no unit)", "warning",
                f"unit {unit or '(no unit)'}: {late['late']} recordings offloaded late",
                {**late, "since": since, "threshold": c.late_max},
            )  # fmt: skip


def _register(conn: Any, c: CentreSettings, now: datetime) -> Iterator[Finding]:
    """``recorder.docked_while_lost`` / ``recorder.docked_in_maintenance``: a recorder the
    register says is lost or in maintenance docked after the register said so."""
    entries = register.by_serial(conn)
    for d in devices.listing(conn):
        entry = entries.get(d["serial"])
        if entry is None or entry["lifecycle"] not in ("lost", "in_maintenance"):
            continue
        if d["at"] < entry["updated_at"]:
            continue
        lost = entry["lifecycle"] == "lost"
        yield Finding(
            "recorder.docked_while_lost" if lost else "recorder.docked_in_maintenance",
            d["station"], d["serial"], "critical" if lost else "error",
            f"recorder {d['serial']} ({entry['lifecycle']}) docked at {d['station']}"
            f" bay {d['bay']}",
            {"lifecycle": entry["lifecycle"], "docked_at": d["at"], "bay": d["bay"],
             "register_updated_at": entry["updated_at"],
             "register_updated_by": entry["updated_by"]},
            device=d["serial"],
        )  # fmt: skip


RULES: dict[str, Rule] = {
    "station": _stations,
    "overdue": _overdue,
    "trends": _trends,
    "late": _late,
    "register": _register,
}
RULE_NAMES = (
    "station.offline",
    "station.silent",
    "recorder.overdue",
    "recorder.clock_drift",
    "recorder.battery",
    "unit.late_footage",
    "recorder.docked_while_lost",
    "recorder.docked_in_maintenance",
)


def evaluate(
    catalog: CentralCatalog, settings: CentreSettings, now: datetime | None = None
) -> dict[str, list[str]]:
    """Run every rule at ``now``; returns the refs of the faults ``opened`` and ``resolved``."""
    now = now or datetime.now(UTC)
    at = now.isoformat()
    out: dict[str, list[str]] = {"opened": [], "resolved": []}
    with catalog.tx() as conn:
        found = [f.fault() for rule in RULES.values() for f in rule(conn, settings, now)]
        holding = {(f["station"], f["id"]) for f in found}
        for fault in found:
            if faults.open_centre_fault(conn, fault, at):
                out["opened"].append(f"{fault['station']}/{fault['id']}")
                logger.warning("centre fault %s: %s", fault["id"], fault["detail"])
        for name in RULE_NAMES:
            for station, fid in faults.open_centre_ids(conn, name):
                if (station, fid) not in holding:
                    faults.resolve_by(conn, station, fid, CENTRE, "the condition is gone", at)
                    out["resolved"].append(f"{station}/{fid}")
    return out
