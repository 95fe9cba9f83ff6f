"""The dashboard of device health, served by ``recdock-central`` (docs/dashboard.md).

Server-rendered pages (Jinja2 templates and a stylesheet from this package; one small script
for live updates, no build step) over the central catalog: ``board`` reads what the pages
show, ``pages`` serves them (``holds`` the holds page and its actions, ``access`` approved
access and its downloads, ``report`` the compliance report), ``context`` holds what every
request works with, ``session`` the cookies, CSRF tokens and the login rate limit, ``users``
the users file, ``i18n`` the
languages and ``charts`` the inline SVG charts.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from central.catalog import CentralCatalog
from central.settings import CentreSettings
from central.web.access import router as access_router
from central.web.board import Settings
from central.web.context import Dashboard, DashboardOptions, FaultActions
from central.web.holds import router as holds_router
from central.web.pages import router
from central.web.report import router as report_router
from central.web.session import Sessions, load_secret
from central.web.users import UserFile

__all__ = ["DashboardOptions", "Settings", "include_dashboard"]

STATIC = Path(__file__).parent / "static"


def include_dashboard(
    app: FastAPI,
    catalog: CentralCatalog,
    data_dir: str | os.PathLike[str],
    options: DashboardOptions | None = None,
    *,
    actions: FaultActions | None = None,
) -> Dashboard:
    """Serve the dashboard at ``/`` (``app.state.dashboard``); the cookies' secret is
    ``<data_dir>/dashboard-secret``."""
    options = options or DashboardOptions()
    data = Path(data_dir)
    users = UserFile(options.users_file or data / "dashboard-users.toml")
    secret = load_secret(data / "dashboard-secret")
    sessions = Sessions(secret, max_age=options.session_seconds, secure=not options.plain_http)
    # the thresholds are the centre's (health words, fault ages): one definition
    centre = getattr(app.state, "centre_settings", None) or CentreSettings()
    dashboard = Dashboard(
        catalog,
        users,
        sessions,
        settings=replace(options.settings, centre=centre),
        actions=actions,
        actions_ctx=getattr(app.state, "actions", None),
    )
    app.state.dashboard = dashboard
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.include_router(holds_router)
    app.include_router(access_router)
    app.include_router(report_router)
    return dashboard
