"""The dashboard's command line: ``recdock-central``'s dashboard options (its thresholds are
the centre's: ``--amber-hours`` and the rest, central/options.py), and
``recdock-central user add/passwd/remove`` (the users file, central/web/users.py).

A password is asked for twice on a terminal, or read as one line from standard input with
``--password-stdin`` (never from the command line, where ``ps`` would show it).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from central.web.board import Settings
from central.web.context import DashboardOptions
from central.web.users import ROLES, UserFile, UsersError

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
            "default": Settings().poll_seconds,
            "show_default": True,
            "type": click.FloatRange(min=1, max=3600),
            "help": "How often an open dashboard page updates itself.",
        },
    ),
]


def dashboard_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the dashboard's options; the command gets one ``dashboard`` argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = Settings(poll_seconds=kwargs.pop("poll_seconds"))
        options = DashboardOptions(
            users_file=kwargs.pop("users"),
            settings=settings,
            plain_http=kwargs.pop("dashboard_plain_http"),
            session_seconds=int(kwargs.pop("session_hours") * 3600),
        )
        return command(*args, **kwargs, dashboard=options)

    for flag, spec in reversed(DASHBOARD_OPTIONS):
        wrapper = click.option(flag, **spec)(wrapper)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def user() -> None:
    """The dashboard's users: add, change a password or role, remove."""


_users_option = click.option(
    "--users",
    "users_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The users file the server reads (--users; <data>/dashboard-users.toml by default).",
)
_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password as one line from standard input instead of asking.",
)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action: Callable[[], None], done: str) -> None:
    try:
        action()
    except UsersError as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(1)
    click.echo(done)


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the user may do.")
@_users_option
@_stdin_option
def add(name: str, role: str, users_file: Path, password_stdin: bool) -> None:
    """Add NAME with ROLE and a password (hashed with argon2id)."""
    password = _password(password_stdin)
    _run(lambda: UserFile(users_file).add(name, role, password), f"added {name} ({role})")


@user.command("passwd")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default=None, help="A new role, if any.")
@_users_option
@_stdin_option
def passwd(name: str, role: str | None, users_file: Path, password_stdin: bool) -> None:
    """Give NAME a new password (and role); their open sessions end."""
    password = _password(password_stdin)
    files = UserFile(users_file)
    _run(lambda: files.set_password(name, password, role), f"changed {name}")


@user.command("remove")
@click.argument("name")
@_users_option
def remove(name: str, users_file: Path) -> None:
    """Remove NAME; their open sessions end."""
    _run(lambda: UserFile(users_file).remove(name), f"removed {name}")
