"""What the dashboard's pages show, read from the central catalog: thin, plain data.

Each function takes the :class:`~central.catalog.CentralCatalog`, the dashboard's
:class:`Settings` and the moment ``now``, and returns dictionaries the templates render (the
same dictionaries ``?format=json`` answers, which the benchmark compares against).

Health words: the centre's (:mod:`central.health`, its conditions listed in docs/faults.md),
computed from what this module reads; the thresholds are the centre's settings
(:class:`~central.settings.CentreSettings`, ``recdock-central --amber-hours`` and the rest).
A fault's level against the 24-hour limit: ``red`` past it, ``amber`` from ``amber_hours``,
``open`` before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central import health, health_report
from central.catalog import CentralCatalog
from central.catalog.faults import REPAIR_LIMIT_HOURS
from central.settings import DEFAULT_POLL_SECONDS, CentreSettings

WORDS = ("unhealthy", "degraded", "unknown", "healthy")  # worst first
LEVELS = ("red", "amber", "open")
PAGE_SIZE = 100  # rows on a page of the stations, recorders and register lists


@dataclass(frozen=True)
class Settings:
    """The dashboard's own setting (``--poll-seconds``) and the centre's thresholds."""

    poll_seconds: float = DEFAULT_POLL_SECONDS
    centre: CentreSettings = CentreSettings()

    @property
    def amber_hours(self) -> float:
        return self.centre.amber_hours

    @property
    def overdue_hours(self) -> float:
        return self.centre.overdue_hours


def hours_since(at: str | None, now: datetime) -> float | None:
    if not at:
        return None
    try:
        then = datetime.fromisoformat(at)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return (now - then).total_seconds() / 3600


def fault_level(age_hours: float, settings: Settings) -> str:
    if age_hours >= REPAIR_LIMIT_HOURS:
        return "red"
    return "amber" if age_hours >= settings.amber_hours else "open"


def faults(
    catalog: CentralCatalog, settings: Settings, now: datetime, *, subject: str | None = None
) -> list[dict[str, Any]]:
    """Open faults (about ``subject`` only, when given), oldest (worst) first, each with its
    level against the 24-hour limit."""
    out = []
    for f in catalog.faults(now=now, subject=subject):
        out.append({**f, "level": fault_level(f["age_hours"], settings)})
    out.sort(key=lambda f: -f["age_hours"])
    return out


def pager(page: int, total: int, size: int = PAGE_SIZE, **query: str | None) -> dict[str, Any]:
    """Where a page of ``size`` rows stands among ``total``: its number, how many pages, the
    previous and next page (None at either end) and the filters their links keep."""
    pages = max(1, -(-total // size))
    return {
        "page": page,
        "pages": pages,
        "total": total,
        "prev": page - 1 if page > 1 else None,
        "next": page + 1 if page < pages else None,
        "query": {k: v for k, v in query.items() if v},
    }


def stations(
    catalog: CentralCatalog,
    settings: Settings,
    now: datetime,
    open_faults: list[dict[str, Any]],
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every station with its health word, worst first; or a page of ``limit`` stations
    from ``offset``, by id (paged in SQL)."""
    out = []
    for s in catalog.stations(limit=limit, offset=offset):
        own = [f for f in open_faults if f["station"] == s["station"]]
        silent_for = hours_since(s["last_seen"], now)
        silent = silent_for is None or silent_for > settings.centre.station_silent_hours
        facts = health_report.facts(s.get("health_report"), settings.centre, now)
        subject = {**s, "chain_state": s["chain"]["state"], "open_faults": own, "report": facts}
        word, reasons = health.station_word(subject, settings.centre, now)
        detail = s.get("status_detail") or {}
        out.append(
            {
                "station": s["station"],
                "status": s["status"] or "unknown",
                "online": s["status"] == "online" and not silent,
                "last_seen": s["last_seen"],
                "silent_hours": None if silent_for is None else round(silent_for, 2),
                "chain": s["chain"]["state"],
                "faults": len(own),
                "simulate": bool(detail.get("simulate")),
                "bays": len(catalog.bays(s["station"])),
                "report": facts,
                "word": word,
                "reasons": reasons,
            }
        )
    if limit is None:
        out.sort(key=lambda s: (WORDS.index(s["word"]), s["station"]))
    return out


_NUMBER = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)")


