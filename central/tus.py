"""The central store's tus 1.0 endpoint over HTTP (core + creation + termination).

The routes are module-level handlers on :data:`router`; what they share lives in the app's
state: the upload store (:mod:`central.upload`) with a lock per upload and the waits
(:class:`TusEndpoint`, ``app.state.tus``) and the station authentication (``app.state.auth``).
:func:`include_tus` sets it up.

Rules this module keeps:

* An ``Upload-Offset`` is acknowledged only after the bytes before it are fsynced and the
  store has saved the upload's record of that offset (:meth:`~central.upload.UploadStore.save`).
  What arrived before a client went away mid-body is kept.
* ``GET <upload>/receipt`` answers 202 while verifying, 200 with the receipt, 460 with a JSON
  reason on a hash mismatch. The last ``PATCH`` and a ``HEAD`` of a complete upload carry an
  ``Upload-Receipt`` header with that URL.
* A creation whose ``sha256`` (and size, and SM3 when given) the same station already uploaded is
  answered ``201`` with ``Upload-Offset`` equal to ``Upload-Length`` and an ``Upload-Receipt``:
  nothing is re-sent. Another station's uploads never answer it.
* A station sees only its own uploads and receipts; there is no route that reads stored media, and
  ``DELETE`` only terminates an unfinished upload.
* A ``PATCH`` takes its upload's lease (:meth:`~central.upload.UploadStore.begin_write`) before
  it reads its record, renews it while the body arrives and records the offset only while it
  still holds it; one that comes while another request (of any worker on the data folder)
  holds it is answered 423 with ``Retry-After``, one that comes while expiry holds it 404. The
  lease, not this process's lock, keeps two workers from writing one upload; a worker killed
  mid-``PATCH`` holds its uploads only until the lease runs out.
* No handler reads SQLite or a file on the event loop (``run_in_threadpool``): a locked database
  holds up only the requests that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from central import openapi as doc
from central.limits import LimitExceeded, UploadLimits, check_metadata
from central.upload import HEX64, UploadBusy, UploadInfo, UploadStore
from sync.wire.tusmeta import TUS_VERSION, ascii_int, decode_metadata, encode_metadata

logger = logging.getLogger(__name__)

TUS_EXTENSIONS = "creation,termination"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
STATUS_HASH_MISMATCH = 460
_WRITE_BATCH = 1024 * 1024

router = APIRouter(tags=["tus"])


@dataclass
class TusEndpoint:
    """What the tus routes of one app share (``app.state.tus``)."""

    store: UploadStore
    receipt_wait: float = 2.0  # seconds a receipt request waits for verification
    lock_wait: float = 30.0  # seconds a PATCH waits for another request on its upload
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    def lock_for(self, upload_id: str) -> asyncio.Lock:
        """The upload's lock: one request writes it at a time, and a HEAD waits for a PATCH."""
        lock = self.locks.get(upload_id)
        if lock is None:
            lock = asyncio.Lock()
            self.locks[upload_id] = lock
        return lock


def include_tus(
    app: FastAPI,
    store: UploadStore,
    *,
    prefix: str = "/files",
    receipt_wait: float = 2.0,
    lock_wait: float = 30.0,
) -> None:
    """Serve ``store`` as the tus endpoint under ``prefix``; the stations authenticate with
    the dependency ``app.state.auth`` (it returns the calling station's id)."""
    app.state.tus = TusEndpoint(store, receipt_wait=receipt_wait, lock_wait=lock_wait)
    app.include_router(router, prefix=prefix)


async def _endpoint(request: Request) -> TusEndpoint:
    return request.app.state.tus


async def _station(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(doc.STATION_TOKEN)]
) -> str:
    """The calling station's id, from the app's station authentication (or its 401); the
    bearer scheme is declared for the OpenAPI document."""
    return await request.app.state.auth(request)


Tus = Annotated[TusEndpoint, Depends(_endpoint)]
Station = Annotated[str, Depends(_station)]


# -- answers ---------------------------------------------------------------------------------


def _tus_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if extra:
        headers.update(extra)
    return headers


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": detail, **extra}, status_code=status, headers=_tus_headers()
    )


def _refused(exc: LimitExceeded) -> JSONResponse:
    """A limit's refusal: its status, and ``Retry-After`` when waiting can help."""
    extra = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(
        {"error": exc.error, "detail": exc.detail},
        status_code=exc.status,
        headers=_tus_headers(extra),
    )


def _check_version(request: Request) -> JSONResponse | None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        return JSONResponse(
            {"error": "tus_version", "detail": "Tus-Resumable: 1.0.0 is required"},
            status_code=412,
            headers={"Tus-Version": TUS_VERSION},
        )
    return None


