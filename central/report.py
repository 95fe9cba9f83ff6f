"""The centre's compliance report (rule clause 15; docs/report.md): the period a request asks
for, the figures (:mod:`central.catalog.report`) with it, and the same figures as CSV rows.
Shared by the dashboard's ``/report`` (and ``/report.csv``) and the JSON API's
``/api/report``.

A period is whole days, ``from`` to ``to`` inclusive, in the centre's local time (the
server's time zone, as the station's ``recdock report`` uses the station's); without dates it
is the last calendar year, the one the annual report (due by 30 January) covers.
"""

from __future__ import annotations

import csv
import io
import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any

from central.catalog import report
from central.catalog.db import Connection


class PeriodError(ValueError):
    """A period the report cannot cover; the message says which date and why."""


def period(day_from: str | None, day_to: str | None, today: date | None = None) -> tuple:
    """The first and last day (``date``) of the period asked for."""
    year = (today or datetime.now().astimezone().date()).year - 1
    first = _day(day_from, "from") or date(year, 1, 1)
    last = _day(day_to, "to") or (
        date(year, 12, 31) if not day_from else first.replace(month=12, day=31)
    )
    for day in (first, last):
        if not 1970 <= day.year <= 9998:
            raise PeriodError(f"{day}: the report covers the years 1970 to 9998")
    if last < first:
        raise PeriodError(f"the period ends ({last}) before it starts ({first})")
    return first, last


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{name} {text[:40]!r} is not a date: write YYYY-MM-DD") from None


def _utc_start(day: date) -> str:
    """The UTC moment (SQLite's ``YYYY-MM-DD HH:MM:SS``) the centre's local ``day`` starts."""
    midnight = datetime(day.year, day.month, day.day).astimezone()  # naive: local time
    return midnight.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def build(
    conn: Connection,
    first: date,
    last: date,
    *,
    station: str | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """The figures of the period, with the period, the centre that made them and when."""
    since, until = _utc_start(first), _utc_start(last + timedelta(days=1))
    found = report.figures(conn, since, until, station=station or None, unit=unit or None)
    found["period"] = {"from": first.isoformat(), "to": last.isoformat()}
    found["centre"] = socket.gethostname()
    found["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return found


def csv_text(found: dict[str, Any]) -> str:
    """Every figure as one row: section, group, figure, value (``None`` an empty cell: not
    known at the centre)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "group", "figure", "value"])
    period = found["period"]
    writer.writerow(["period", "all", "from", period["from"]])
    writer.writerow(["period", "all", "to", period["to"]])
    writer.writerows(csv_rows(found))
    return out.getvalue()


def csv_rows(found: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for section in ("by_unit", "by_officer", "by_recorder"):
        for g in found[section]:
            rows.extend(_flat(section, g["key"], g))
    rows.extend(_flat("totals", "all", found["totals"]))
    for part in ("by_kind", "by_recorder"):
        for f in found["faults"][part]:
            rows.extend(_flat(f"faults.{part}", f["key"], f))
    rows.extend(_flat("faults", "all", found["faults"]["totals"]))
    rows.extend(["holds", "by_reason", k, v] for k, v in found["holds"]["by_reason"].items())
    rows.append(["holds", "all", "placed", found["holds"]["placed"]])
    rows.append(["holds", "all", "released", found["holds"]["released"]])
    rows.extend(["exports", "all", k, v] for k, v in found["exports"].items())
    rows.extend(["access_requests", "all", k, v] for k, v in found["access_requests"].items())
    for part in ("requests", "log"):
        rows.extend(
            [f"centre_access.{part}", "all", k, v] for k, v in found["centre_access"][part].items()
        )
    rows.extend(["incomplete", s["station"], "chain_max_seq", s["chain_max_seq"]]
                for s in found["incomplete"])  # fmt: skip
    rows.extend(["not_known", k, "note", v] for k, v in found["not_known"].items())
    return rows


def _flat(section: str, key: Any, g: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for k, v in g.items():
        if k == "key":
            continue
        if isinstance(v, dict):
            rows.extend([section, key, f"{k}.{kk}", vv] for kk, vv in v.items())
        else:
            rows.append([section, key, k, v])
    return rows
