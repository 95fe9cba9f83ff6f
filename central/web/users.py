"""The dashboard's users: a TOML file of names, roles and argon2 password hashes.

The file (``--users FILE``, default ``<data>/dashboard-users.toml``) is written only by
``recdock-central user add/passwd/remove`` and read again by the server whenever it changes::

    [users.alice]
    role = "supervisor"
    hash = "$argon2id$v=19$m=65536,t=3,p=4$..."

Roles, each allowed what the one before it is: ``viewer`` reads every page; ``supervisor``
also acknowledges and resolves faults; ``administrator`` also keeps the recorder register.
Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
setting); a hash made with weaker parameters is replaced on the next good login.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("viewer", "supervisor", "administrator")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD = 10


class UsersError(Exception):
    """The users file is unreadable or malformed, or a change to it is refused."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str

    def may(self, role: str) -> bool:
        """Whether this user holds ``role`` or one above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


class UserFile:
    """The users file; :meth:`users` reads it again when its modification time changed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.hasher = PasswordHasher()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        # verified against for an unknown name, so a wrong name costs what a wrong password does
        self._dummy = self.hasher.hash("no such user: the same work as a real one")

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users, self._stamp = read_users(self.path), stamp
        return self._users

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; None otherwise (same work either way)."""
        user = self.get(name)
        try:
            self.hasher.verify(user.hash if user else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is not None and self.hasher.check_needs_rehash(user.hash):
            self.set_password(name, password)
        return user

    def add(self, name: str, role: str, password: str) -> None:
        users = dict(self.users())
        if name in users:
            raise UsersError(f"{self.path}: user {name!r} exists; use passwd or remove")
        _check(name, role, password)
        users[name] = User(name, role, self.hasher.hash(password))
        self._write(users)

    def set_password(self, name: str, password: str, role: str | None = None) -> None:
        users = dict(self.users())
        if name not in users:
            raise UsersError(f"{self.path}: no user {name!r}; use add")
        new_role = role or users[name].role
        _check(name, new_role, password)
        users[name] = User(name, new_role, self.hasher.hash(password))
        self._write(users)

    def remove(self, name: str) -> None:
        users = dict(self.users())
        if users.pop(name, None) is None:
            raise UsersError(f"{self.path}: no user {name!r}")
        self._write(users)

    def _write(self, users: dict[str, User]) -> None:
        """Replace the file atomically, readable only by its owner."""
        lines = ["# recdock-central dashboard users: written by `recdock-central user`\n"]
        for user in sorted(users.values(), key=lambda u: u.name):
            lines.append(f"\n[users.{json.dumps(user.name)}]\n")
            lines.append(f"role = {json.dumps(user.role)}\nhash = {json.dumps(user.hash)}\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._stamp = None


def _check(name: str, role: str, password: str) -> None:
    if not NAME.match(name):
        raise UsersError(f"user name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    if role not in ROLES:
        raise UsersError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"the password is shorter than {MIN_PASSWORD} characters")


def read_users(path: Path) -> dict[str, User]:
    """Parse the users file; :class:`UsersError` names the file and what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsersError(f"{path}: cannot read the dashboard users: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsersError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("users", {})
    if set(data) - {"users"} or not isinstance(table, dict):
        raise UsersError(f"{path}: expected only [users.<name>] tables")
    users = {}
    for name, entry in table.items():
        if (
            not isinstance(entry, dict)
            or set(entry) != {"role", "hash"}
            or entry["role"] not in ROLES
            or not str(entry["hash"]).startswith("$argon2")
        ):
            raise UsersError(
                f"{path}: [users.{name}] needs role (one of {', '.join(ROLES)}) and an argon2 "
                "hash; manage it with `recdock-central user`"
            )
        users[name] = User(name, entry["role"], entry["hash"])
    return users
