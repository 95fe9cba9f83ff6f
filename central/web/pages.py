"""The dashboard's pages: overview, stations, recorders, a recorder, a fault, the register;
login and logout.

Every page needs a logged-in user (else a redirect to ``/login``); every POST needs the
session's CSRF token (else 403), the fault actions the supervisor role and the register the
administrator role (else 403). A page
answers its data as JSON with ``?format=json`` (the benchmark's baseline, and a way to read
the dashboard from a script with a session). Work on the catalog runs in a worker thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from central import views
from central.catalog import holds
from central.catalog.register import LIFECYCLES
from central.web import board, charts
from central.web.context import Dashboard, Viewer
from central.web.session import COOKIE, csrf_ok

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


def _dash(request: Request) -> Dashboard:
    return request.app.state.dashboard


async def _page(request: Request, template: str, build, *args: Any, **kwargs: Any) -> Response:
    """Render ``template`` with what ``build(catalog, settings, now, ...)`` returns, for a
    logged-in viewer; JSON with ``?format=json``."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    if viewer.user is None:
        return dash.to_login(request)
    now = datetime.now(UTC)
    data = await run_in_threadpool(build, dash.catalog, dash.settings, now, *args, **kwargs)
    # a fault or a recorder the catalog does not know: its page says so, answered 404
    status = 404 if data is None or (isinstance(data, dict) and data.get("not_found")) else 200
    if request.query_params.get("format") == "json":
        return JSONResponse(data, status_code=status)
    return dash.render(request, viewer, template, {"data": data, "now": now}, status)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    return await _page(request, "overview.html", board.overview)


MAX_PAGE = 10**6


def _offset(page: int) -> int:
    return (page - 1) * board.PAGE_SIZE


def _stations(catalog, settings, now, page):  # noqa: ANN001
    found = board.stations(
        catalog,
        settings,
        now,
        board.faults(catalog, settings, now),
        limit=board.PAGE_SIZE,
        offset=_offset(page),
    )
    return {"stations": found, "paging": board.pager(page, catalog.total("stations"))}


@router.get("/stations", response_class=HTMLResponse)
async def stations(request: Request, page: int = Query(1, ge=1, le=MAX_PAGE)) -> Response:
    return await _page(request, "stations.html", _stations, page)


def _recorders(catalog, settings, now, station, unit, page):  # noqa: ANN001
    """One page of the recorders (by serial, filtered and paged in SQL) and the choices of
    the filters."""
    open_faults = board.faults(catalog, settings, now)
    found = board.recorders(
        catalog,
        settings,
        now,
        open_faults,
        station=station,
        unit=unit,
        limit=board.PAGE_SIZE,
        offset=_offset(page),
    )
    stations, units = catalog.recorder_choices()
    total = catalog.total("newest_recorders", station=station, unit=unit)
    return {
        "recorders": found,
        "station": station or "",
        "unit": unit or "",
        "stations": stations,
        "units": units,
        "paging": board.pager(page, total, station=station, unit=unit),
    }


@router.get("/recorders", response_class=HTMLResponse)
async def recorders(
    request: Request, station: str = "", unit: str = "", page: int = Query(1, ge=1, le=MAX_PAGE)
) -> Response:
    return await _page(request, "recorders.html", _recorders, station or None, unit or None, page)


def _recorder(catalog, settings, now, serial):  # noqa: ANN001
    open_faults = board.faults(catalog, settings, now, subject=serial)
    found = board.recorders(catalog, settings, now, open_faults, serial=serial)
    history = board.history(catalog, serial)
    held = holds.listing(catalog.conn, device=serial, active=True)
    return {
        "serial": serial,
        "recorder": found[0] if found else None,
        # nothing known of it: never reported nor checked, no open fault or hold names it
        "not_found": not (found or history or open_faults or held),
        "faults": open_faults,
        "history": history,
        "battery_svg": charts.sparkline([h["battery_pct"] for h in history], 0, 100),
        "drift_svg": charts.sparkline([h["clock_offset_s"] for h in history]),
        "holds": held,
    }


@router.get("/recorders/{serial}", response_class=HTMLResponse)
async def recorder(request: Request, serial: str) -> Response:
    return await _page(request, "recorder.html", _recorder, serial)


@router.get("/faults/{station}/{fault_id}", response_class=HTMLResponse)
async def fault(request: Request, station: str, fault_id: str) -> Response:
    return await _page(request, "fault.html", board.fault, station, fault_id)