def _receipt_url(request: Request, upload_id: str) -> str:
    return str(request.url_for("tus_receipt", upload_id=upload_id))


def _own(
    store: UploadStore, upload_id: str, station: str
) -> tuple[UploadInfo | None, JSONResponse | None]:
    """The caller's unfinished upload, or the error response to send. Reads files and
    SQLite (which may wait for a lock): call it with ``run_in_threadpool``."""
    if not store.valid_id(upload_id):
        return None, _error(404, "not_found", "no such upload")
    info = store.load(upload_id)
    if info is not None:
        if info.station != station:
            return None, _error(403, "forbidden", "this upload belongs to another station")
        return info, None
    receipt = store.receipt(upload_id)
    failure = store.failure(upload_id) if receipt is None else None
    owner = (receipt or failure or {}).get("station")
    if owner is None:
        return None, _error(404, "not_found", "no such upload")
    if owner != station:
        return None, _error(403, "forbidden", "this upload belongs to another station")
    if failure is not None:
        return None, _error(410, "gone", "this upload failed verification; re-send the file")
    return None, None  # verified: the caller looks at the receipt


# -- creation --------------------------------------------------------------------------------


class _Creation(NamedTuple):
    length: int
    sha256: str
    sm3: str | None
    metadata: dict[str, str]


class _Limits(NamedTuple):
    max_size: int
    upload: UploadLimits


def _creation(request: Request, station: str, limits: _Limits) -> _Creation | JSONResponse:
    """The upload a creation request announces, or the error response to send."""
    if "upload-defer-length" in request.headers:
        return _error(400, "unsupported", "Upload-Defer-Length is not supported")
    length = ascii_int(request.headers.get("upload-length"))
    if length is None:
        return _error(400, "bad_length", "Upload-Length must be 1-20 ASCII digits")
    if length > limits.max_size:
        return _error(413, "too_large", f"Upload-Length exceeds {limits.max_size} bytes")
    header = request.headers.get("upload-metadata")
    try:
        check_metadata(header, limits.upload)
        metadata = decode_metadata(header)
    except LimitExceeded as exc:
        return _refused(exc)
    except ValueError:
        return _error(400, "bad_metadata", "Upload-Metadata is not valid tus metadata")
    sha256 = metadata.get("sha256", "").lower()
    sm3 = metadata.get("sm3", "").lower() or None
    if not HEX64.match(sha256):
        return _error(400, "bad_metadata", "Upload-Metadata must carry sha256 (64 hex digits)")
    if sm3 is not None and not HEX64.match(sm3):
        return _error(400, "bad_metadata", "sm3 in Upload-Metadata must be 64 hex digits")
    claimed = metadata.setdefault("station", station)
    if claimed != station:
        return _error(403, "forbidden", "the station in Upload-Metadata is not the token's")
    return _Creation(length, sha256, sm3, metadata)


def _already_stored(request: Request, receipt: dict[str, Any], length: int) -> JSONResponse:
    """The answer to a creation whose content is stored: its receipt, nothing to send."""
    upload_id = receipt["upload_id"]
    return JSONResponse(
        receipt,
        status_code=201,
        headers=_tus_headers(
            {
                "Location": str(request.url_for("tus_head", upload_id=upload_id)),
                "Upload-Offset": str(length),
                "Upload-Receipt": _receipt_url(request, upload_id),
            }
        ),
    )


# -- routes ----------------------------------------------------------------------------------


@router.options("/", **doc.OPTIONS)
@router.options("/{upload_id}", **doc.OPTIONS, openapi_extra={"parameters": [doc.UPLOAD_ID]})
async def tus_options(tus: Tus) -> Response:
    return Response(
        status_code=204,
        headers=_tus_headers(
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(tus.store.max_size),
            }
        ),
    )


@router.post("/", name="tus_create", **doc.CREATE)
async def tus_create(request: Request, tus: Tus, station: Station) -> Response:
    if (bad := _check_version(request)) is not None:
        return bad
    store = tus.store
    new = _creation(request, station, _Limits(store.max_size, store.limits))
    if isinstance(new, JSONResponse):
        return new
    length, sha256, sm3, metadata = new
    receipt = await run_in_threadpool(store.deduplicate, station, length, sha256, sm3, metadata)
    if receipt is not None:
        return _already_stored(request, receipt, length)
    try:
        info = await run_in_threadpool(store.create, station, length, sha256, sm3, metadata)
    except LimitExceeded as exc:
        return _refused(exc)
    headers = {"Location": str(request.url_for("tus_head", upload_id=info.id))}
    if length == 0:
        store.start_verify(info)
        headers["Upload-Receipt"] = _receipt_url(request, info.id)
    return Response(status_code=201, headers=_tus_headers(headers))


