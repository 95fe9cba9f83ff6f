"""The dashboard's sessions, CSRF tokens and the login rate limit.

A session is a cookie signed with the dashboard's secret (itsdangerous, HMAC-SHA1 over a
key derived from the secret; timestamped, so it expires after ``max_age`` seconds): the user's
name, a fingerprint of their password hash (a new password or a removed user ends every
session at once) and the CSRF token. The user's role is read from the users file on every
request, never from the cookie. The cookie is ``HttpOnly``, ``SameSite=Strict`` and ``Secure``
unless the server runs with the lab option ``--dashboard-plain-http``.

CSRF: a synchronizer token kept inside the signed session (an anonymous session carries one
too, for the login form), written into every form as a hidden field and compared in constant
time on every POST. It cannot be forged without the secret, and a page of another site can
neither read it nor send the Strict cookie along.

The secret is ``<data>/dashboard-secret`` (32 random bytes, made on first start, 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "recdock_session"
DEFAULT_MAX_AGE = 8 * 3600


@dataclass(frozen=True)
class Session:
    user: str | None  # None: anonymous (carries only the login form's CSRF token)
    csrf: str
    pw: str = ""  # fingerprint of the user's password hash when the session was issued


def load_secret(path: Path) -> bytes:
    """The signing secret in ``path``, made (32 random bytes, 0600) when missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ValueError(f"{path}: the dashboard secret is shorter than 32 bytes") from None
        return secret
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
        f.flush()
        os.fsync(f.fileno())
    return path.read_bytes()


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Sessions:
    """Issues and reads session cookies."""

    def __init__(self, secret: bytes, *, max_age: int = DEFAULT_MAX_AGE, secure: bool = True):
        self.max_age = max_age
        self.secure = secure
        self._signer = URLSafeTimedSerializer(secret, salt="recdock-dashboard-session")

    def new(self, user: str | None = None, password_hash: str = "") -> Session:
        pw = fingerprint(password_hash) if user else ""
        return Session(user=user, csrf=secrets.token_urlsafe(32), pw=pw)

    def dump(self, session: Session) -> str:
        return self._signer.dumps({"u": session.user, "c": session.csrf, "p": session.pw})

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``; None when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(user=data.get("u"), csrf=data["c"], pw=data.get("p") or "")

    def cookie_options(self) -> dict[str, object]:
        return {
            "max_age": self.max_age,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
            "path": "/",
        }


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's ``token`` is its session's CSRF token."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


class LoginLimiter:
    """At most ``failures`` failed logins per client address and per user name in ``window``
    seconds; past that, logins from it (or for it) wait until the oldest failure ages out."""

    def __init__(self, failures: int = 5, window: float = 300.0) -> None:
        self.failures = failures
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str, now: float | None = None) -> float:
        """Seconds to wait before another try for any of ``keys``; 0: go ahead."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.failures:
                wait = max(wait, q[0] + self.window - now)
        return wait

    def failed(self, *keys: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._recent(key, now).append(now)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._seen.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q and len(self._seen) > 10_000:  # bounded memory under a spray of names
            self._seen.pop(key, None)
            q = self._seen.setdefault(key, deque())
        return q
