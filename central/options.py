"""The limit options of ``recdock-central``, in groups that each become one settings object.

``@upload_limit_options`` adds one option per field of :class:`~central.limits.UploadLimits`
and hands the command a ``limits`` argument; ``@serve_limit_options`` does the same for
:class:`~central.serve.ServeLimits` (``serve_limits``) and the app's requests in flight
(``max_requests``); ``@centre_options`` for :class:`~central.settings.CentreSettings`
(``centre``: the health words' and the centre's fault rules' thresholds, docs/faults.md);
``@dashboard_options`` for the dashboard (``dashboard``: :class:`DashboardChoices`);
``@worker_options`` for one worker of several (``worker``: :class:`WorkerChoices`). Defaults,
bounds and help live here, once. Nothing here imports the web, FastAPI or paho: this is what
``recdock-central --help`` loads (central/command.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from central.limits import UploadLimits
from central.serve import DEFAULT_MAX_REQUESTS, ServeLimits
from central.settings import DEFAULT_POLL_SECONDS, CentreSettings

_U, _S = UploadLimits(), ServeLimits()

DATABASE_ENV = "RECDOCK_CENTRAL_DATABASE"

#: ``--database``: where the central catalog lives (every command that opens it takes it).
database_option = click.option(
    "--database",
    envvar=DATABASE_ENV,
    show_envvar=True,
    default=None,
    metavar="URL",
    help="The central catalog: a SQLite file (a path, or sqlite:///path) or PostgreSQL "
    "(postgresql://user@host/name, or with ?host=/run/postgresql for its socket; the receipts "
    "go there too). Keep a password out of the URL (ps shows it): libpq reads ~/.pgpass or "
    "PGPASSFILE. Default: <data>/central-catalog.db.",
)

UPLOAD_OPTIONS = {
    "metadata_bytes": (
        "--max-metadata-bytes",
        _U.metadata_bytes,
        "Longest Upload-Metadata header in bytes; longer: 431.",
    ),
    "metadata_keys": (
        "--max-metadata-keys",
        _U.metadata_keys,
        "Most keys in Upload-Metadata; more: 400.",
    ),
    "open_uploads": (
        "--max-open-uploads",
        _U.open_uploads,
        "Most uploads one station may have open (created, not yet verified); more: 429.",
    ),
    "unfinished_bytes": (
        "--max-unfinished-bytes",
        _U.unfinished_bytes,
        "Most bytes one station may have announced and not sent yet; more: 429 (413 for one "
        "upload larger than this).",
    ),
    "daily_bytes": (
        "--max-daily-bytes",
        _U.daily_bytes,
        "Most bytes one station may store in a UTC day (verified and announced); more: 429 "
        "until midnight UTC.",
    ),
    "disk_reserve": (
        "--disk-reserve",
        _U.disk_reserve,
        "Bytes kept free on the data disk after every open upload is complete; a creation "
        "that would cross it: 413 with Retry-After.",
    ),
}

SERVE_OPTIONS = {
    "max_header_bytes": (
        "--max-header-bytes",
        _S.max_header_bytes,
        "Longest request line and headers together, in bytes; longer: 431.",
    ),
    "max_connections": (
        "--max-connections",
        _S.max_connections,
        "Most open HTTP connections (uvicorn's limit_concurrency); more: 503 from uvicorn.",
    ),
}


def _grouped(
    options: dict[str, tuple[str, int, str]], build: Callable[[dict[str, int]], dict[str, Any]]
):
    """A decorator adding ``options`` and passing what ``build`` makes of their values."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {field: kwargs.pop(field) for field in options}
            return command(*args, **kwargs, **build(values))

        for field, (flag, default, help_text) in reversed(options.items()):
            wrapper = click.option(
                flag,
                field,
                default=default,
                show_default=True,
                type=click.IntRange(min=1 if field != "disk_reserve" else 0),
                help=help_text,
            )(wrapper)
        return wrapper

    return decorate


upload_limit_options = _grouped(UPLOAD_OPTIONS, lambda v: {"limits": UploadLimits(**v)})


def _serve(values: dict[str, int]) -> dict[str, Any]:
    return {"max_requests": values.pop("max_requests"), "serve_limits": ServeLimits(**values)}


serve_limit_options = _grouped(
    {
        **SERVE_OPTIONS,
        "max_requests": (
            "--max-requests",
            DEFAULT_MAX_REQUESTS,
            "Most HTTP requests inside the app at once; more: 429 with Retry-After.",
        ),
    },
    _serve,
)


