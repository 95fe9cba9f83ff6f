"""The compliance figures of `recdock report` (rule clause 15; docs/report.md): read-only, across
``recordings``, ``sessions``, ``checks``, ``faults``, ``holds``, ``access_requests`` and
``access_log`` (it writes none of them; their owners stay the only writers, as for
``crosscheck.py``).

A period is ``[since, until)`` in UTC (``YYYY-MM-DD HH:MM:SS``). Recordings count by when they
were offloaded; checks, faults, holds, requests and exports by when they happened. Officer and
unit come from the session (the docking) a check or an overdue fault points at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: How each breakdown names its group, in recordings (r), sessions (s) and checks (c).
GROUPS = {
    "unit": ("r.unit", "s.unit"),
    "officer": ("r.officer_id", "s.officer_id"),
    "recorder": ("r.device_serial", "c.device_serial"),
}
REPAIR_LIMIT_HOURS = 24.0
_IN = "datetime({col}) >= :since AND datetime({col}) < :until"
_HOURS = "(julianday({b}) - julianday({a})) * 24"


def figures(catalog: Catalog, since: str, until: str) -> dict[str, Any]:
    """Every figure of the report for the period."""
    p = {"since": since, "until": until}
    out: dict[str, Any] = {"since": since, "until": until}
    for group in GROUPS:
        out[f"by_{group}"] = _by_group(catalog, group, p)
    out["totals"] = _recordings(catalog, "'all'", p).get("all", _empty("all"))
    out["faults"] = _faults(catalog, p)
    out["holds"] = _holds(catalog, p)
    out["exports"] = _counts(
        catalog,
        "SELECT action AS k, count(*) AS n FROM access_log WHERE "
        + _IN.format(col="at")
        + " GROUP BY action",
        p,
    )
    out["access_requests"] = _counts(
        catalog,
        "SELECT coalesce(decision, 'pending') AS k, count(*) AS n FROM access_requests"
        " WHERE " + _IN.format(col="requested_at") + " GROUP BY k",
        p,
    )
    return out


def _empty(key: str | None) -> dict[str, Any]:
    return {
        "key": key,
        "recordings": 0,
        "hours": 0.0,
        "with_age": 0,
        "within_24h": 0,
        "share_within_24h": None,
        "late": 0,
    }


def _recordings(catalog: Catalog, key: str, p: dict[str, str]) -> dict[Any, dict[str, Any]]:
    hours = _HOURS.format(a="r.recorded_start", b="r.recorded_end")
    rows = catalog.query(
        f"SELECT {key} AS key, count(*) AS recordings,"  # noqa: S608
        f" round(coalesce(sum(CASE WHEN r.recorded_end IS NOT NULL THEN {hours} END), 0), 3)"
        " AS hours, sum(r.age_hours IS NOT NULL) AS with_age,"
        " sum(r.age_hours IS NOT NULL AND r.late = 0) AS within_24h, sum(r.late) AS late"
        " FROM recordings r WHERE " + _IN.format(col="r.offloaded_at") + " GROUP BY key",
        p,
    )
    for r in rows:
        r["share_within_24h"] = round(r["within_24h"] / r["with_age"], 4) if r["with_age"] else None
    return {r["key"]: r for r in rows}


def _by_group(catalog: Catalog, group: str, p: dict[str, str]) -> list[dict[str, Any]]:
    rec_col, other_col = GROUPS[group]
    found = _recordings(catalog, rec_col, p)
    for key, checks, failed, reasons in _checks(catalog, other_col, p):
        row = found.setdefault(key, _empty(key))
        row.update(checks=checks, checks_failed=failed, check_failures=reasons)
    for key, n in _late_dockings(catalog, other_col.replace("c.", "f."), p):
        found.setdefault(key, _empty(key))["dockings_late"] = n
    for row in found.values():
        row.setdefault("checks", 0)
        row.setdefault("checks_failed", 0)
        row.setdefault("check_failures", {})
        row.setdefault("dockings_late", 0)
    return sorted(found.values(), key=lambda r: (r["key"] is None, r["key"] or ""))


def _checks(catalog: Catalog, col: str, p: dict[str, str]) -> list[tuple[Any, int, int, dict]]:
    where = _IN.format(col="c.at")
    totals = catalog.query(
        f"SELECT {col} AS key, count(*) AS n, sum(c.ready = 0) AS failed FROM checks c"  # noqa: S608
        f" LEFT JOIN sessions s ON s.id = c.session_id WHERE {where} GROUP BY key",
        p,
    )
    reasons = catalog.query(
        f"SELECT {col} AS key, json_extract(j.value, '$.name') AS reason, count(*) AS n"  # noqa: S608
        " FROM checks c LEFT JOIN sessions s ON s.id = c.session_id, json_each(c.results) j"
        f" WHERE {where} AND json_extract(j.value, '$.state') = 'FAIL'"
        # by position: ``key`` would name json_each's own column (the index) here
        " GROUP BY 1, 2",
        p,
    )
    out = []
    for t in totals:
        why = {r["reason"]: r["n"] for r in reasons if r["key"] == t["key"]}
        out.append((t["key"], t["n"], t["failed"], why))
    return out


def _late_dockings(catalog: Catalog, col: str, p: dict[str, str]) -> list[tuple[Any, int]]:
    """``recorder.overdue`` faults opened in the period: a recorder not docked in time."""
    col = "f.subject" if col == "f.device_serial" else col
    rows = catalog.query(
        f"SELECT {col} AS key, count(*) AS n FROM faults f"  # noqa: S608
        " LEFT JOIN sessions s ON s.id = json_extract(f.evidence, '$.last_session_id')"
        " WHERE f.kind = 'recorder.overdue' AND " + _IN.format(col="f.opened_at") + " GROUP BY key",
        p,
    )
    return [(r["key"], r["n"]) for r in rows]


def _faults(catalog: Catalog, p: dict[str, str]) -> dict[str, Any]:
    """Faults opened in the period against the 24-hour limit (rule clause 14), overall, by
    kind and by recorder (the subject of a ``recorder.*`` fault; ``station`` for the rest)."""
    to_report = _HOURS.format(a="opened_at", b="reported_at")
    to_repair = _HOURS.format(a="opened_at", b="resolved_at")
    select = (
        "SELECT {key} AS key, count(*) AS opened, count(reported_at) AS reported,"
        f" sum({to_report} <= 24) AS reported_within_24h, count(resolved_at) AS repaired,"
        f" sum({to_repair} <= 24) AS repaired_within_24h,"
        " sum(resolved_at IS NULL AND " + _HOURS.format(a="opened_at", b=":until") + " > 24)"
        " AS open_past_24h,"
        f" round(avg({to_report}), 2) AS mean_hours_to_report,"
        f" round(avg({to_repair}), 2) AS mean_hours_to_repair"
        " FROM faults WHERE " + _IN.format(col="opened_at") + " GROUP BY key ORDER BY key"
    )
    recorder = "CASE WHEN kind LIKE 'recorder.%' THEN subject ELSE 'station' END"
    total = catalog.query(select.format(key="'all'"), p)
    return {
        "limit_hours": REPAIR_LIMIT_HOURS,
        "totals": _zero_nulls(total[0]) if total else {"opened": 0},
        "by_kind": [_zero_nulls(r) for r in catalog.query(select.format(key="kind"), p)],
        "by_recorder": [_zero_nulls(r) for r in catalog.query(select.format(key=recorder), p)],
    }


def _zero_nulls(row: dict[str, Any]) -> dict[str, Any]:
    counts = ("reported_within_24h", "repaired_within_24h", "open_past_24h")
    return {k: (0 if v is None and k in counts else v) for k, v in row.items() if k != "key"} | {
        "key": row["key"]
    }


def _holds(catalog: Catalog, p: dict[str, str]) -> dict[str, Any]:
    placed = _counts(
        catalog,
        "SELECT reason AS k, count(*) AS n FROM holds WHERE "
        + _IN.format(col="placed_at")
        + " GROUP BY reason",
        p,
    )
    released = catalog.query(
        "SELECT count(*) AS n FROM holds WHERE released_at IS NOT NULL AND "
        + _IN.format(col="released_at"),
        p,
    )
    return {"placed": sum(placed.values()), "by_reason": placed, "released": released[0]["n"]}


def _counts(catalog: Catalog, sql: str, p: dict[str, str]) -> dict[str, int]:
    return {r["k"]: r["n"] for r in catalog.query(sql, p)}
