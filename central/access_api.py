"""The JSON API's approved access (rule clauses 13, 35; docs/access.md), read-only for reader
tokens (:mod:`central.api`): the access requests newest first, one request with its objects,
and the access log newest first; filtered and paged in SQL like every list (docs/central.md).
Requests, decisions and downloads are made on the dashboard, by a logged-in person."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from central import openapi as doc
from central.api import READER, Catalog, Paged
from central.catalog import access, access_log

router = APIRouter(prefix="/api/access", tags=["catalog"])

PAGED = {**doc.PAGED, **doc.API_ERRORS}


@router.get("/requests", dependencies=READER, responses=PAGED)
def request_list(
    catalog: Catalog,
    state: str | None = Query(
        None, pattern="^(requested|approved|refused)$", description="Only requests in this state"
    ),
    requested_by: str | None = Query(None, max_length=128, description="Only this person's"),
    *,
    page: Paged,
    request: Request,
    response: Response,
) -> list[dict[str, Any]]:
    """Access requests newest first (then by id), each with its number of objects, its
    ``state`` (``requested``, ``approved``, ``refused``) and ``valid_until``."""
    items = access.listing(
        catalog.conn, state=state, requested_by=requested_by, limit=page.limit, offset=page.offset
    )
    return page.answer(request, response, items)


@router.get(
    "/requests/{request_id}",
    dependencies=READER,
    responses={**doc.API_ERRORS, 404: {"description": "No such access request"}},
)
def request_one(catalog: Catalog, request_id: str) -> dict[str, Any]:
    """One access request with its objects (station, store path, sha256, size, recorder)."""
    req = access.get(catalog.conn, request_id)
    if req is None:
        raise HTTPException(status_code=404, detail=f"access request {request_id} does not exist")
    return {**req, "recordings": access.objects(catalog.conn, request_id)}


@router.get("/log", dependencies=READER, responses=PAGED)
def log_list(
    catalog: Catalog,
    request_id: str | None = Query(None, max_length=64, description="Only this request's"),
    *,
    page: Paged,
    request: Request,
    response: Response,
) -> list[dict[str, Any]]:
    """The access log newest first: requests, decisions, downloads, exports and refusals."""
    items = access_log.listing(
        catalog.conn, request_id=request_id, limit=page.limit, offset=page.offset
    )
    return page.answer(request, response, items)
