"""The reference central store: ``create_app()`` (``recdock-central`` runs it: central/command.py).

The app's own lifespan resumes the verification of uploads completed before a restart and
expires abandoned uploads while it runs; the JSON API's router brings the MQTT consumer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from central.access_api import router as access_router
from central.actions import CentralContext
from central.api import ReaderAuth, include_api, load_reader_tokens
from central.auth import TokenAuth, load_tokens
from central.catalog import CentralCatalog, db
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from central.folder import private_file
from central.holds_api import router as holds_router
from central.limits import DEFAULT_EXPIRY, DEFAULT_MAX_SIZE, UploadLimits
from central.openapi import add_common_answers
from central.report_api import router as report_router
from central.serve import (
    DEFAULT_MAX_REQUESTS,
    GateMiddleware,
    NulMiddleware,
    RequestGate,
)
from central.settings import CentreSettings
from central.signing_key import default_path, load_centre_key
from central.tus import include_tus
from central.upload import UploadStore
from central.web import DashboardOptions, include_dashboard

logger = logging.getLogger(__name__)

DEFAULT_EXPIRY_INTERVAL = 3600.0


def create_app(
    data_dir: str | os.PathLike[str],
    tokens: Mapping[str, str] | str | os.PathLike[str] | None = None,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    upload_expiry: float = DEFAULT_EXPIRY,
    expiry_interval: float = DEFAULT_EXPIRY_INTERVAL,
    verify_workers: int = 2,
    prefix: str = "/files",
    database: str | os.PathLike[str] | None = None,
    mqtt: ConsumerSettings | None = None,
    api_tokens: Mapping[str, str] | str | os.PathLike[str] | None = None,
    limits: UploadLimits | None = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    api_docs: bool = False,
    station_keys: Mapping[str, str] | str | os.PathLike[str] | None = None,
    dashboard: DashboardOptions | None = None,
    signing_key: Any = None,
    centre: CentreSettings | None = None,
) -> FastAPI:
    """Build the central store's app.

    ``tokens`` is a mapping token -> station id, a credentials file (see :mod:`central.auth`), or
    None for ``$CREDENTIALS_DIRECTORY/central-tokens``. The upload store is
    ``app.state.uploads``, the station authentication dependency ``app.state.auth``.

    The MQTT-fed catalog (``database``: a path or URL, :mod:`central.catalog.db`; default
    ``<data_dir>/central-catalog.db``) is ``app.state.catalog`` and is served read-only under
    ``/api`` to holders of a reader token (``api_tokens``: token -> reader name, a ``[readers]``
    file, or None for ``$CREDENTIALS_DIRECTORY/central-api-tokens``; see :mod:`central.api`). With
    ``mqtt`` set, an :class:`~central.consumer.MqttConsumer` runs with the app and fills the catalog
    with what enrolled stations signed: ``station_keys`` is the enrolment register (station id ->
    public key, a register file, or None for ``$CREDENTIALS_DIRECTORY/central-station-keys``; see
    :mod:`central.enrolment`); ``signing_key`` signs its commands (:func:`_signing_key`); ``centre``
    holds the thresholds of the health words and of the rules run periodically. The dashboard
    (:mod:`central.web`; ``dashboard``) is at ``/``. ``limits`` bound what each station may announce
    and store (:mod:`central.limits`); ``max_requests`` the HTTP requests inside the app at once
    (``app.state.gate``: one more is answered 429). ``/openapi.json``, ``/docs``, ``/redoc`` are
    served only with ``api_docs``."""
    token_map = tokens if isinstance(tokens, Mapping) else load_tokens(tokens)
    auth = TokenAuth(token_map)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    catalog = _open_catalog(database or data_dir / "central-catalog.db")  # receipts go with it
    store = UploadStore(data_dir, max_size=max_size, workers=verify_workers, limits=limits,
                        database=catalog.database)  # fmt: skip
    app = _bare_app(api_docs=api_docs, max_requests=max_requests)
    app.state.uploads = store
    app.state.auth = auth
    app.state.upload_expiry = upload_expiry
    app.state.expiry_interval = expiry_interval
    include_tus(app, store, prefix=prefix)
    readers = ReaderAuth(
        api_tokens if isinstance(api_tokens, Mapping) else load_reader_tokens(api_tokens)
    )
    app.state.centre_settings = centre or CentreSettings()
    _include_api(app, catalog, readers, _consumer(catalog, mqtt, station_keys, signing_key))
    include_dashboard(app, catalog, data_dir, dashboard)
    logger.info("central store in %s for %d stations", data_dir, len(auth))
    return app


def _open_catalog(database: str | os.PathLike[str]) -> CentralCatalog:
    """The central catalog in ``database``; a SQLite file in a folder and a file only its
    owner can read."""
    found = db.parse(database)
    logger.info("central catalog: %s", found)  # a URL's password is never shown
    if found.path is None:
        return CentralCatalog(found)
    found.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return CentralCatalog(private_file(found.path))


def _consumer(
    catalog: CentralCatalog,
    mqtt: ConsumerSettings | None,
    station_keys: Mapping[str, str] | str | os.PathLike[str] | None,
    signing_key: Any,
) -> MqttConsumer | None:
    """The MQTT consumer, fed by the stations enrolled in ``station_keys``; None without MQTT."""
    if mqtt is None:
        return None
    keys = StationKeys(dict(station_keys) if isinstance(station_keys, Mapping) else station_keys)
    return MqttConsumer(catalog, mqtt, keys=keys, signing_key=_signing_key(signing_key))


def _include_api(
    app: FastAPI, catalog: CentralCatalog, readers: ReaderAuth, consumer: MqttConsumer | None
) -> None:
    """The JSON API with the consumer, and ``app.state.actions``: what people's decisions go
    through (central/actions.py), the dashboard's among them; their commands leave through
    the consumer's publisher."""
    include_api(app, catalog, readers, consumer=consumer)
    app.include_router(holds_router)
    app.include_router(access_router)
    app.include_router(report_router)
    app.state.actions = CentralContext(catalog, consumer.commands if consumer else None)