@router.post("/faults/{station}/{fault_id}/{action}")
async def fault_action(
    request: Request,
    station: str,
    fault_id: str,
    action: str,
    csrf: str = Form(""),
    note: str = Form(""),
) -> Response:
    """Acknowledge or resolve a fault: supervisor role and the form's CSRF token needed."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    _allowed(dash, request, viewer, csrf, "supervisor")
    if action not in ("acknowledge", "resolve"):
        raise HTTPException(status_code=404, detail=f"no fault action {action!r}")
    if action == "resolve" and not note.strip():
        raise HTTPException(status_code=400, detail="resolving a fault needs a note")
    await run_in_threadpool(
        dash.actions.apply, action, station, fault_id, by=viewer.user.name, note=note.strip()
    )
    logger.info("fault %s/%s: %s by %s", station, fault_id, action, viewer.user.name)
    url = f"/faults/{quote(station, safe='')}/{quote(fault_id, safe='')}?done={action}"
    return RedirectResponse(url, status_code=303)


def _register(catalog, settings, now, page):  # noqa: ANN001
    entries = views.register_entries(catalog, limit=board.PAGE_SIZE, offset=_offset(page))
    return {
        "entries": entries,
        "lifecycles": list(LIFECYCLES),
        "paging": board.pager(page, views.register_total(catalog)),
    }


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, page: int = Query(1, ge=1, le=MAX_PAGE)) -> Response:
    return await _page(request, "register.html", _register, page)


@router.post("/register")
async def register_set(
    request: Request,
    csrf: str = Form(""),
    serial: str = Form(""),
    lifecycle: str = Form(""),
    officer: str = Form(""),
    unit: str = Form(""),
    note: str = Form(""),
) -> Response:
    """Set a recorder's register entry: administrator role and the form's CSRF token needed;
    the centre sends it to every station (central/actions.py)."""
    dash = _dash(request)
    viewer = dash.viewer(request)
    _allowed(dash, request, viewer, csrf, "administrator")
    entry = {"lifecycle": lifecycle, "officer": officer.strip(), "unit": unit.strip()}
    await run_in_threadpool(
        dash.actions.set_register, serial.strip(), by=viewer.user.name, note=note.strip(), **entry
    )
    logger.info("register %s: %s by %s", serial.strip(), lifecycle, viewer.user.name)
    return RedirectResponse(f"/register?done={quote(serial.strip(), safe='')}", status_code=303)


def _allowed(dash: Dashboard, request: Request, viewer: Viewer, csrf: str, role: str) -> None:
    """403 without a logged-in user holding ``role``, or without the session's CSRF token."""
    t = dash.t(request)
    if not csrf_ok(viewer.session, csrf):
        raise HTTPException(status_code=403, detail=t("error.csrf"))
    if viewer.user is None or not viewer.user.may(role):
        reason = t("error.role", role=t(f"role.{role}"))
        raise HTTPException(status_code=403, detail=t("error.forbidden", reason=reason))


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
    dash = _dash(request)
    return dash.render(request, dash.viewer(request), "login.html", {"next": next})


@router.post("/login")
async def login(
    request: Request,
    user: str = Form(""),
    password: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/"),  # noqa: A002
) -> Response:
    dash = _dash(request)
    viewer = dash.viewer(request)
    if not csrf_ok(viewer.session, csrf):
        raise HTTPException(status_code=403, detail=dash.t(request)("error.csrf"))
    client = request.client.host if request.client else "?"
    keys = (f"addr:{client}", f"user:{user}")
    wait = dash.limiter.retry_after(*keys)
    if wait > 0:
        logger.warning("login for %r from %s refused: rate limit", user, client)
        error = dash.t(request)("login.limited", seconds=int(wait) + 1)
        return dash.render(request, viewer, "login.html", {"next": next, "error": error}, 429)
    found = await run_in_threadpool(dash.users.verify, user, password)
    if found is None:
        dash.limiter.failed(*keys)
        logger.warning("failed login for %r from %s", user, client)
        error = dash.t(request)("login.failed")
        return dash.render(request, viewer, "login.html", {"next": next, "error": error}, 401)
    logger.info("login: %s (%s) from %s", found.name, found.role, client)
    response = RedirectResponse(
        next if next.startswith("/") and not next.startswith("//") else "/", 303
    )
    session = dash.sessions.new(found.name, found.hash)
    response.set_cookie(COOKIE, dash.sessions.dump(session), **dash.sessions.cookie_options())
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    dash = _dash(request)
    viewer = dash.viewer(request)
    if not csrf_ok(viewer.session, csrf):
        raise HTTPException(status_code=403, detail=dash.t(request)("error.csrf"))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
