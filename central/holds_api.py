"""The JSON API's holds (``GET /api/holds``): every station's holds and those placed at the
centre (:mod:`central.catalog.holds`), newest first, filtered and paged in SQL as every list
is (docs/central.md, "Paging"), for reader tokens (:mod:`central.api`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from central import openapi as doc
from central.api import READER, Catalog, Paged
from central.catalog import holds

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/holds", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def hold_list(
    catalog: Catalog,
    station: str | None = Query(None, description="Only this station's holds"),
    case_number: str | None = Query(None, description="Only holds for this case number"),
    device: str | None = Query(None, description="Only holds on this recorder (by serial)"),
    active: bool | None = Query(None, description="Only active (true) or released (false)"),
    *,
    page: Paged,
    request: Request,
    response: Response,
) -> list[dict[str, Any]]:
    """Holds newest first (then by station and id), each with its ``state``: ``sent``,
    ``held``, ``release_sent`` or ``released`` (docs/central.md)."""
    filters = {"station": station, "case_number": case_number, "device": device, "active": active}
    items = holds.listing(catalog.conn, limit=page.limit, offset=page.offset, **filters)
    return page.answer(request, response, items, holds.count(catalog.conn, **filters))
