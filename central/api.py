"""The central store's JSON API over its MQTT-fed catalog (the dashboard builds on it).

Routes (all JSON, all read-only)::

    GET /api/health                      liveness and counts; no station data, no token needed
    GET /api/stations                    stations by id: status, last seen, audit chain state
    GET /api/stations/{id}               one station
    GET /api/stations/{id}/bays          its bays
    GET /api/recorders[?station=]        recorder health, by station and serial
    GET /api/faults[?all=&station=&device=]  open faults with age_hours and overdue (24 h limit)
    GET /api/events[?station=&kind=]     newest events first
    GET /api/stations/{id}/chain         the head of the station's chain the centre holds; also
                                         for that station's own upload token
    GET /api/security-alerts[?station=]  unsigned, forged or unenrolled messages, newest first
    GET /api/overview                    worst first: faults against 24 h, stations offline,
                                         recorders overdue, late footage, health word counts
    GET /api/fleet/stations              stations with their health words (central/views.py)
    GET /api/fleet/recorders[?unit=&station=]  recorders by serial with their health words
    GET /api/fleet/recorders/{serial}    one recorder: its history (battery, clock drift),
                                         register entry and faults
    GET /api/register[?unit=]            the recorder register kept at the centre

**Paging.** Every list (all of the above but health, one station, its bays, its chain, the
overview and one recorder) answers one page: ``?limit=`` (1-1000, default 100) items from
``?offset=`` (default 0), in a stable order ending in a unique key, filtered and paged in SQL
(central/catalog/paging.py). The body stays a JSON array; the headers say where it goes on:
``Link`` (RFC 8288, ``rel="next"`` while more follow, ``rel="prev"`` past the first page) and,
except for the event and alert streams, ``X-Total-Count`` (the whole list's size with these
filters). An offset past the end answers an empty page with the total. A station's bays are
not paged: a station has a handful.

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

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from central import openapi as doc
from central import views
from central.auth import MIN_TOKEN_LENGTH, CredentialsError
from central.catalog import CentralCatalog
from central.catalog.paging import MAX_OFFSET
from central.consumer import MqttConsumer
from central.settings import CentreSettings

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


async def _settings(request: Request) -> CentreSettings:
    return getattr(request.app.state, "centre_settings", None) or CentreSettings()


Catalog = Annotated[CentralCatalog, Depends(_catalog)]
Settings = Annotated[CentreSettings, Depends(_settings)]
Consumer = Annotated[MqttConsumer | None, Depends(_consumer)]
READER = [Depends(_reader)]

PAGE_DEFAULT, PAGE_MAX = 100, 1000


class Page:
    """A list's page: ``limit`` items from ``offset`` in the list's stable order (filtered
    and paged in SQL, central/catalog/paging.py)."""

    def __init__(
        self,
        limit: int = Query(PAGE_DEFAULT, ge=1, le=PAGE_MAX, description="Most items returned"),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Items skipped, in the order"),
    ) -> None:
        self.limit, self.offset = limit, offset

    def answer(
        self, request: Request, response: Response, items: list[Any], total: int | None = None
    ) -> list[Any]:
        """``items``, with the headers that say where the list goes on: ``X-Total-Count``
        (when ``total`` is known) and ``Link`` (RFC 8288: ``next``, ``prev``)."""
        links = []
        more = len(items) == self.limit if total is None else self.offset + len(items) < total
        if more:
            after = request.url.include_query_params(offset=self.offset + len(items))
            links.append(f'<{after}>; rel="next"')
        if self.offset > 0:
            before = request.url.include_query_params(offset=max(0, self.offset - self.limit))
            links.append(f'<{before}>; rel="prev"')
        if total is not None:
            response.headers["X-Total-Count"] = str(total)
        if links:
            response.headers["Link"] = ", ".join(links)
        return items


Paged = Annotated[Page, Depends()]


@router.get("/health")
def health(catalog: Catalog, consumer: Consumer) -> dict[str, Any]:
    """Liveness of the catalog and the MQTT consumer (counts only)."""
    out: dict[str, Any] = {"ok": True, "catalog": catalog.counts()}
    if consumer is not None:
        out["mqtt"] = {
            "connected": consumer.connected,
            "subscribed": consumer.subscribed,
            "client_id": consumer.settings.client_id,
            "last_error": consumer.last_error,
            # this worker's own outcomes; "catalog" counts what every worker stored, once
            "messages": dict(consumer.stats),
        }
        out["ok"] = consumer.connected
    return out


@router.get("/stations", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def stations(
    catalog: Catalog, page: Paged, request: Request, response: Response
) -> list[dict[str, Any]]:
    """Stations by id: status, last seen, audit chain (ok / gap / broken)."""
    found = catalog.stations(limit=page.limit, offset=page.offset)
    return page.answer(request, response, found, catalog.total("stations"))


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


@router.get("/recorders", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def recorders(
    catalog: Catalog,
    page: Paged,
    request: Request,
    response: Response,
    station: str | None = Query(None, description="Only this station's recorders"),
) -> list[dict[str, Any]]:
    """Each recorder's last health report at each station, by station and serial."""
    found = catalog.recorders(station, limit=page.limit, offset=page.offset)
    return page.answer(request, response, found, catalog.total("recorders", station=station))


