"""The dashboard's holds (rule clause 12): ``/holds`` lists every station's holds and those
placed at the centre (filters: station, case number, active; paged); a supervisor places a
hold there and releases one (:mod:`central.hold_actions`, which sends each station a signed
``hold`` command). Every POST needs the session's CSRF token and the supervisor role (else
403), as the fault actions do (:mod:`central.web.pages`).
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from central import hold_actions
from central.actions import ActionError, CentralContext
from central.catalog import holds
from central.web.pages import _allowed, _dash, _page
from sync.wire.commands import HOLD_SCOPES

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PAGE = 50


def _list(catalog, settings, now, filters: dict, page: int):  # noqa: ANN001
    conn = catalog.conn
    shown = {k: ("" if v is None else v) for k, v in filters.items()}
    if filters["active"] is not None:
        shown["active"] = "true" if filters["active"] else "false"
    found = holds.listing(conn, **filters, limit=PAGE + 1, offset=page * PAGE)
    return {
        "holds": found[:PAGE],
        "page": page,
        "more": len(found) > PAGE,
        "filters": shown,
        "keep": urlencode({k: v for k, v in shown.items() if v}),
        "scopes": list(HOLD_SCOPES),
        "reasons": list(hold_actions.CENTRE_REASONS),
    }


@router.get("/holds", response_class=HTMLResponse)
async def hold_page(
    request: Request, station: str = "", case_number: str = "", active: str = "", page: int = 0
) -> Response:
    filters = {
        "station": station or None,
        "case_number": case_number or None,
        "active": {"true": True, "false": False}.get(active),
    }
    return await _page(request, "holds.html", _list, filters, max(0, min(page, 10**6)))


def _ctx(request: Request) -> CentralContext:
    dash = _dash(request)
    return getattr(dash.actions, "ctx", None) or CentralContext(dash.catalog)


async def _decide(call, *args, **kwargs):  # noqa: ANN001, ANN202
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except ActionError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from exc


@router.post("/holds")
async def place(
    request: Request,
    csrf: str = Form(""),
    scope: str = Form(""),
    target: str = Form(""),
    reason: str = Form(""),
    reason_text: str = Form(""),
    case_name: str = Form(""),
    case_number: str = Form(""),
    from_at: str = Form(""),
    to_at: str = Form(""),
) -> Response:
    """Place a hold: supervisor role and the form's CSRF token needed."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    _allowed(dash, request, viewer, csrf, "supervisor")
    placed = await _decide(
        hold_actions.place_hold, _ctx(request), scope=scope, target=target, reason=reason,
        by=viewer.user.name, reason_text=reason_text, case_name=case_name,
        case_number=case_number, from_at=from_at, to_at=to_at,
    )  # fmt: skip
    hold_id = placed[0]["hold_id"]
    return RedirectResponse(f"/holds?placed={quote(hold_id, safe='')}", status_code=303)


@router.post("/holds/{hold_id}/release")
async def release(
    request: Request, hold_id: str, csrf: str = Form(""), reason: str = Form("")
) -> Response:
    """Release a hold at every station that holds it: supervisor role and CSRF needed."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    _allowed(dash, request, viewer, csrf, "supervisor")
    await _decide(
        hold_actions.release_hold, _ctx(request), hold_id, by=viewer.user.name, reason=reason
    )
    return RedirectResponse(f"/holds?released={quote(hold_id, safe='')}", status_code=303)
