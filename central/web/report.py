"""The dashboard's compliance report (rule clause 15; docs/report.md): ``/report`` shows the
figures of a period (``from``, ``to``; a station and a unit filter) to any logged-in user,
printable for the annual inspection (the stylesheet's print rules); ``/report.csv`` the same
figures as CSV (:mod:`central.report`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from central import report
from central.catalog import report as figures
from central.web.pages import _dash, _page

router = APIRouter(include_in_schema=False)


def _report(catalog, settings, now, asked: dict[str, str]) -> dict[str, Any]:  # noqa: ANN001
    offered = figures.stations_and_units(catalog.conn)
    try:
        first, last = report.period(asked["from"] or None, asked["to"] or None)
    except report.PeriodError as exc:
        return {"error": str(exc), "asked": asked, **offered}
    found = report.build(catalog.conn, first, last, station=asked["station"], unit=asked["unit"])
    old = found["totals"]["hours_not_known"]
    return {"report": found, "asked": asked, "old_format": old, **offered}


def _asked(day_from: str, day_to: str, station: str, unit: str) -> dict[str, str]:
    return {"from": day_from[:10], "to": day_to[:10], "station": station[:64], "unit": unit[:500]}


@router.get("/report", response_class=HTMLResponse)
async def report_page(request: Request, station: str = "", unit: str = "") -> Response:
    q = request.query_params
    asked = _asked(q.get("from", ""), q.get("to", ""), station, unit)
    return await _page(request, "report.html", _report, asked)


@router.get("/report.csv")
async def report_csv(request: Request, station: str = "", unit: str = "") -> Response:
    """The figures as CSV rows (section, group, figure, value) for a logged-in user."""
    dash = _dash(request)
    if dash.viewer(request).user is None:
        return dash.to_login(request)
    q = request.query_params
    asked = _asked(q.get("from", ""), q.get("to", ""), station, unit)
    try:
        first, last = report.period(asked["from"] or None, asked["to"] or None)
    except report.PeriodError as exc:
        return Response(str(exc) + "\n", status_code=400, media_type="text/plain")
    found = await run_in_threadpool(
        lambda: report.build(dash.catalog.conn, first, last, station=station, unit=unit)
    )
    name = f"recdock-report-{first}-{last}.csv"
    return Response(
        report.csv_text(found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
