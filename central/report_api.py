"""The JSON API's compliance report (``GET /api/report``; rule clause 15, docs/report.md): the
figures the dashboard's ``/report`` shows, for reader tokens (:mod:`central.api`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from central import openapi as doc
from central import report
from central.api import READER, Catalog

router = APIRouter(prefix="/api", tags=["catalog"])

DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # YYYY-MM-DD; a date that does not exist is a 400


@router.get("/report", dependencies=READER, responses={**doc.API_ERRORS, **doc.API_BAD_PERIOD})
def compliance_report(
    catalog: Catalog,
    day_from: Annotated[
        str | None, Query(alias="from", pattern=DAY, description="First day")
    ] = None,
    day_to: Annotated[str | None, Query(alias="to", pattern=DAY, description="Last day")] = None,
    station: str | None = Query(None, max_length=64, description="Only this station"),
    unit: str | None = Query(None, max_length=500, description="Only this unit's groups"),
) -> dict[str, Any]:
    """The compliance figures of the period (default: the last calendar year): per unit,
    officer and recorder, faults against the 24-hour limit, holds, exports, access requests;
    ``null`` where the centre cannot know a figure (docs/report.md)."""
    try:
        first, last = report.period(day_from, day_to)
    except report.PeriodError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    return report.build(catalog.conn, first, last, station=station, unit=unit)
