"""The central store's JSON API over its MQTT-fed catalog (the dashboard builds on it).

Routes (all JSON, all read-only)::

    GET /api/health                      liveness and counts; no station data, no token needed
    GET /api/stations                    every station: status, last seen, audit chain state
    GET /api/stations/{id}               one station
    GET /api/stations/{id}/bays          its bays
    GET /api/recorders[?station=]        recorder health
    GET /api/faults[?all=true]           open faults with age_hours and overdue (24 h limit)
    GET /api/events[?station=&limit=]    newest events first
    GET /api/stations/{id}/chain         the head of the station's chain the centre holds; also
                                         for that station's own upload token
    GET /api/security-alerts[?station=&limit=]  unsigned, forged or unenrolled messages

Read access needs a **reader token** (``Authorization: Bearer <token>``), kept apart from the
stations' upload tokens: a station token is refused here, so a station cannot read what other
stations report. Reader tokens live in their own credentials file, TOML::

    [readers]
    supervisor = "long random token"

passed with ``--api-tokens FILE`` or as the systemd credential ``central-api-tokens``
(``LoadCredential=central-api-tokens:/etc/recdock/api-tokens.toml``). With no reader tokens the
data routes answer 503 and say how to configure them.

The routes are module-level handlers on :data:`router`; :func:`include_api` puts what they read
in the app's state (the catalog, the reader tokens and the consumer).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import tomllib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from central import openapi as doc
from central.auth import MIN_TOKEN_LENGTH, CredentialsError
from central.catalog import CentralCatalog
from central.consumer import MqttConsumer

API_CREDENTIAL_NAME = "central-api-tokens"


class ReaderAuth:
    """Bearer tokens allowed to read the API (reader name per token, SHA-256 in memory)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """``tokens`` maps token -> reader name."""
        self._by_digest: dict[bytes, str] = {}
        for token, name in tokens.items():
            if len(token) < MIN_TOKEN_LENGTH:
                raise CredentialsError(
                    f"the API token of reader {name!r} is shorter than {MIN_TOKEN_LENGTH} "
                    "characters"
                )
            self._by_digest[hashlib.sha256(token.encode()).digest()] = name

    def __len__(self) -> int:
        return len(self._by_digest)

    def reader_for(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode()).digest()
        for known, name in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    async def __call__(self, request: Request) -> str:
        if not self._by_digest:
            raise HTTPException(
                status_code=503,
                detail="the JSON API has no reader tokens: start recdock-central with "
                "--api-tokens FILE ([readers] name = token)",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        reader = self.reader_for(token.strip()) if scheme.lower() == "bearer" else None
        if reader is None:
            raise HTTPException(
                status_code=401,
                detail="a reader token is required (Authorization: Bearer <token>); "
                "station upload tokens cannot read the API",
                headers={"WWW-Authenticate": 'Bearer realm="recdock-central-api"'},
            )
        return reader


def load_reader_tokens(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Read ``[readers] name = token`` and return token -> name.

    With no path: ``$CREDENTIALS_DIRECTORY/central-api-tokens`` when present, else no tokens.
    """
    if path is None:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(cred_dir) / API_CREDENTIAL_NAME if cred_dir else None
        if candidate is None or not candidate.is_file():
            return {}
        path = candidate
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the API reader tokens: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsError(f"{path}: not valid TOML: {exc}") from exc
    readers = data.get("readers")
    if not isinstance(readers, dict) or set(data) - {"readers"}:
        raise CredentialsError(f"{path}: expected one table [readers] mapping name = token")
    tokens: dict[str, str] = {}
    for name, token in readers.items():
        if not isinstance(token, str):
            raise CredentialsError(f"{path}: the token of reader {name!r} must be a string")
        tokens[token] = name
    try:
        ReaderAuth(tokens)
    except CredentialsError as exc:
        raise CredentialsError(f"{path}: {exc}") from exc
    return tokens


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's MQTT consumer (``app.state.consumer``, when there is one) while the app
    runs; at the end, stop it and close the catalog's connections."""
    catalog: CentralCatalog = app.state.catalog
    consumer: MqttConsumer | None = app.state.consumer
    if consumer is not None:
        consumer.start()
    try:
        yield
    finally:
        if consumer is not None:
            await run_in_threadpool(consumer.stop)
        await run_in_threadpool(catalog.close)


router = APIRouter(prefix="/api", tags=["catalog"], lifespan=_lifespan)


def include_api(
    app: FastAPI,
    catalog: CentralCatalog,
    readers: ReaderAuth,
    *,
    consumer: MqttConsumer | None = None,
) -> None:
    """Serve ``catalog`` under ``/api`` to ``readers``. ``consumer`` (optional) is started and
    stopped with the app. They are ``app.state.catalog``, ``.readers`` and ``.consumer``."""
    app.state.catalog = catalog
    app.state.readers = readers
    app.state.consumer = consumer
    app.include_router(router)


async def _catalog(request: Request) -> CentralCatalog:
    return request.app.state.catalog


async def _consumer(request: Request) -> MqttConsumer | None:
    return request.app.state.consumer


async def _reader(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(doc.READER_TOKEN)]
) -> str:
    """The reader's name, from the app's reader tokens (or their 401 or 503); the bearer
    scheme is declared for the OpenAPI document."""
    return await request.app.state.readers(request)


Catalog = Annotated[CentralCatalog, Depends(_catalog)]
Consumer = Annotated[MqttConsumer | None, Depends(_consumer)]
READER = [Depends(_reader)]


@router.get("/health")
def health(catalog: Catalog, consumer: Consumer) -> dict[str, Any]:
    """Liveness of the catalog and the MQTT consumer (counts only)."""
    out: dict[str, Any] = {"ok": True, "catalog": catalog.counts()}
    if consumer is not None:
        out["mqtt"] = {
            "connected": consumer.connected,
            "last_error": consumer.last_error,
            "messages": dict(consumer.stats),
        }
        out["ok"] = consumer.connected
    return out


@router.get("/stations", dependencies=READER, responses=doc.API_ERRORS)
def stations(catalog: Catalog) -> list[dict[str, Any]]:
    """Every station: status, last seen, audit chain (ok / gap / broken)."""
    return catalog.stations()


@router.get(
    "/stations/{station}", dependencies=READER, responses={**doc.API_ERRORS, **doc.API_NOT_FOUND}
)
def station(station: str, catalog: Catalog) -> dict[str, Any]:
    found = catalog.station(station)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no station {station!r} reported yet")
    return found


@router.get(
    "/stations/{station}/bays",
    dependencies=READER,
    responses={**doc.API_ERRORS, **doc.API_NOT_FOUND},
)
def bays(station: str, catalog: Catalog) -> list[dict[str, Any]]:
    if catalog.station(station) is None:
        raise HTTPException(status_code=404, detail=f"no station {station!r} reported yet")
    return catalog.bays(station)


@router.get("/recorders", dependencies=READER, responses=doc.API_ERRORS)
def recorders(catalog: Catalog, station: str | None = None) -> list[dict[str, Any]]:
    return catalog.recorders(station)


@router.get("/faults", dependencies=READER, responses=doc.API_ERRORS)
def faults(
    catalog: Catalog,
    all: bool = Query(False, description="Include resolved faults"),  # noqa: A002
) -> list[dict[str, Any]]:
    """Open faults (and resolved ones with ``all``), each with its age and whether it is
    past the 24-hour repair limit."""
    return catalog.faults(include_resolved=all)


async def _reader_or_station(request: Request, station: str) -> str:
    """A reader, or the station ``station`` itself with its upload token (to compare its chain
    with what the centre holds: ``recdock verify --against-central``)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    readers: ReaderAuth = request.app.state.readers
    if token and readers.reader_for(token):
        return "reader"
    auth = getattr(request.app.state, "auth", None)
    own = auth.station_for(token) if auth is not None and token else None
    if own is None:
        raise HTTPException(
            status_code=401,
            detail="a reader token, or this station's upload token, is required",
            headers={"WWW-Authenticate": 'Bearer realm="recdock-central-api"'},
        )
    if own != station:
        raise HTTPException(status_code=403, detail="a station reads only its own chain")
    return own


_CHAIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No reader token and no station token"},
    403: {"description": "Another station's upload token"},
    404: {"description": "The station has not reported"},
}


@router.get(
    "/stations/{station}/chain",
    dependencies=[Depends(_reader_or_station)],
    responses=_CHAIN_RESPONSES,
)
def chain(station: str, catalog: Catalog) -> dict[str, Any]:
    """The head of the station's audit chain the centre holds (seq and hash of the part
    complete from the baseline), the highest seq received, its state and re-baselines."""
    found = catalog.chain(station)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no station {station!r} reported yet")
    return found


@router.get(
    "/security-alerts",
    dependencies=READER,
    responses={
        401: {"description": "No reader token"},
        503: {"description": "The server has no reader tokens"},
    },
)
def security_alerts(
    catalog: Catalog, station: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Messages not taken as a station's (unenrolled, unsigned, forged), newest first."""
    return catalog.alerts(station, limit)


@router.get("/events", dependencies=READER, responses=doc.API_ERRORS)
def events(
    catalog: Catalog, station: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return catalog.events(station, limit)
