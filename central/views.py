"""What the dashboard and the JSON API read: the overview, the stations, the recorders, one
recorder's history. No web code and no SQL: the catalog's owner modules answer, and
central/health.py gives every station and recorder its word.

Each function takes the :class:`~central.catalog.CentralCatalog`, the
:class:`~central.settings.CentreSettings` and ``now`` (tests choose it). A recorder's officer
and unit are the register's when it is registered (central/catalog/register.py), else what the
station read; when the station read another officer or unit than the register holds, the
recorder carries a ``register_conflict`` (shown, never resolved here). The recorder list is
three indexed queries whatever the fleet's size (docs/performance.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from central import health, health_report
from central.catalog import CentralCatalog, bays, devices, faults, history, register, stations
from central.settings import CentreSettings

_DEFAULT = CentreSettings()


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def open_faults(catalog: CentralCatalog, settings: CentreSettings, now: datetime):
    return faults.listing(catalog.conn, now=now, amber_hours=settings.amber_hours)


def station_list(
    catalog: CentralCatalog,
    settings: CentreSettings = _DEFAULT,
    now: datetime | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every station (by id, ``limit`` from ``offset``): status, online, last seen, bays,
    chain state, open faults, what its latest health report says now (``report``:
    central/health_report.py), its word."""
    now = _now(now)
    conn = catalog.conn
    by_station: dict[str, list[dict[str, Any]]] = {}
    for f in open_faults(catalog, settings, now):
        by_station.setdefault(f["station"], []).append(f)
    bay_summary = bays.summary(conn)
    out = []
    for row in stations.rows(conn, limit=limit, offset=offset):
        view = catalog.station_view(row)
        s = {
            "station": row["station"],
            "status": row["status"],
            "status_at": row["status_at"],
            "online": row["status"] == "online",
            "last_seen": row["last_seen"],
            "silent_hours": _round(health.hours_since(row["last_seen"], now)),
            "chain_state": view["chain"]["state"],
            "bays": bay_summary.get(row["station"], {"bays": 0, "states": {}}),
            "open_faults": by_station.get(row["station"], []),
            "report": health_report.facts(view["health_report"], settings, now),
        }
        s["health"], s["health_reasons"] = health.station_word(s, settings, now)
        s["open_faults"] = len(s["open_faults"])
        out.append(s)
    return out