_C = CentreSettings()
CENTRE_OPTIONS = {
    "station_silent_hours": "Hours without a message after which a station is `unknown` and "
    "gets a station.silent fault.",
    "station_offline_minutes": "Minutes a station's status may stay `offline` (its Last Will) "
    "before a station.offline fault opens.",
    "recorder_unknown_hours": "Hours without a report from any station after which a recorder "
    "is `unknown`.",
    "overdue_hours": "Hours a recorder in service may stay docked nowhere before a "
    "recorder.overdue fault opens.",
    "amber_hours": "Age in hours from which an open fault shows amber (red past 24 h).",
    "clock_drift_s_per_day": "Clock drift between two dockings, seconds a day, above which a "
    "recorder.clock_drift fault opens (GA/T 947: 3).",
    "battery_low_pct": "Battery percentage at docking below which a docking counts as low.",
    "battery_low_dockings": "Low dockings in a row (any stations) that open a recorder.battery "
    "fault.",
    "late_window_hours": "Window in hours over which late recordings are counted per unit.",
    "late_max": "Late recordings of a unit within the window above which a unit.late_footage "
    "fault opens.",
    "store_low_percent": "Free share of a station's store, in percent of its size, below which "
    "the station is `degraded` (its health report).",
    "event_backlog_minutes": "Minutes the oldest event may wait at a station for the broker "
    "before the station is `degraded`.",
    "upload_backlog_hours": "Hours the oldest recording may wait at a station for its upload "
    "before the station is `degraded` (footage is due within 24 h).",
    "rules_interval_s": "Seconds between two evaluations of the centre's fault rules.",
    "access_max_days": "Longest an approval of an access request may last, in days "
    "(docs/access.md).",
}


def centre_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per field of :class:`CentreSettings`; pass ``centre``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {field: kwargs.pop(field) for field in CENTRE_OPTIONS}
        return command(*args, **kwargs, centre=CentreSettings(**values))

    for field, help_text in reversed(CENTRE_OPTIONS.items()):
        default = getattr(_C, field)
        low = 1 if field == "rules_interval_s" else 0
        kind = click.IntRange(min=low) if isinstance(default, int) else click.FloatRange(min=low)
        flag = "--" + field.replace("_", "-")
        wrapper = click.option(
            flag, field, default=default, show_default=True, type=kind, help=help_text
        )(wrapper)
    return wrapper


DASHBOARD_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "--users",
        {
            "type": click.Path(dir_okay=False, path_type=Path),
            "default": None,
            "help": "The dashboard's users file (`recdock-central user` writes it). "
            "Default: <data>/dashboard-users.toml.",
        },
    ),
    (
        "--dashboard-plain-http",
        {
            "is_flag": True,
            "help": "Lab only: session cookies without the Secure flag, for a dashboard reached "
            "over plain http. Behind TLS (a reverse proxy) leave it off.",
        },
    ),
    (
        "--session-hours",
        {
            "default": 8.0,
            "show_default": True,
            "type": click.FloatRange(min=0.1, max=24 * 30),
            "help": "A dashboard login lasts this long.",
        },
    ),
    (
        "--poll-seconds",
        {
            "default": DEFAULT_POLL_SECONDS,
            "show_default": True,
            "type": click.FloatRange(min=1, max=3600),
            "help": "How often an open dashboard page updates itself.",
        },
    ),
]


@dataclass(frozen=True)
class DashboardChoices:
    """The dashboard's options as given; :meth:`options` makes the web's
    :class:`~central.web.context.DashboardOptions` of them (importing the web only then)."""

    users_file: Path | None
    poll_seconds: float
    plain_http: bool
    session_seconds: int

    def options(self):  # -> central.web.context.DashboardOptions
        from central.web.board import Settings
        from central.web.context import DashboardOptions

        return DashboardOptions(
            users_file=self.users_file,
            settings=Settings(poll_seconds=self.poll_seconds),
            plain_http=self.plain_http,
            session_seconds=self.session_seconds,
        )


def dashboard_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the dashboard's options; the command gets one ``dashboard`` argument
    (:class:`DashboardChoices`)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        choices = DashboardChoices(
            users_file=kwargs.pop("users"),
            poll_seconds=kwargs.pop("poll_seconds"),
            plain_http=kwargs.pop("dashboard_plain_http"),
            session_seconds=int(kwargs.pop("session_hours") * 3600),
        )
        return command(*args, **kwargs, dashboard=choices)

    for flag, spec in reversed(DASHBOARD_OPTIONS):
        wrapper = click.option(flag, **spec)(wrapper)
    return wrapper


WORKER_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "--worker-group",
        {
            "default": None,
            "metavar": "NAME",
            "help": "Share the work with the other recdock-central workers of group NAME on the "
            "same data folder and broker: events through an MQTT 5 shared subscription, uploads "
            "resumable at any worker (docs/central.md, 'Several workers'). Unset: one process.",
        },
    ),
    (
        "--mqtt-client-id",
        {
            "default": "recdock-central",
            "show_default": True,
            "help": "MQTT client id, and so the broker session: each worker of a group needs its "
            "own.",
        },
    ),
    (
        "--upload-lease",
        {
            "default": 60.0,
            "show_default": True,
            "type": click.FloatRange(min=1),
            "help": "Seconds a request's lock on an upload lasts unless renewed while its body "
            "arrives: how long a worker killed mid-PATCH keeps that upload from any other.",
        },
    ),
]


@dataclass(frozen=True)
class WorkerChoices:
    """Who this worker is among several: its MQTT client id, its group (None: alone) and the
    upload lease."""

    client_id: str = "recdock-central"
    group: str | None = None
    upload_lease: float = 60.0


def worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the worker's options; the command gets one ``worker`` argument
    (:class:`WorkerChoices`)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        choices = WorkerChoices(
            client_id=kwargs.pop("mqtt_client_id"),
            group=kwargs.pop("worker_group"),
            upload_lease=kwargs.pop("upload_lease"),
        )
        return command(*args, **kwargs, worker=choices)

    for flag, spec in reversed(WORKER_OPTIONS):
        wrapper = click.option(flag, **spec)(wrapper)
    return wrapper