@router.get("/faults", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def faults(
    catalog: Catalog,
    settings: Settings,
    page: Paged,
    request: Request,
    response: Response,
    all: bool = Query(False, description="Include resolved faults"),  # noqa: A002
    station: str | None = Query(None, description="Only this station's faults"),
    device: str | None = Query(None, description="Only faults of this recorder (serial)"),
) -> list[dict[str, Any]]:
    """Open faults (and resolved ones with ``all``), oldest first, each with its lifecycle,
    evidence, age, band and whether it is past the 24-hour repair limit."""
    filters = {"include_resolved": all, "station": station, "device": device}
    found = catalog.faults(
        **filters, amber_hours=settings.amber_hours, limit=page.limit, offset=page.offset
    )
    return page.answer(request, response, found, catalog.total("faults", **filters))


@router.get("/overview", dependencies=READER, responses=doc.API_ERRORS)
def overview(catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """Worst first: open faults against the 24-hour limit, stations offline or silent,
    recorders overdue, late footage per unit, and how many stations and recorders have
    each health word."""
    return views.overview(catalog, settings)


@router.get("/fleet/stations", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def fleet_stations(
    catalog: Catalog, settings: Settings, page: Paged, request: Request, response: Response
) -> list[dict[str, Any]]:
    """Stations by id, each with its health word and the reasons for it (docs/faults.md)."""
    found = views.station_list(catalog, settings, limit=page.limit, offset=page.offset)
    return page.answer(request, response, found, views.station_total(catalog))


@router.get("/fleet/recorders", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def fleet_recorders(
    catalog: Catalog,
    settings: Settings,
    page: Paged,
    request: Request,
    response: Response,
    unit: str | None = Query(None, description="Only this unit's recorders"),
    station: str | None = Query(None, description="Only recorders last docked here"),
) -> list[dict[str, Any]]:
    """Recorders reported or registered, by serial, with their health words (docs/faults.md)."""
    filters = {"unit": unit, "station": station}
    found = views.recorder_list(catalog, settings, **filters, limit=page.limit, offset=page.offset)
    return page.answer(request, response, found, views.recorder_total(catalog, **filters))


@router.get(
    "/fleet/recorders/{serial}",
    dependencies=READER,
    responses={**doc.API_ERRORS, **doc.API_NOT_FOUND},
)
def fleet_recorder(serial: str, catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """One recorder: its row, its history (battery and clock offset, drift a day), its
    register entry and its faults."""
    found = views.recorder_history(catalog, serial, settings)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no recorder {serial!r} known")
    return found


@router.get("/register", dependencies=READER, responses={**doc.PAGED, **doc.API_ERRORS})
def register_entries(
    catalog: Catalog,
    page: Paged,
    request: Request,
    response: Response,
    unit: str | None = Query(None, description="Only this unit's entries"),
) -> list[dict[str, Any]]:
    """The recorder register kept at the centre, by serial."""
    found = views.register_entries(catalog, unit, limit=page.limit, offset=page.offset)
    return page.answer(request, response, found, views.register_total(catalog, unit))


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
        **doc.PAGED_STREAM,
        401: {"description": "No reader token"},
        503: {"description": "The server has no reader tokens"},
    },
)
def security_alerts(
    catalog: Catalog,
    page: Paged,
    request: Request,
    response: Response,
    station: str | None = Query(None, description="Only this station's alerts"),
) -> list[dict[str, Any]]:
    """Messages not taken as a station's (unenrolled, unsigned, forged), newest first."""
    return page.answer(request, response, catalog.alerts(station, page.limit, page.offset))


@router.get("/events", dependencies=READER, responses={**doc.PAGED_STREAM, **doc.API_ERRORS})
def events(
    catalog: Catalog,
    page: Paged,
    request: Request,
    response: Response,
    station: str | None = Query(None, description="Only this station's events"),
    kind: str | None = Query(None, description="Only events of this kind (e.g. fault.open)"),
) -> list[dict[str, Any]]:
    """Events newest first (as they arrived). No total: the stream grows while it is read;
    ``Link: rel="next"`` while a page is full."""
    found = catalog.events(station, page.limit, page.offset, kind=kind)
    return page.answer(request, response, found)
