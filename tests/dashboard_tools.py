"""Test helpers for the dashboard: its users, a real recdock-central serving it, logging in
over HTTP, and what a station sends that the dashboard shows (faults, a recorder's checks,
its status), made by the station's own catalog code and signed as it would leave."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from agent.catalog import Catalog, checks, outbox
from agent.catalog.faults import report_fault
from central.app import create_app
from central.web.board import Settings
from central.web.context import DashboardOptions
from central.web.users import UserFile
from sync.wire import topics
from sync.wire.payloads import status_payload
from sync.wire.signing import sign_payload
from tests.central_server import TOKENS

STATION = "ST-A"
PASSWORDS = {"sup": "supervisor-pass-1", "view": "viewer-pass-12", "admin": "admin-pass-123"}
ROLES = {"sup": "supervisor", "view": "viewer", "admin": "administrator"}
SERIAL = "SIM0042"


_USERS_TEXT: list[str] = []  # argon2 is slow on purpose: the test users are hashed once


def make_users(path: Path) -> Path:
    if not _USERS_TEXT:
        users = UserFile(path)
        for name, password in PASSWORDS.items():
            users.add(name, ROLES[name], password)
        _USERS_TEXT.append(path.read_text(encoding="utf-8"))
    path.write_text(_USERS_TEXT[0], encoding="utf-8")
    return path


def dashboard_app(
    tmp_path: Path, *, poll_seconds: float = 5.0, api_tokens: dict | None = None, **kw
):  # -> FastAPI
    """recdock-central with its dashboard over plain http (the lab option), the test users;
    ``api_tokens``: the JSON API's reader tokens (none by default)."""
    users = make_users(tmp_path / "users.toml")
    options = DashboardOptions(
        users_file=users, plain_http=True, settings=Settings(poll_seconds=poll_seconds)
    )
    return create_app(
        tmp_path / "data", TOKENS, api_tokens=api_tokens or {}, dashboard=options, **kw
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(url: str, user: str, password: str | None = None) -> requests.Session:
    """A logged-in HTTP session of ``user``."""
    s = requests.Session()
    form = s.get(f"{url}/login", timeout=10)
    r = s.post(
        f"{url}/login",
        data={
            "user": user,
            "password": PASSWORDS[user] if password is None else password,
            "csrf": csrf_of(form.text),
            "next": "/",
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.url.endswith("/"), (r.status_code, r.text[:300])
    return s


def station_catalog(home: Path) -> Catalog:
    home.mkdir(parents=True, exist_ok=True)
    return Catalog(home / "catalog.db", station_id=STATION)


def dock(catalog: Catalog, serial: str, *, battery: float, offset: float, days_ago: float = 0):
    """A recorder's pre-shift check as the station records it (agent.checks.health_payload's
    shape: each check's value as text): the checks event (history) and the retained
    recorder-health message, with an officer and unit (the schema has them; today's station
    does not fill them in)."""
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="milliseconds")
    ok = battery >= 50
    values = {"battery": f"{battery:.0f} %", "storage": "12.0 GiB free"}
    results = [
        {"name": name, "ok": ok or name != "battery", "value": value, "threshold": "", "detail": ""}
        for name, value in values.items()
    ]
    health = {
        "station": STATION,
        "device_serial": serial,
        "at": at,
        "bay": 1,
        "ready": ok,
        "reasons": [] if ok else [f"battery {battery:.0f} % < 50 %"],
        "checks": {
            r["name"]: {k: r[k] for k in ("ok", "value", "threshold", "detail")} for r in results
        },
        "clock_offset_s": offset,
        "officer": "王警官",
        "unit": "一中队",
    }
    checks.record(
        catalog,
        at=at,
        device_serial=serial,
        session_id=None,
        bay=1,
        ready=health["ready"],
        results=results,
        clock_offset_s=offset,
        clock_offset_after_s=0.0,
        audit_data={
            "ready": health["ready"],
            "reasons": health["reasons"],
            "results": results,
            "clock_offset_s": offset,
            "device_serial": serial,
        },
        health=health,
    )


def raise_fault(catalog: Catalog, kind: str = "recorder.battery", subject: str = SERIAL) -> str:
    return report_fault(catalog, kind, subject, "battery does not charge").id


def pending(catalog: Catalog, key) -> list[tuple[str, bytes, bool]]:  # noqa: ANN001
    """Everything the station queued, signed as it leaves: (topic, payload, retain); taken
    off the outbox as a broker's acknowledgement would."""
    rows = outbox.pending(catalog.conn, limit=1_000_000)
    outbox.acknowledge(catalog.conn, [m.id for m in rows])
    return [(m.topic, sign_payload(key, m.topic, m.payload), m.retain) for m in rows]


def status(key, state: str) -> tuple[str, bytes, bool]:  # noqa: ANN001
    topic = topics.status(STATION)
    return topic, sign_payload(key, topic, status_payload(STATION, state)), True
