"""The dashboard's command line: ``recdock-central user add/passwd/remove`` (the users file,
central/web/users.py). The server's dashboard options are in central/options.py, which loads
nothing of the web.

A password is asked for twice on a terminal, or read as one line from standard input with
``--password-stdin`` (never from the command line, where ``ps`` would show it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from central.web.users import ROLES, UserFile, UsersError


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
