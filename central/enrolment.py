"""The enrolment register: each enrolled station's Ed25519 public key, beside the tokens file.

The central store keeps a station's messages only when they are signed by the key enrolled
for that station (rule 9, docs/architecture.md). The register is a TOML file::

    [stations]
    "ST-0001" = "q2v4...=="      # base64 of the 32 raw bytes, as `recdock enrol` prints it

``recdock-central enrol STATION --public-key KEY --keys FILE`` adds or replaces a station's key
(:func:`enrol`; replaces the file atomically: a new file is mode 0600, an existing one keeps its
mode and owner); the file may also be edited by hand.
The consumer reads it with :class:`StationKeys`, which notices a changed file (at most one
``stat`` a second), so enrolling needs no restart. Without ``--station-keys`` the server reads
``$CREDENTIALS_DIRECTORY/central-station-keys`` (then a change needs a restart, since systemd
copies credentials at start). Public keys are not secrets, but whoever can write this file can
enrol a key: keep it writable by the administrator only.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
import tomllib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from central.auth import STATION_ID, CredentialsError
from sync.wire.signing import parse_public_key, public_key_raw

logger = logging.getLogger(__name__)

CREDENTIAL_NAME = "central-station-keys"
RESERVED = {"recdock-central"}  # the consumer's own broker identity is never a station
_LINE = re.compile(r'^\s*"?(?P<station>[A-Za-z0-9._-]+)"?\s*=')


def _parse(path: Path, text: str) -> dict[str, str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsError(f"{path}: not valid TOML: {exc}") from exc
    stations = data.get("stations", {})
    if not isinstance(stations, dict) or set(data) - {"stations"}:
        raise CredentialsError(f"{path}: expected one table [stations] mapping station id = key")
    keys: dict[str, str] = {}
    for station, key in stations.items():
        if not STATION_ID.match(station) or station in RESERVED:
            raise CredentialsError(f"{path}: {station!r} is not a station id")
        try:
            parse_public_key(str(key))
        except ValueError as exc:
            raise CredentialsError(f"{path}: the key of station {station!r}: {exc}") from exc
        keys[station] = str(key).strip()
    return keys


def load_station_keys(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Station id -> public key text, from ``path`` or ``$CREDENTIALS_DIRECTORY``."""
    resolved = resolve_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"{resolved}: cannot read the enrolment register: {exc}") from exc
    return _parse(resolved, text)


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    if path is not None:
        return Path(path)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        raise CredentialsError(
            "the MQTT consumer needs the enrolment register: pass --station-keys FILE or "
            f"LoadCredential={CREDENTIAL_NAME}:FILE (docs/central.md, enrolment)"
        )
    return Path(cred_dir) / CREDENTIAL_NAME


class SodiumKey:
    """A station's enrolled Ed25519 public key, verified with libsodium (PyNaCl): about half
    the instructions of OpenSSL's verification through ``cryptography`` (docs/performance.md),
    and the centre verifies every message. The station signs with ``cryptography``; Ed25519
    is one algorithm (RFC 8032), so either library verifies what the other signed.
    libsodium is the stricter of the two (it also refuses a key or a signature point of small
    order, which no honestly made key or signature has)."""

    __slots__ = ("_key",)

    def __init__(self, text: str) -> None:
        self._key = VerifyKey(public_key_raw(text))

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raises ``InvalidSignature`` (as ``cryptography``'s key does) unless ``signature``
        is this key's over ``data``."""
        try:
            self._key.verify(data, signature)
        except (BadSignatureError, ValueError, TypeError):
            raise InvalidSignature from None


class StationKeys:
    """The enrolled keys, re-read when the file changes (checked at most once a second)."""

    def __init__(self, source: dict[str, str] | str | os.PathLike[str] | None) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        if isinstance(source, dict):
            self._keys = {s: SodiumKey(k) for s, k in source.items()}
        else:
            self._path = resolve_path(source)
            self._keys = {}
            self._reload()

    def _reload(self) -> None:
        assert self._path is not None
        st = self._path.stat()
        keys = load_station_keys(self._path)
        self._keys = {s: SodiumKey(k) for s, k in keys.items()}
        self._stamp = (st.st_mtime_ns, st.st_size)
        logger.info("enrolment register %s: %d stations", self._path, len(self._keys))

    def key_for(self, station: str) -> SodiumKey | None:
        """The station's enrolled public key, or None when it is not enrolled."""
        with self._lock:
            self._maybe_reload()
            return self._keys.get(station)

    def _maybe_reload(self) -> None:
        if self._path is None or time.monotonic() - self._checked < 1.0:
            return
        self._checked = time.monotonic()
        try:
            st = self._path.stat()
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self._reload()
        except (OSError, CredentialsError):
            # a file being edited, or broken: keep the keys we have, say so
            logger.exception("enrolment register %s: not re-read; the keys stay", self._path)

    def __len__(self) -> int:
        return len(self._keys)


def enrol(path: Path, station: str, public_key: str) -> str | None:
    """Add or replace ``station``'s key in the register at ``path`` (made if missing).
    Returns the key it replaced, if any. The file is replaced atomically, mode 0600."""
    if not STATION_ID.match(station) or station in RESERVED:
        raise CredentialsError(f"{station!r} is not a station id (1-64 of A-Z a-z 0-9 . _ -)")
    parse_public_key(public_key)  # ValueError says what is wrong
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    old = _parse(path, text).get(station)
    lines = [ln for ln in text.splitlines() if not _names(ln, station)]
    if not any(ln.strip() == "[stations]" for ln in lines):
        lines = ["# recdock-central: enrolled stations' Ed25519 public keys", "[stations]", *lines]
    lines.append(f'"{station}" = "{public_key.strip()}"')
    new_text = "\n".join(lines) + "\n"
    _parse(path, new_text)  # never write a register the server would refuse
    _write_atomic(path, new_text)
    return old


def _names(line: str, station: str) -> bool:
    match = _LINE.match(line)
    return match is not None and match["station"] == station


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (temp file, fsync, rename). A new file is 0600; an
    existing one keeps its mode and owner, so the server's own user still reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat() if path.exists() else None
    temp = path.with_name(f".{path.name}.new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, old.st_uid, old.st_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
