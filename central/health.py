"""One health word for every station and every recorder, by conditions kept as data.

The words: ``healthy``, ``degraded``, ``unhealthy``, ``unknown`` (no report for longer than
configured). :data:`STATION_CONDITIONS` and :data:`RECORDER_CONDITIONS` list, in order, what
makes each word; the first condition that holds decides, and every condition that holds is
given as a reason. docs/faults.md shows the same table (tests/test_central_health.py keeps
them together). The thresholds are :class:`central.settings.CentreSettings`. No SQL here: the
callers (central/views.py) hand in what the catalog holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.settings import CentreSettings

WORDS = ("healthy", "degraded", "unhealthy", "unknown")
SEVERE = ("critical", "error")


@dataclass(frozen=True)
class Condition:
    word: str
    name: str
    text: str
    holds: Callable[[dict[str, Any], CentreSettings, datetime], bool]


def hours_since(at: str | None, now: datetime) -> float | None:
    if not at:
        return None
    then = datetime.fromisoformat(at)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return (now - then).total_seconds() / 3600


def _silent(hours: float | None, limit: float) -> bool:
    return hours is None or hours > limit


def _faults(s: dict[str, Any], severities: tuple[str, ...] | None = None) -> bool:
    return any(severities is None or f["severity"] in severities for f in s["open_faults"])


def _said(s: dict[str, Any], fact: str) -> bool:
    """A fact of the station's latest health report (central/health_report.py); else False."""
    report = s.get("report")
    return bool(report and report.get(fact))


STATION_CONDITIONS = (
    Condition("unhealthy", "offline", "its status is `offline` (the broker published its "
              "Last Will) or `stopped`", lambda s, c, n: s["status"] in ("offline", "stopped")),
    Condition("unhealthy", "chain_broken", "its audit chain is broken",
              lambda s, c, n: s["chain_state"] == "broken"),
    Condition("unhealthy", "severe_fault", "an open fault of severity critical or error, or "
              "one past the 24-hour limit", lambda s, c, n: _faults(s, SEVERE)
              or any(f["overdue"] for f in s["open_faults"])),
    Condition("unknown", "silent", "no message from it for `station_silent_hours` (or never)",
              lambda s, c, n: _silent(hours_since(s["last_seen"], n), c.station_silent_hours)),
    Condition("degraded", "fault", "any other open fault", lambda s, c, n: _faults(s)),
    Condition("degraded", "chain_gap", "events missing from its audit chain (a gap)",
              lambda s, c, n: s["chain_state"] == "gap"),
    Condition("degraded", "store_low", "its health report shows less free store space than "
              "`store_low_percent` of the store's size", lambda s, c, n: _said(s, "store_low")),
    Condition("degraded", "backlog_old", "its health report shows an event waiting for the "
              "broker longer than `event_backlog_minutes`, or (uploads on) a recording waiting "
              "for its upload longer than `upload_backlog_hours`",
              lambda s, c, n: _said(s, "backlog_old")),
    Condition("degraded", "clock_unsynchronised", "its health report says its clock is not "
              "NTP-synchronised", lambda s, c, n: _said(s, "clock_unsynchronised")),
)  # fmt: skip

RECORDER_CONDITIONS = (
    Condition("unhealthy", "not_ready", "its last pre-shift check said not ready",
              lambda r, c, n: r["ready"] is False),
    Condition("unhealthy", "severe_fault", "an open fault naming it of severity critical or "
              "error, or past the 24-hour limit", lambda r, c, n: _faults(r, SEVERE)
              or any(f["overdue"] for f in r["open_faults"])),
    Condition("unknown", "silent", "no report from any station for `recorder_unknown_hours` "
              "(or never)", lambda r, c, n: _silent(hours_since(r["at"], n),
                                                    c.recorder_unknown_hours)),
    Condition("degraded", "fault", "any other open fault naming it", lambda r, c, n: _faults(r)),
    Condition("degraded", "reasons", "ready, but a check gave a reason",
              lambda r, c, n: bool(r["reasons"])),
)  # fmt: skip


def word(
    subject: dict[str, Any],
    conditions: tuple[Condition, ...],
    settings: CentreSettings,
    now: datetime,
) -> tuple[str, list[str]]:
    """The subject's word and the names of every condition that holds (``healthy``, [] when
    none does). ``subject`` has the fields its conditions read (central/views.py)."""
    held = [c for c in conditions if c.holds(subject, settings, now)]
    return (held[0].word if held else "healthy"), [c.name for c in held]


def station_word(s: dict[str, Any], settings: CentreSettings, now: datetime):
    return word(s, STATION_CONDITIONS, settings, now)


def recorder_word(r: dict[str, Any], settings: CentreSettings, now: datetime):
    return word(r, RECORDER_CONDITIONS, settings, now)
