"""The dashboard's approved access (rule clauses 13, 34, 35; docs/access.md): ``/access`` lists
the requests (every request for a supervisor, one's own for a viewer) and has the request form
(any logged-in user); ``/access/{id}`` shows one with its objects and, within its approval and
to its requester or approver only, a download link per object; a supervisor who did not make
the request approves (until a time, at most ``--access-max-days``) or refuses it there;
``/access/log`` is the access log (supervisors). Every POST needs the session's CSRF token (else
403); a decision needs the supervisor role (else 403, logged). Times come from
``app.state.clock`` when the app has one (the tests move it), else the system's clock.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from central import access as decisions
from central.actions import ActionError
from central.catalog import access, access_log
from central.web.context import Dashboard, Viewer
from central.web.holds import _ctx
from central.web.pages import _allowed, _dash
from central.web.session import csrf_ok

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PAGE = 50


def now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


async def _show(
    request: Request, template: str, build: Any, *args: Any, role: str = "viewer"
) -> Response:
    """``template`` with ``build(catalog, viewer, at, ...)`` for a logged-in viewer holding
    ``role``; JSON with ``?format=json``."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    if viewer.user is None:
        return dash.to_login(request)
    if not viewer.user.may(role):
        t = dash.t(request)
        reason = t("error.role", role=t(f"role.{role}"))
        raise HTTPException(status_code=403, detail=t("error.forbidden", reason=reason))
    at = now(request)
    data = await run_in_threadpool(build, dash.catalog, viewer, at, *args)
    if request.query_params.get("format") == "json":
        return JSONResponse(data)
    return dash.render(request, viewer, template, {"data": data, "now": at})


def _requests(catalog, viewer: Viewer, at: datetime, state: str | None, page: int):  # noqa: ANN001
    mine = None if viewer.user.may("supervisor") else viewer.user.name
    found = access.listing(
        catalog.conn, state=state, requested_by=mine, limit=PAGE + 1, offset=page * PAGE
    )
    return {
        "requests": [_with_state(r, at) for r in found[:PAGE]],
        "page": page,
        "more": len(found) > PAGE,
        "state": state or "",
        "keep": urlencode({"state": state} if state else {}),
        "states": list(access.STATES),
    }