@router.head("/{upload_id}", name="tus_head", **doc.HEAD)
async def tus_head(upload_id: str, request: Request, tus: Tus, station: Station) -> Response:
    if (bad := _check_version(request)) is not None:
        return bad
    async with tus.lock_for(upload_id):  # wait for a PATCH still writing
        info, err = await run_in_threadpool(_own, tus.store, upload_id, station)
    if err is not None:
        return Response(status_code=err.status_code, headers=_tus_headers())
    if info is None:
        receipt = await run_in_threadpool(tus.store.receipt, upload_id)
        assert receipt is not None
        length, offset = receipt["size"], receipt["size"]
        meta = receipt["metadata"]
    else:
        length, offset, meta = info.length, info.offset, info.metadata
    headers = {
        "Upload-Offset": str(offset),
        "Upload-Length": str(length),
        "Upload-Metadata": encode_metadata(meta),
    }
    if offset == length:
        headers["Upload-Receipt"] = _receipt_url(request, upload_id)
    return Response(status_code=200, headers=_tus_headers(headers))


@router.patch("/{upload_id}", **doc.PATCH)
async def tus_patch(upload_id: str, request: Request, tus: Tus, station: Station) -> Response:
    if (bad := _check_version(request)) is not None:
        return bad
    if request.headers.get("content-type") != OFFSET_CONTENT_TYPE:
        return _error(415, "content_type", f"Content-Type must be {OFFSET_CONTENT_TYPE}")
    offset = ascii_int(request.headers.get("upload-offset"))
    if offset is None:
        return _error(400, "bad_offset", "Upload-Offset must be 1-20 ASCII digits")
    lock = tus.lock_for(upload_id)
    try:
        await asyncio.wait_for(lock.acquire(), tus.lock_wait)
    except TimeoutError:
        return _error(423, "locked", "another request is writing this upload; retry")
    try:
        written = await _append(tus.store, upload_id, station, offset, request)
    finally:
        lock.release()
    if isinstance(written, JSONResponse):
        return written
    info, too_much = written
    headers = {"Upload-Offset": str(info.offset)}
    if info.offset == info.length:
        tus.store.start_verify(info)
        headers["Upload-Receipt"] = _receipt_url(request, upload_id)
    if too_much:
        return JSONResponse(
            {"error": "too_much_data", "detail": "the body goes beyond Upload-Length"},
            status_code=413,
            headers=_tus_headers(headers),
        )
    return Response(status_code=204, headers=_tus_headers(headers))


@router.delete("/{upload_id}", **doc.DELETE)
async def tus_delete(upload_id: str, request: Request, tus: Tus, station: Station):
    if (bad := _check_version(request)) is not None:
        return bad
    async with tus.lock_for(upload_id):
        try:  # the lease, as a PATCH: never deleted under another worker's PATCH
            token = await run_in_threadpool(tus.store.begin_write, upload_id)
        except UploadBusy:
            return _busy()
        if token is None:
            return _error(404, "not_found", "no such upload")
        try:
            info, err = await run_in_threadpool(_own, tus.store, upload_id, station)
            if err is not None:
                return err
            if info is None or info.offset == info.length:
                return _error(
                    403, "complete", "a complete upload cannot be deleted; stored media stay"
                )
            await run_in_threadpool(tus.store.terminate, upload_id)
        finally:
            await run_in_threadpool(tus.store.end_write, upload_id, token)
    return Response(status_code=204, headers=_tus_headers())


@router.get("/{upload_id}/receipt", name="tus_receipt", **doc.RECEIPT_ROUTE)
async def tus_receipt(upload_id: str, tus: Tus, station: Station) -> Response:
    store = tus.store
    info, err = await run_in_threadpool(_own, store, upload_id, station)
    if err is not None and err.status_code != 410:
        return err
    job = None
    if info is not None:
        if info.offset < info.length:
            return _error(409, "incomplete", "the upload is not complete", offset=info.offset)
        job = store.start_verify(info)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), tus.receipt_wait)
        except TimeoutError:
            pass  # still verifying: 202 below
        except Exception:  # noqa: BLE001 - the job's own error, answered below
            pass
    receipt = await run_in_threadpool(store.receipt, upload_id)
    if receipt is not None:
        return JSONResponse(receipt, headers=_tus_headers())
    failure = await run_in_threadpool(store.failure, upload_id)
    if failure is not None:
        return JSONResponse(failure, status_code=STATUS_HASH_MISMATCH, headers=_tus_headers())
    # the job this request waited for (the store forgets a finished job at once)
    job = job or store.verifying(upload_id)
    if job is not None and job.done() and job.exception() is not None:
        logger.error("verifying upload %s failed", upload_id, exc_info=job.exception())
        return _error(500, "verify_failed", "verification failed on the server; ask again")
    return JSONResponse(
        {"status": "verifying"}, status_code=202, headers=_tus_headers({"Retry-After": "1"})
    )


