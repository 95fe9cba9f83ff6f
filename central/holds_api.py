"""The JSON API's holds (``GET /api/holds``): every station's holds and those placed at the
centre (:mod:`central.catalog.holds`), newest first, filtered and paged in SQL, for reader
tokens (:mod:`central.api`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from central import openapi as doc
from central.api import READER, Catalog
from central.catalog import holds

router = APIRouter(prefix="/api", tags=["catalog"])

MAX_PAGE = 1000


@router.get("/holds", dependencies=READER, responses=doc.API_ERRORS)
def hold_list(
    catalog: Catalog,
    station: str | None = Query(None, description="Only this station's holds"),
    case_number: str | None = Query(None, description="Only holds for this case number"),
    device: str | None = Query(None, description="Only holds on this recorder (by serial)"),
    active: bool | None = Query(None, description="Only active (true) or released (false)"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="At most this many"),
    offset: int = Query(0, ge=0, le=10**9, description="Skip this many (the order is stable)"),
) -> list[dict[str, Any]]:
    """Holds newest first (then by station and id), each with its ``state``: ``sent``,
    ``held``, ``release_sent`` or ``released`` (docs/central.md)."""
    filters = {"station": station, "case_number": case_number, "device": device}
    return holds.listing(catalog.conn, active=active, limit=limit, offset=offset, **filters)
