"""Per-station bearer tokens for the central store.

The credentials file maps each station id to its token, in TOML::

    [stations]
    "ST-0001" = "long random token"

or JSON (``{"stations": {"ST-0001": "long random token"}}``). Under systemd, pass it with
``LoadCredential=central-tokens:/etc/recdock/central-tokens.toml``; the server then reads
``$CREDENTIALS_DIRECTORY/central-tokens`` when no file is named. Tokens are kept only as SHA-256
digests in memory and never logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from fastapi import HTTPException, Request

CREDENTIAL_NAME = "central-tokens"
STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_TOKEN_LENGTH = 16


class CredentialsError(Exception):
    """The credentials file is missing or malformed; the message says which and how to fix it."""


def read_credential(name: str) -> str | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` (systemd ``LoadCredential=``) without its trailing
    newline, or None when absent."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        return None
    try:
        return (Path(cred_dir) / name).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenAuth:
    """Maps a bearer token to its station id."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """``tokens`` maps token -> station id."""
        self._by_digest: dict[bytes, str] = {}
        for token, station in tokens.items():
            if len(token) < MIN_TOKEN_LENGTH:
                raise CredentialsError(
                    f"the token of station {station!r} is shorter than {MIN_TOKEN_LENGTH} "
                    "characters; generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
            if not STATION_ID.match(station):
                raise CredentialsError(
                    f"station id {station!r} must be 1-64 letters, digits, '.', '_' or '-'"
                )
            self._by_digest[_digest(token)] = station

    def station_for(self, token: str) -> str | None:
        return self._by_digest.get(_digest(token))

    def __len__(self) -> int:
        return len(self._by_digest)

    async def __call__(self, request: Request) -> str:
        """FastAPI dependency: the calling station's id, or 401."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        station = self.station_for(token.strip()) if scheme.lower() == "bearer" else None
        if station is None:
            raise HTTPException(
                status_code=401,
                detail="a valid station token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="recdock-central"'},
            )
        return station


def load_tokens(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Read a credentials file and return token -> station id.

    With no path, read ``$CREDENTIALS_DIRECTORY/central-tokens`` (systemd ``LoadCredential=``).
    """
    if path is None:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise CredentialsError(
                "no tokens file given and $CREDENTIALS_DIRECTORY is not set; pass --tokens FILE "
                f"or LoadCredential={CREDENTIAL_NAME}:FILE in the systemd unit"
            )
        path = Path(cred_dir) / CREDENTIAL_NAME
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the station tokens: {exc}") from exc
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise CredentialsError(f"{path}: not valid TOML or JSON: {exc}") from exc
    stations = data.get("stations")
    unknown = set(data) - {"stations"}
    if not isinstance(stations, dict) or unknown:
        raise CredentialsError(
            f"{path}: expected one table [stations] mapping station id = token"
            + (f"; unknown keys {sorted(unknown)}" if unknown else "")
        )
    tokens: dict[str, str] = {}
    for station, token in stations.items():
        if not isinstance(token, str):
            raise CredentialsError(f"{path}: the token of station {station!r} must be a string")
        if token in tokens:
            raise CredentialsError(
                f"{path}: stations {tokens[token]!r} and {station!r} share a token"
            )
        tokens[token] = station
    try:
        TokenAuth(tokens)  # validate lengths and station ids now, with the file named
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from exc
    return tokens