# -- a PATCH's body --------------------------------------------------------------------------


async def _append(
    store: UploadStore, upload_id: str, station: str, offset: int, request: Request
) -> tuple[UploadInfo, bool] | JSONResponse:
    """Under the upload's lease: check it is the caller's and unfinished at ``offset``, and
    append the body. Returns the upload and whether the body was too long, or the error
    response to send."""
    # the lease before the record: expiry cannot delete it from here on, one it deleted just
    # before is found gone, and no other worker writes it
    try:
        token = await run_in_threadpool(store.begin_write, upload_id)
    except UploadBusy:
        return _busy()
    if token is None:
        return _error(404, "not_found", "this unfinished upload expired; create it again")
    try:
        info, err = await run_in_threadpool(_own, store, upload_id, station)
        if err is not None:
            return err
        if info is None:
            return _error(403, "complete", "this upload is complete and verified")
        if offset != info.offset:
            return JSONResponse(
                {"error": "offset_mismatch", "detail": "HEAD for the current offset"},
                status_code=409,
                headers=_tus_headers({"Upload-Offset": str(info.offset)}),
            )
        try:
            return info, await _receive(store, info, request, _Lease(store, info.id, token))
        except _LeaseLost:
            return _busy()
    finally:
        await run_in_threadpool(store.end_write, upload_id, token)


def _busy() -> JSONResponse:
    return JSONResponse(
        {"error": "locked", "detail": "another request is writing this upload; retry"},
        status_code=423,
        headers=_tus_headers({"Retry-After": "1"}),
    )


class _LeaseLost(Exception):
    """The PATCH's lease ran out and another request took the upload: it stops writing."""


class _Lease:
    """A PATCH's lease on its upload, renewed while the body arrives (every third of the
    lease) and checked once more before the last write and the offset's record."""

    def __init__(self, store: UploadStore, upload_id: str, token: str) -> None:
        self.store, self.upload_id, self.token = store, upload_id, token
        self.renewed = time.monotonic()

    async def keep(self, *, now: bool = False) -> None:
        if not now and time.monotonic() - self.renewed < self.store.lease_s / 3:
            return
        if not await run_in_threadpool(self.store.renew, self.upload_id, self.token):
            logger.warning("upload %s: lease lost mid-PATCH; stopped writing", self.upload_id)
            raise _LeaseLost
        self.renewed = time.monotonic()


async def _receive(store: UploadStore, info: UploadInfo, request: Request, lease: _Lease) -> bool:
    """Append the request body to the upload; make what arrived durable, even when the client
    went away mid-body. Updates ``info.offset``; returns True when the body was too long."""
    f = await run_in_threadpool(store.open_for_append, info)
    left = info.length - info.offset
    batch = bytearray()
    written = 0
    too_much = False
    try:
        try:
            async for piece in request.stream():
                if len(piece) > left:
                    piece = piece[:left]
                    too_much = True
                batch += piece
                left -= len(piece)
                if len(batch) >= _WRITE_BATCH:
                    await lease.keep()
                    await run_in_threadpool(_write_behind, f, batch)
                    written += len(batch)
                    batch = bytearray()
                if too_much:
                    break
        except ClientDisconnect:
            logger.info("upload %s: client went away after %d bytes", info.id, written + len(batch))
        await lease.keep(now=True)
        if batch:
            await run_in_threadpool(f.write, batch)
            written += len(batch)
        await run_in_threadpool(_flush_sync, f)
    finally:
        f.close()
    if written:
        info.offset += written
        if not await run_in_threadpool(store.save, info, lease.token):
            raise _LeaseLost
    return too_much


def _write_behind(f, data: bytearray) -> None:
    """Write, and start the write-back of what was written (Linux: DONTNEED on dirty pages
    starts their write-out without waiting), so the fsync before the reply has little left
    to do and the upload does not fill the page cache."""
    start = f.tell()
    f.write(data)
    f.flush()
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(f.fileno(), start, len(data), os.POSIX_FADV_DONTNEED)


def _flush_sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())
