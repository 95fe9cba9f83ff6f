"""What every dashboard request works with (``app.state.dashboard``): the catalog, the
settings, the users file, the sessions, the login rate limit, the templates and the fault
actions; and the viewer of one request (their session, user and language).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from central import actions as decisions
from central.catalog import CentralCatalog
from central.web import i18n
from central.web.board import Settings
from central.web.session import (
    COOKIE,
    DEFAULT_MAX_AGE,
    LoginLimiter,
    Session,
    Sessions,
    fingerprint,
)
from central.web.users import User, UserFile

logger = logging.getLogger(__name__)

SHAPES = {
    # a shape beside every colour: status is never told by colour alone
    "healthy": "✔",
    "degraded": "▲",
    "unhealthy": "✖",
    "unknown": "?",
    "red": "■",
    "amber": "▲",
    "open": "●",
}


@dataclass(frozen=True)
class DashboardOptions:
    """How ``recdock-central`` serves the dashboard (its options, docs/dashboard.md).

    ``users_file``: default ``<data>/dashboard-users.toml``. ``plain_http`` drops the
    cookies' Secure flag: a lab option, for a dashboard reached over plain http."""

    users_file: Path | None = None
    settings: Settings = field(default_factory=Settings)
    plain_http: bool = False
    session_seconds: int = DEFAULT_MAX_AGE


class FaultActions(Protocol):
    def apply(self, action: str, station: str, fault_id: str, *, by: str, note: str) -> None:
        """Acknowledge or resolve the fault as ``by``; KeyError when there is no such fault."""

    def set_register(self, serial: str, *, by: str, **entry: str) -> None:
        """Set ``serial``'s register entry (lifecycle, officer, unit, note) as ``by``."""


class CentreFaultActions:
    """The centre's fault lifecycle (:mod:`central.actions`): the decision recorded with who
    and when, and sent to the station as a signed command by the consumer's publisher."""

    def __init__(self, ctx: decisions.CentralContext) -> None:
        self.ctx = ctx

    def apply(self, action: str, station: str, fault_id: str, *, by: str, note: str) -> None:
        ref = f"{station}/{fault_id}"
        try:
            if action == "acknowledge":
                decisions.acknowledge_fault(self.ctx, ref, by)
            else:
                decisions.resolve_fault(self.ctx, ref, by, note)
        except decisions.ActionError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from exc

    def set_register(self, serial: str, *, by: str, **entry: str) -> None:
        try:
            decisions.set_register_entry(self.ctx, serial, by=by, **entry)
        except decisions.ActionError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from exc


@dataclass(frozen=True)
class Viewer:
    session: Session | None
    user: User | None
    lang: str


class Dashboard:
    def __init__(
        self,
        catalog: CentralCatalog,
        users: UserFile,
        sessions: Sessions,
        *,
        settings: Settings | None = None,
        actions: FaultActions | None = None,
        limiter: LoginLimiter | None = None,
        actions_ctx: decisions.CentralContext | None = None,
    ) -> None:
        self.catalog = catalog
        self.users = users
        self.sessions = sessions
        self.settings = settings or Settings()
        self.actions = actions or CentreFaultActions(
            actions_ctx or decisions.CentralContext(catalog)
        )
        self.limiter = limiter or LoginLimiter()
        self.env = Environment(
            loader=PackageLoader("central.web", "templates"),
            autoescape=select_autoescape(["html"]),
        )

    def viewer(self, request: Request) -> Viewer:
        session = self.sessions.load(request.cookies.get(COOKIE))
        user = self.users.get(session.user) if session and session.user else None
        if user is not None and fingerprint(user.hash) != session.pw:
            user = None  # a new password (or a new user of that name) ends the session
        lang = i18n.choose(request.query_params.get("lang"), request.cookies.get(i18n.COOKIE))
        return Viewer(session=session, user=user, lang=lang)

    def t(self, request: Request):  # noqa: ANN201
        return i18n.translator(self.viewer(request).lang)

    def to_login(self, request: Request) -> Response:
        if request.query_params.get("format") == "json":
            raise HTTPException(status_code=401, detail="log in at /login")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    def render(
        self,
        request: Request,
        viewer: Viewer,
        template: str,
        values: dict[str, Any],
        status: int = 200,
    ) -> Response:
        """The page, with a session (an anonymous one for its CSRF token) and the language
        cookie when ``?lang=`` chose one."""
        session = viewer.session or self.sessions.new()
        page = self.env.get_template(template).render(
            t=i18n.translator(viewer.lang),
            lang=viewer.lang,
            other_lang="en" if viewer.lang == "zh-CN" else "zh-CN",
            user=viewer.user,
            csrf=session.csrf,
            settings=self.settings,
            shapes=SHAPES,
            path=request.url.path,
            query=dict(request.query_params),
            **values,
        )
        response = HTMLResponse(page, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
        if viewer.session is None:
            response.set_cookie(
                COOKIE, self.sessions.dump(session), **self.sessions.cookie_options()
            )
        if request.query_params.get("lang") in i18n.TABLES:
            response.set_cookie(
                i18n.COOKIE, viewer.lang, max_age=365 * 86400, samesite="lax", path="/"
            )
        return response