def _signing_key(source: Any) -> Ed25519PrivateKey | None:
    """The centre's key (it signs the commands to stations, :mod:`central.commands`): given,
    read from its PEM file, or ``$CREDENTIALS_DIRECTORY/central-signing-key``; else None."""
    if source is None:
        source = default_path()
        if source is None:
            return None
    if isinstance(source, Ed25519PrivateKey):
        return source
    return load_centre_key(Path(source))


def _bare_app(*, api_docs: bool, max_requests: int) -> FastAPI:
    """The app before its routes: the lifespan, the gate on requests in flight, and the API
    documentation only when asked for."""
    app = FastAPI(
        title="recdock central store",
        lifespan=_lifespan,
        **({} if api_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}),
    )
    app.state.gate = RequestGate(max_requests)
    app.add_middleware(NulMiddleware)
    app.add_middleware(GateMiddleware, gate=app.state.gate)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_common_answers(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _expire_periodically(store: UploadStore, older_than: float, interval: float) -> None:
    """Delete the unfinished uploads untouched for ``older_than`` seconds, every ``interval``."""
    while True:
        try:
            await asyncio.to_thread(store.expire_uploads, older_than)
        except Exception:  # the clean-up must keep running whatever one round met
            logger.exception("expiring abandoned uploads in %s failed", store.uploads_dir)
        await asyncio.sleep(interval)


async def _rules_periodically(app: FastAPI) -> None:
    """Evaluate the centre's own fault rules (central/rules.py) and send stations the register
    entries they lack (central/actions.py) and the active centre holds on recorders and officers
    (central/hold_actions.py), every ``rules_interval_s`` seconds."""
    from central.actions import push_register
    from central.hold_actions import push_holds
    from central.rules import evaluate

    settings: CentreSettings = app.state.centre_settings
    while True:
        try:
            await asyncio.to_thread(evaluate, app.state.catalog, settings)
            await asyncio.to_thread(push_register, app.state.actions)
            await asyncio.to_thread(push_holds, app.state.actions)
        except Exception:  # the rules must keep running whatever one round met
            logger.exception("evaluating the centre's fault rules failed; next round follows")
        await asyncio.sleep(settings.rules_interval_s)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Verify the uploads completed before a restart and expire abandoned ones while the app
    runs (``app.state.upload_expiry``, every ``app.state.expiry_interval`` seconds), and
    evaluate the centre's fault rules; at the end, stop both and wait for the verifications
    under way."""
    store: UploadStore = app.state.uploads
    pending = await asyncio.to_thread(store.resume_pending)
    if pending:
        logger.info("verifying %d uploads completed before the restart", pending)
    tasks = [
        asyncio.create_task(
            _expire_periodically(store, app.state.upload_expiry, app.state.expiry_interval),
            name="expire-uploads",
        ),
        asyncio.create_task(_rules_periodically(app), name="rules"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(store.close)