def recorder_list(
    catalog: CentralCatalog,
    settings: CentreSettings = _DEFAULT,
    now: datetime | None = None,
    *,
    unit: str | None = None,
    station: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Every recorder reported or registered (of one unit, or last docked at one station), by
    serial, ``limit`` from ``offset`` (filtered and paged in SQL): where and when it last
    docked, battery, free space, clock offset, last check, lifecycle, officer and unit, open
    faults and its word."""
    now = _now(now)
    conn = catalog.conn
    serials = devices.fleet_serials(conn, unit=unit, station=station, limit=limit, offset=offset)
    entries, reports = register.of(conn, serials), devices.of(conn, serials)
    by_device: dict[str, list[dict[str, Any]]] = {}
    for f in open_faults(catalog, settings, now):
        if f["device"]:
            by_device.setdefault(f["device"], []).append(f)
    return [
        _recorder(serial, reports.get(serial), entries.get(serial), by_device, settings, now)
        for serial in serials
    ]


def recorder_total(
    catalog: CentralCatalog, *, unit: str | None = None, station: str | None = None
) -> int:
    """How many recorders :func:`recorder_list` lists with the same filters."""
    return devices.fleet_count(catalog.conn, unit=unit, station=station)


def station_total(catalog: CentralCatalog) -> int:
    return stations.count(catalog.conn)


def _recorder(
    serial: str,
    report: dict[str, Any] | None,
    entry: dict[str, Any] | None,
    by_device: dict[str, list[dict[str, Any]]],
    settings: CentreSettings,
    now: datetime,
) -> dict[str, Any]:
    report = report or {}
    entry = entry or {}
    conflict = {
        k: {"register": entry[k], "station": report[k]}
        for k in ("officer", "unit")
        if entry and report.get(k) and entry.get(k) and entry[k] != report[k]
    }
    r = {
        "serial": serial,
        "station": report.get("station"),
        "bay": report.get("bay"),
        "last_docked": report.get("at"),
        "at": report.get("at"),
        "ready": report.get("ready"),
        "reasons": report.get("reasons", []),
        "battery_pct": report.get("battery_pct"),
        "free_bytes": report.get("free_bytes"),
        "total_bytes": report.get("total_bytes"),
        "clock_offset_s": report.get("clock_offset_s"),
        "model": report.get("model"),
        "firmware": report.get("firmware"),
        "officer": entry.get("officer") or report.get("officer"),
        "unit": entry.get("unit") or report.get("unit"),
        "lifecycle": entry.get("lifecycle"),
        "registered": bool(entry),
        "register_conflict": conflict or None,
        "open_faults": by_device.get(serial, []),
    }
    r["health"], r["health_reasons"] = health.recorder_word(r, settings, now)
    r["open_faults"] = len(r["open_faults"])
    del r["at"]
    return r


def recorder_history(
    catalog: CentralCatalog,
    serial: str,
    settings: CentreSettings = _DEFAULT,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """One recorder: its row of the list, its reports over time (battery and clock offset
    series, with the drift a day between dockings) and its faults; None when unknown."""
    now = _now(now)
    conn = catalog.conn
    report, entry = devices.one(conn, serial), register.one(conn, serial)
    if report is None and entry is None:
        return None
    its_faults = faults.listing(
        conn, include_resolved=True, now=now, device=serial, amber_hours=settings.amber_hours
    )
    by_device = {serial: [f for f in its_faults if f["state"] == "open"]}
    series = history.series(conn, serial)
    return {
        "recorder": _recorder(serial, report, entry, by_device, settings, now),
        "register": entry,
        "series": series,
        "drift": drift_series(series),
        "faults": faults.worst_first(its_faults),
    }


def drift_series(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clock drift in seconds a day between consecutive dockings: the offset found at a
    docking minus the offset left at the one before, over the days between them."""
    out = []
    for before, after in zip(series, series[1:], strict=False):
        left = before["clock_offset_after_s"]
        if left is None:
            left = before["clock_offset_s"]
        found = after["clock_offset_s"]
        days = (_time(after["at"]) - _time(before["at"])).total_seconds() / 86400
        if left is None or found is None or days < 1 / 24:
            continue
        out.append(
            {"at": after["at"], "station": after["station"], "s_per_day": (found - left) / days}
        )
    return out


def overview(
    catalog: CentralCatalog, settings: CentreSettings = _DEFAULT, now: datetime | None = None
) -> dict[str, Any]:
    """Worst first: open faults against the 24-hour limit, stations offline or silent,
    recorders overdue (in service and docked nowhere for ``overdue_hours``), late footage per
    unit; with counts of every health word."""
    now = _now(now)
    station_rows = station_list(catalog, settings, now)
    recorder_rows = recorder_list(catalog, settings, now)
    overdue = [
        r
        for r in recorder_rows
        if r["lifecycle"] in (None, "in_service")
        and _older(r["last_docked"], now, settings.overdue_hours)
        and r["last_docked"] is not None
    ]
    since = (now - timedelta(hours=settings.late_window_hours)).isoformat()
    return {
        "at": now.isoformat(),
        "faults": faults.worst_first(open_faults(catalog, settings, now)),
        "stations_offline": [
            s
            for s in station_rows
            if s["health"] in ("unhealthy", "unknown")
            and ("offline" in s["health_reasons"] or "silent" in s["health_reasons"])
        ],  # fmt: skip
        "recorders_overdue": sorted(overdue, key=lambda r: r["last_docked"]),
        "late_footage": history.late_by_unit(catalog.conn, since),
        "counts": {
            "stations": _count_words(station_rows),
            "recorders": _count_words(recorder_rows),
        },
    }


def _count_words(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(health.WORDS, 0)
    for r in rows:
        counts[r["health"]] += 1
    return counts


def _time(at: str) -> datetime:
    t = datetime.fromisoformat(at)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _older(at: str | None, now: datetime, hours: float) -> bool:
    return at is not None and (now - _time(at)).total_seconds() / 3600 > hours


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def register_entries(
    catalog: CentralCatalog, unit: str | None = None, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """The register's entries by serial (of one unit), ``limit`` from ``offset``."""
    return register.listing(catalog.conn, unit, limit=limit, offset=offset)


def register_total(catalog: CentralCatalog, unit: str | None = None) -> int:
    return register.count(catalog.conn, unit)