def number(value: Any) -> float | None:
    """A number, or the one a check's value starts with (``"35 %"`` -> 35.0); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    found = _NUMBER.match(value) if isinstance(value, str) else None
    return float(found.group(1)) if found else None


def _check(health: dict[str, Any], name: str) -> Any:
    """The value of the named pre-shift check in a recorder-health message."""
    return ((health.get("checks") or {}).get(name) or {}).get("value")


def _free(health: dict[str, Any]) -> str | None:
    if isinstance(health.get("free_bytes"), int):
        return f"{health['free_bytes'] / 1024**3:.1f} GiB"
    value = _check(health, "storage")
    return str(value) if value is not None else None


def _recorder(
    r: dict[str, Any], settings: Settings, now: datetime, by_subject: dict[str, list[dict]]
) -> dict[str, Any]:
    h = r["health"]
    own = by_subject.get(r["serial"], [])
    since = hours_since(h.get("at") or r["updated_at"], now)
    out = {
        "serial": r["serial"],
        "station": r["station"],
        "bay": h.get("bay"),
        "officer": h.get("officer"),
        "unit": h.get("unit"),
        "model": h.get("model"),
        "last_docked": h.get("at") or r["updated_at"],
        "hours_since": None if since is None else round(since, 1),
        "overdue": since is not None and since > settings.overdue_hours,
        "late": bool(h.get("late")),
        "ready": r["ready"],
        "reasons": list(h.get("reasons") or []),
        "battery_pct": number(h.get("battery_pct", _check(h, "battery"))),
        "free": _free(h),
        "clock_offset_s": number(h.get("clock_offset_s")),
        "faults": len(own),
    }
    subject = {**out, "at": h.get("at") or r["updated_at"], "open_faults": own}
    out["word"], out["word_reasons"] = health.recorder_word(subject, settings.centre, now)
    return out


def recorders(
    catalog: CentralCatalog,
    settings: Settings,
    now: datetime,
    open_faults: list[dict[str, Any]],
    *,
    station: str | None = None,
    unit: str | None = None,
    serial: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Each recorder as its newest report shows it (an officer may dock at any station),
    filtered by station, unit or serial in SQL: all of them worst first, or a page of
    ``limit`` from ``offset`` by serial."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for f in open_faults:
        if f.get("subject"):
            by_subject.setdefault(f["subject"], []).append(f)
    found = catalog.newest_recorders(
        station=station or None, unit=unit or None, serial=serial, limit=limit, offset=offset
    )
    out = [_recorder(r, settings, now, by_subject) for r in found]
    if limit is None:
        out.sort(key=lambda r: (WORDS.index(r["word"]), r["serial"]))
    return out


def _attention(facts: dict[str, Any] | None) -> list[str]:
    """What a station's health report asks a person to look at (central/health_report.py)."""
    names = ("store_low", "backlog_old", "clock_unsynchronised")
    return [name for name in names if facts and facts.get(name)]


def overview(catalog: CentralCatalog, settings: Settings, now: datetime) -> dict[str, Any]:
    """Worst first: faults against the 24-hour limit, stations offline, recorders overdue,
    late footage; and the counts of each health word."""
    open_faults = faults(catalog, settings, now)
    all_stations = stations(catalog, settings, now, open_faults)
    all_recorders = recorders(catalog, settings, now, open_faults)
    return {
        "faults": open_faults,
        "offline": [s for s in all_stations if not s["online"]],
        "attention": [s for s in all_stations if _attention(s["report"])],
        "overdue": [r for r in all_recorders if r["overdue"]],
        "late": [r for r in all_recorders if r["late"]],
        "words": {
            "stations": {w: sum(s["word"] == w for s in all_stations) for w in WORDS},
            "recorders": {w: sum(r["word"] == w for r in all_recorders) for w in WORDS},
        },
    }


def fault(
    catalog: CentralCatalog, settings: Settings, now: datetime, station: str, fault_id: str
) -> dict[str, Any] | None:
    f = catalog.fault(station, fault_id, now=now)
    return {**f, "level": fault_level(f["age_hours"], settings)} if f else None


def _battery(data: dict[str, Any]) -> float | None:
    for result in data.get("results") or []:
        if result.get("name") == "battery":
            return number(result.get("value"))
    return None


def history(catalog: CentralCatalog, serial: str, limit: int = 60) -> list[dict[str, Any]]:
    """The recorder's pre-shift checks at every station (its ``checks`` events), oldest
    first: when, where, ready or not and why, battery and clock offset."""
    out = []
    for e in catalog.subject_events(serial, "checks", limit):
        data = e["data"]
        out.append(
            {
                "at": e["at"],
                "station": e["station"],
                "ready": data.get("ready"),
                "reasons": list(data.get("reasons") or []),
                "battery_pct": _battery(data),
                "clock_offset_s": number(data.get("clock_offset_s")),
            }
        )
    return out
