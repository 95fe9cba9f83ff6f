"""The centre's compliance figures (rule clause 15; docs/report.md): read-only, across
``events``, ``faults``, ``holds``, ``stations`` and ``register`` (it writes none of them;
their owners stay the only writers).

The figures are the station's (agent/catalog/report.py), counted from what each station
signed (rule 9, docs/architecture.md): recordings from its ``file.stored`` and
``file.recovered`` events, with the unit and officer of the ``session.start`` event they name;
checks from ``checks`` events; dockings late from ``fault.open`` events of kind
``recorder.overdue``; faults from the ``faults`` table its ``fault.open`` and
``fault.resolved`` events keep (``reported_at``: when its opening reached the centre); holds
from ``holds``; exports and access requests from the access log's and the requests'
events; the centre's own approved access from its ``access_requests`` and ``access_log``.
A figure the signed events do not carry is ``None`` ("not known at the centre"), never 0.

A period is ``[since, until)`` in UTC (``YYYY-MM-DD HH:MM:SS``). ``station`` narrows every
figure to one station; ``unit`` narrows the per-unit, officer and recorder tables (a fault, a
hold, an export has no unit in what a station signs).

The same SQL runs on both databases: on PostgreSQL the catalog holds SQLite's ``datetime`` and
``julianday`` of a text time (:data:`POSTGRESQL_FUNCTIONS`; NULL for a text that is no time,
as SQLite's), counts are sums of ``CASE``, rounding is of a ``NUMERIC``, and what a JSON field
says is read through the dialect's words (:class:`central.catalog.db.Dialect`).
"""

from __future__ import annotations

import functools
from typing import Any

from central.catalog.db import Connection, Dialect

REPAIR_LIMIT_HOURS = 24.0
_IN = "datetime({col}) >= :since AND datetime({col}) < :until"
_HOURS = "(julianday({b}) - julianday({a})) * 24"
_STATION = "(CAST(:station AS TEXT) IS NULL OR {col} = :station)"
_UNIT = "(CAST(:unit AS TEXT) IS NULL OR {col} = :unit)"