def _with_state(req: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The request with ``shown``: its state as the page names it (``expired`` for an approval
    that ran out)."""
    expired = req["state"] == "approved" and decisions.stamp(at) >= (req["valid_until"] or "")
    return {**req, "shown": "expired" if expired else req["state"]}


@router.get("/access", response_class=HTMLResponse)
async def request_list(request: Request, state: str = "", page: int = 0) -> Response:
    chosen = state if state in access.STATES else None
    return await _show(request, "access.html", _requests, chosen, max(0, min(page, 10**6)))


def _log(catalog, viewer: Viewer, at: datetime, request_id: str | None, page: int):  # noqa: ANN001
    rows = access_log.listing(
        catalog.conn, request_id=request_id, limit=PAGE + 1, offset=page * PAGE
    )
    keep = urlencode({"request": request_id} if request_id else {})
    return {"log": rows[:PAGE], "page": page, "more": len(rows) > PAGE, "keep": keep}


@router.get("/access/log", response_class=HTMLResponse)
async def log_page(request: Request, page: int = 0) -> Response:
    request_id = request.query_params.get("request") or None
    page = max(0, min(page, 10**6))
    return await _show(request, "access_log.html", _log, request_id, page, role="supervisor")


def _one(catalog, viewer: Viewer, at: datetime, request_id: str, max_days: float):  # noqa: ANN001
    req = access.get(catalog.conn, request_id)
    if req is None:
        raise HTTPException(status_code=404, detail=f"access request {request_id} does not exist")
    name = viewer.user.name
    if not viewer.user.may("supervisor") and name != req["requested_by"]:
        raise HTTPException(status_code=403, detail=f"access request {request_id} is not yours")
    missing = decisions.problems(req, request_id, at=at)
    mine = name in (req["requested_by"], req["decided_by"])
    return {
        "request": _with_state(req, at),
        "objects": access.objects(catalog.conn, request_id),
        "missing": missing,
        "may_download": mine and not missing,
        "may_decide": viewer.user.may("supervisor")
        and req["state"] == "requested"
        and name != req["requested_by"],
        "max_days": max_days,
    }


@router.get("/access/{request_id}", response_class=HTMLResponse)
async def request_page(request: Request, request_id: str) -> Response:
    max_days = _dash(request).settings.centre.access_max_days
    return await _show(request, "access_request.html", _one, request_id, max_days)


@router.post("/access")
async def make_request(
    request: Request,
    csrf: str = Form(""),
    basis: str = Form(""),
    hold_id: str = Form(""),
    case: str = Form(""),
    recordings: str = Form(""),
    case_name: str = Form(""),
    case_number: str = Form(""),
    party: str = Form(""),
    purpose: str = Form(""),
) -> Response:
    """Ask for access: any logged-in user, with the form's CSRF token."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    _allowed(dash, request, viewer, csrf, "viewer")
    asked = {
        "hold_id": hold_id if basis == "hold" else None,
        "case": case if basis == "case" else None,
        "recordings": _lines(recordings) if basis == "list" else None,
    }
    made = await _decide(
        decisions.request_access, _ctx(request), by=viewer.user.name, purpose=purpose,
        at=now(request), case_name=case_name, case_number=case_number, party=party, **asked,
    )  # fmt: skip
    return RedirectResponse(f"/access/{quote(made['request_id'], safe='')}?made=1", status_code=303)


def _lines(text: str) -> list[tuple[str, str]]:
    """``STATION STORE-PATH`` per line."""
    out = []
    for line in text.splitlines():
        station, _, path = line.strip().partition(" ")
        if station and path.strip():
            out.append((station, path.strip()))
    if not out:
        raise HTTPException(status_code=400, detail="name recordings as: STATION STORE-PATH")
    return out


@router.post("/access/{request_id}/{decision}")
async def decide(
    request: Request,
    request_id: str,
    decision: str,
    csrf: str = Form(""),
    days: float = Form(0),
    note: str = Form(""),
) -> Response:
    """Approve or refuse: the supervisor role, not the requester, and the CSRF token."""
    if decision not in ("approve", "refuse"):
        raise HTTPException(status_code=404, detail=f"no access decision {decision!r}")
    dash = _dash(request)
    viewer = dash.viewer(request)
    await _role_or_logged(dash, request, viewer, csrf, request_id)
    max_days = dash.settings.centre.access_max_days
    await _decide(
        decisions.decide, _ctx(request), request_id, by=viewer.user.name,
        approve=decision == "approve", at=now(request), days=days, note=note,
        max_days=max_days,
    )  # fmt: skip
    url = f"/access/{quote(request_id, safe='')}?done={decision}"
    return RedirectResponse(url, status_code=303)


async def _role_or_logged(
    dash: Dashboard, request: Request, viewer: Viewer, csrf: str, request_id: str
) -> None:
    """403 without the CSRF token; 403 without the supervisor role, logged as a refused
    decision (who tried, on which request)."""
    if not csrf_ok(viewer.session, csrf):
        raise HTTPException(status_code=403, detail=dash.t(request)("error.csrf"))
    try:
        _allowed(dash, request, viewer, csrf, "supervisor")
    except HTTPException:
        who = viewer.user.name if viewer.user else "(not logged in)"
        why = f"{who} does not hold the supervisor role that decides access requests"
        await run_in_threadpool(
            decisions.refuse_decision, _ctx(request), request_id, by=who, at=now(request), why=why
        )
        raise


async def _decide(call, *args, **kwargs):  # noqa: ANN001, ANN202
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except ActionError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from exc


@router.get("/access/{request_id}/objects/{n}")
async def download(request: Request, request_id: str, n: int) -> Response:
    """One object of an approved request, to its requester or approver while the approval
    holds: the bytes the centre stored, their sha256 in ``X-Recdock-Sha256`` and
    ``Repr-Digest``; else 403 saying what is missing (logged)."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    if viewer.user is None:
        return dash.to_login(request)
    data_dir = request.app.state.uploads.data_dir
    path, obj = await _decide(
        decisions.open_object, _ctx(request), data_dir, request_id, n,
        by=viewer.user.name, at=now(request),
    )  # fmt: skip
    digest = base64.b64encode(bytes.fromhex(obj["sha256"])).decode()
    name = PurePosixPath(obj["source_path"] or obj["recording"]).name
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=name,
        headers={
            "X-Recdock-Sha256": obj["sha256"],
            "Repr-Digest": f"sha-256=:{digest}:",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