#: SQLite's ``datetime(text)`` and ``julianday(text)`` on PostgreSQL (the catalog creates them
#: there): a time without a zone is UTC (the connection's zone), and a text that is no time
#: gives NULL, never an error (a station's hold may carry any text in its times).
POSTGRESQL_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION datetime(value TEXT) RETURNS TEXT LANGUAGE plpgsql STABLE
    AS $$ BEGIN
        RETURN to_char(value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS');
    EXCEPTION WHEN others THEN RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION julianday(value TEXT) RETURNS DOUBLE PRECISION
    LANGUAGE plpgsql STABLE AS $$ BEGIN
        RETURN extract(epoch FROM value::timestamptz) / 86400.0 + 2440587.5;
    EXCEPTION WHEN others THEN RETURN NULL;
    END $$""",
]


def _count(condition: str) -> str:
    """How many rows of the group meet ``condition`` (NULL for none, as SQLite's ``sum``)."""
    return f"sum(CASE WHEN {condition} THEN 1 WHEN NOT ({condition}) THEN 0 END)"


def _round(expression: str, places: int) -> str:
    return f"round(CAST({expression} AS NUMERIC), {places})"


def _flag(dialect: Dialect, column: str, path: str) -> str:
    """A JSON true or false at ``path``: 1 or 0 (SQLite's ``json_extract`` of a boolean)."""
    if dialect.name == "sqlite":
        return f"json_extract({column}, '$.{path}')"
    return f"CASE {dialect.json_text(column, path)} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"


def _type(dialect: Dialect, column: str, path: str) -> str:
    """The JSON type at ``path``: NULL when absent, ``'null'`` for JSON null, else another."""
    if dialect.name == "sqlite":
        return f"json_type({column}, '$.{path}')"
    return f"jsonb_typeof(({column})::jsonb -> '{path}')"


#: The access log's audit kinds (agent/catalog/access_log.py), back to its actions.
EXPORT_KINDS = {
    "export.written": "export",
    "export.refused": "export.refused",
    "export.failed": "export.failed",
    "access.decision_refused": "approve.refused",
}

#: Each breakdown's group in the recordings (r), the checks (c) and late dockings (d) below.
GROUPS = {
    "unit": ("s.unit", "s.unit"),
    "officer": ("s.officer", "s.officer"),
    "recorder": ("r.serial", "c.serial"),
}


@functools.cache
def _sessions(dialect: Dialect, alias: str) -> str:
    """A session's unit and officer, as its ``session.start`` event says (``alias``: the
    rows joined to it)."""
    field = dialect.json_text
    return (
        f"LEFT JOIN (SELECT station, subject AS id, {field('data', 'unit')} AS unit,"
        f" {field('data', 'officer_id')} AS officer FROM events WHERE kind = 'session.start')"
        f" s ON s.station = {alias}.station AND s.id = {alias}.session_id"
    )


@functools.cache
def _stored(dialect: Dialect) -> str:
    field = dialect.json_text
    return (
        f"SELECT station, at, {field('data', 'session_id')} AS session_id,"
        f" {field('data', 'device_serial')} AS serial, {_flag(dialect, 'data', 'late')} AS late,"
        f" {_type(dialect, 'data', 'age_hours')} AS age_type,"
        f" {field('data', 'recorded_start')} AS rs, {field('data', 'recorded_end')} AS re"
        " FROM events WHERE kind IN ('file.stored', 'file.recovered')"
        " AND " + _IN.format(col="at") + " AND " + _STATION.format(col="station")
    )


#: What the centre cannot know (yet): shown as such, never as 0. Nothing, since its own
#: approved access is counted (:func:`_centre_access`).
NOT_KNOWN: dict[str, str] = {}


def figures(
    conn: Connection,
    since: str,
    until: str,
    *,
    station: str | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Every figure of the report for the period."""
    p = {"since": since, "until": until, "station": station, "unit": unit}
    out: dict[str, Any] = {"since": since, "until": until, "station": station, "unit": unit}
    for group in GROUPS:
        out[f"by_{group}"] = _by_group(conn, group, p)
    totals = _recordings(conn, "'all'", p)
    out["totals"] = totals.get("all", _empty("all"))
    out["faults"] = _faults(conn, p)
    out["holds"] = _holds(conn, p)
    out["exports"] = _exports(conn, p)
    out["access_requests"] = _requests(conn, p)
    out["centre_access"] = _centre_access(conn, p)
    out["incomplete"] = _incomplete(conn, p)
    out["not_known"] = dict(NOT_KNOWN)
    return out


def _empty(key: str | None) -> dict[str, Any]:
    return {
        "key": key,
        "recordings": 0,
        "hours": 0.0,
        "hours_not_known": 0,
        "with_age": 0,
        "within_24h": 0,
        "share_within_24h": None,
        "late": 0,
    }


def _recordings(conn: Connection, key: str, p: dict[str, Any]) -> dict[Any, dict]:
    """Recordings offloaded in the period by ``key``. A recording whose signed event carries
    no age (a station older than the field) has no age and no hours at the centre."""
    hours = _HOURS.format(a="r.rs", b="r.re")
    aged = "r.age_type IS NOT NULL AND r.age_type != 'null'"
    hours_sum = f"coalesce(sum(CASE WHEN r.re IS NOT NULL THEN {hours} END), 0)"
    rows = conn.execute(
        f"SELECT {key} AS key, count(*) AS recordings,"  # noqa: S608
        f" {_round(hours_sum, 3)} AS hours,"
        f" {_count('r.age_type IS NULL')} AS hours_not_known,"
        f" {_count(aged)} AS with_age, {_count(aged + ' AND r.late = 0')} AS within_24h,"
        " sum(r.late) AS late"
        f" FROM ({_stored(conn.dialect)}) r {_sessions(conn.dialect, 'r')}"
        " WHERE " + _UNIT.format(col="s.unit") + " GROUP BY key",
        p,
    ).fetchall()
    found = {}
    for row in rows:
        r = dict(row)
        r["share_within_24h"] = round(r["within_24h"] / r["with_age"], 4) if r["with_age"] else None
        if r["hours_not_known"] == r["recordings"]:
            r["hours"] = None  # no recording's times reached the centre
        found[r["key"]] = r
    return found


def _by_group(conn: Connection, group: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    rec_col, check_col = GROUPS[group]
    found = _recordings(conn, rec_col, p)
    for key, checks, failed, reasons in _checks(conn, check_col, p):
        row = found.setdefault(key, _empty(key))
        row.update(checks=checks, checks_failed=failed, check_failures=reasons)
    late_col = "d.serial" if group == "recorder" else rec_col
    for key, n in _late_dockings(conn, late_col, p):
        found.setdefault(key, _empty(key))["dockings_late"] = n
    for row in found.values():
        row.setdefault("checks", 0)
        row.setdefault("checks_failed", 0)
        row.setdefault("check_failures", {})
        row.setdefault("dockings_late", 0)
    return sorted(found.values(), key=lambda r: (r["key"] is None, r["key"] or ""))


@functools.cache
def _checks_sql(dialect: Dialect) -> tuple[str, str]:
    """The checks made in the period, and each check's result in them (``j.value``)."""
    checks = (
        f"SELECT id, station, subject AS serial, data, {_flag(dialect, 'data', 'ready')}"
        f" AS ready, {dialect.json_text('data', 'session_id')} AS session_id FROM events"
        " WHERE kind = 'checks' AND " + _IN.format(col="at")
        + " AND " + _STATION.format(col="station")
    )  # fmt: skip
    if dialect.name == "sqlite":
        return checks, "json_each(c.data, '$.results') j"
    return checks, "jsonb_array_elements((c.data)::jsonb -> 'results') AS j(value)"


def _checks(conn: Connection, col: str, p: dict[str, Any]) -> list[tuple]:
    """Pre-shift checks made in the period: how many, how many not ready, failures by check."""
    checks, results = _checks_sql(conn.dialect)
    source = f"({checks}) c {_sessions(conn.dialect, 'c')} "
    where = " WHERE " + _UNIT.format(col="s.unit")
    field = conn.dialect.json_text
    totals = conn.execute(
        f"SELECT {col} AS key, count(*) AS n, {_count('c.ready = 0')} AS failed"  # noqa: S608
        f" FROM {source}" + where + " GROUP BY key",
        p,
    ).fetchall()
    reasons = conn.execute(
        f"SELECT {col} AS key, {field('j.value', 'name')} AS reason, count(*) AS n"  # noqa: S608
        f" FROM {source}, {results}" + where + f" AND {field('j.value', 'state')} = 'FAIL'"
        # by position: ``key`` would name json_each's own column here
        " GROUP BY 1, 2",
        p,
    ).fetchall()
    out = []
    for t in totals:
        why = {r["reason"]: r["n"] for r in reasons if r["key"] == t["key"]}
        out.append((t["key"], t["n"], t["failed"], why))
    return out


def _late_dockings(conn: Connection, col: str, p: dict[str, Any]) -> list[tuple]:
    """``recorder.overdue`` faults opened in the period (each opening): a recorder not docked
    again in time; unit and officer those of its last docking."""
    field = conn.dialect.json_text
    rows = conn.execute(
        f"SELECT {col} AS key, count(*) AS n FROM (SELECT station, at,"  # noqa: S608
        f" {field('data', 'subject')} AS serial,"
        f" {field('data', 'evidence.last_session_id')} AS session_id FROM events"
        f" WHERE kind = 'fault.open' AND {field('data', 'kind')} = 'recorder.overdue'"
        " AND " + _IN.format(col="at") + " AND " + _STATION.format(col="station") + ") d "
        f"{_sessions(conn.dialect, 'd')} WHERE " + _UNIT.format(col="s.unit") + " GROUP BY key",
        p,
    ).fetchall()
    return [(r["key"], r["n"]) for r in rows]


def _faults(conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
    """The stations' faults opened in the period against the 24-hour limit (rule clause 14),
    overall, by kind and by recorder (a ``recorder.*`` fault's subject; ``station`` else)."""
    to_report = _HOURS.format(a="opened_at", b="reported_at")
    to_repair = _HOURS.format(a="opened_at", b="resolved_at")
    past = "resolved_at IS NULL AND " + _HOURS.format(a="opened_at", b=":until") + " > 24"
    select = (
        "SELECT {key} AS key, count(*) AS opened, count(reported_at) AS reported,"
        f" {_count(to_report + ' <= 24')} AS reported_within_24h,"
        f" count(resolved_at) AS repaired, {_count(to_repair + ' <= 24')} AS repaired_within_24h,"
        f" {_count(past)} AS open_past_24h,"
        f" {_round(f'avg({to_report})', 2)} AS mean_hours_to_report,"
        f" {_round(f'avg({to_repair})', 2)} AS mean_hours_to_repair"
        " FROM faults WHERE origin = 'station' AND " + _IN.format(col="opened_at")
        + " AND " + _STATION.format(col="station") + " GROUP BY key ORDER BY key"
    )  # fmt: skip
    recorder = "CASE WHEN kind LIKE 'recorder.%' THEN subject ELSE 'station' END"
    total = conn.execute(select.format(key="'all'"), p).fetchall()
    return {
        "limit_hours": REPAIR_LIMIT_HOURS,
        "totals": _zero_nulls(dict(total[0])) if total else {"key": "all", "opened": 0},
        "by_kind": [_zero_nulls(dict(r)) for r in conn.execute(select.format(key="kind"), p)],
        "by_recorder": [_zero_nulls(dict(r)) for r in conn.execute(select.format(key=recorder), p)],
    }


def _zero_nulls(row: dict[str, Any]) -> dict[str, Any]:
    counts = ("reported_within_24h", "repaired_within_24h", "open_past_24h")
    return {k: (0 if v is None and k in counts else v) for k, v in row.items()}


def _holds(conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
    """Holds placed in the period, by reason, and released (a centre hold sent to several
    stations counts once)."""
    station = " AND " + _STATION.format(col="station")
    placed = {
        r["reason"]: r["n"]
        for r in conn.execute(
            "SELECT reason, count(DISTINCT hold_id) AS n FROM holds WHERE "
            + _IN.format(col="placed_at")
            + station
            + " GROUP BY reason",
            p,
        )
    }
    released = conn.execute(
        "SELECT count(DISTINCT hold_id) FROM holds WHERE released_at IS NOT NULL AND "
        + _IN.format(col="released_at")
        + station,
        p,
    ).fetchone()[0]
    return {"placed": sum(placed.values()), "by_reason": placed, "released": released}


def _exports(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """The stations' access log in the period, by action (docs/access.md)."""
    kinds = ", ".join(f"'{k}'" for k in EXPORT_KINDS)
    rows = conn.execute(
        f"SELECT kind, count(*) AS n FROM events WHERE kind IN ({kinds})"  # noqa: S608
        " AND " + _IN.format(col="at") + " AND " + _STATION.format(col="station")
        + " GROUP BY kind",
        p,
    )  # fmt: skip
    return {EXPORT_KINDS[r["kind"]]: r["n"] for r in rows}


def _requests(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """The stations' access requests made in the period, by their decision (``pending``
    until a decision's event arrived)."""
    decision = (
        "(SELECT substr(d.kind, 8) FROM events d WHERE d.subject = e.subject"
        " AND d.kind IN ('access.approved', 'access.refused') AND d.station = e.station"
        " ORDER BY d.id LIMIT 1)"
    )
    rows = conn.execute(
        f"SELECT coalesce({decision}, 'pending') AS k, count(*) AS n FROM events e"  # noqa: S608
        " WHERE e.kind = 'access.requested' AND " + _IN.format(col="e.at")
        + " AND " + _STATION.format(col="e.station") + " GROUP BY k",
        p,
    )  # fmt: skip
    return {r["k"]: r["n"] for r in rows}


def _centre_access(conn: Connection, p: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The centre's own approved access (central/access.py) in the period: the requests made,
    by their state now, and its access log by action (decisions, downloads, exports and their
    refusals). With a station: the requests with an object of that station, and the log's rows
    that name it."""
    requests = conn.execute(
        "SELECT state AS k, count(*) AS n FROM access_requests r WHERE "
        + _IN.format(col="r.requested_at")
        + " AND (CAST(:station AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM access_objects o"
        " WHERE o.request_id = r.request_id AND o.station = :station)) GROUP BY state",
        p,
    )  # fmt: skip
    log = conn.execute(
        "SELECT action AS k, count(*) AS n FROM access_log WHERE action != 'request' AND "
        + _IN.format(col="at") + " AND " + _STATION.format(col="station") + " GROUP BY action",
        p,
    )  # fmt: skip
    return {"requests": {r["k"]: r["n"] for r in requests}, "log": {r["k"]: r["n"] for r in log}}


def _incomplete(conn: Connection, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Stations whose events have not all arrived (a gap after the complete head): their
    figures may still grow."""
    rows = conn.execute(
        "SELECT station, chain_seq, chain_max_seq FROM stations"
        " WHERE chain_max_seq > chain_seq AND " + _STATION.format(col="station")
        + " ORDER BY station",
        p,
    )  # fmt: skip
    return [dict(r) for r in rows]


def stations_and_units(conn: Connection) -> dict[str, list[str]]:
    """The stations and the register's units the filters offer."""
    stations = [r[0] for r in conn.execute("SELECT station FROM stations ORDER BY station")]
    units = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT unit FROM register WHERE unit IS NOT NULL ORDER BY unit"
        )
    ]
    return {"stations": stations, "units": units}
