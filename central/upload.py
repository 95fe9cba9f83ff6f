"""The central store's tus 1.0 endpoint (core + creation + termination), with receipts.

Rules this module keeps:

* An ``Upload-Offset`` is acknowledged only after the bytes before it are fsynced and the
  upload's info file (which records that offset) is atomically replaced and its folder fsynced.
  A restarted server truncates a partial file back to its recorded offset before appending.
* Upload ids are made here (128 random bits, hex) and every id from a URL is matched against
  ``^[0-9a-f]{32}$`` before it becomes part of a path: no path traversal.
* After the last byte the stored file is re-read and hashed (SHA-256, and SM3 when the station sent
  one) in a worker thread, off the request path. A match moves it, read-only, to
  ``objects/sha256/ab/cd/<sha256>`` (fsync file, rename, fsync folders) and records a receipt in
  ``receipts.sqlite`` (:mod:`central.catalog.receipts`); a mismatch deletes the partial upload and
  records why.
* ``GET <upload>/receipt`` answers 202 while verifying, 200 with the receipt, 460 with a JSON
  reason on a hash mismatch. The last ``PATCH`` and a ``HEAD`` of a complete upload carry an
  ``Upload-Receipt`` header with that URL.
* A creation whose ``sha256`` (and size, and SM3 when given) is already stored is answered ``201``
  with ``Upload-Offset`` equal to ``Upload-Length`` and an ``Upload-Receipt``: nothing is re-sent.
* A station sees only its own uploads and receipts; there is no route that reads stored media, and
  ``DELETE`` only terminates an unfinished upload.
* Expiry deletes an unfinished upload only under a reservation a ``PATCH`` cannot take at the same
  time (``begin_write``): never an upload being written, and a ``PATCH`` that comes while expiry
  holds its upload is answered 404.
* No handler reads SQLite or a file on the event loop (``run_in_threadpool``): a locked database
  holds up only the requests that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from central.catalog import receipts
from sync.wire.tusmeta import TUS_VERSION, decode_metadata, encode_metadata

logger = logging.getLogger(__name__)

TUS_EXTENSIONS = "creation,termination"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
STATUS_HASH_MISMATCH = 460
DEFAULT_MAX_SIZE = 64 * 1024**3
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
_WRITE_BATCH = 1024 * 1024
_READ_BLOCK = 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class UploadInfo:
    id: str
    station: str
    length: int
    offset: int
    sha256: str
    sm3: str | None
    metadata: dict[str, str]
    created_at: str


class UploadStore:
    """Partial uploads, verified objects and receipts under one data folder."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, max_size: int = DEFAULT_MAX_SIZE, workers=2
    ):
        self.data_dir = Path(data_dir)
        self.max_size = max_size
        self.uploads_dir = self.data_dir / "uploads"
        self.objects_dir = self.data_dir / "objects" / "sha256"
        self.db_path = self.data_dir / "receipts.sqlite"
        for d in (self.uploads_dir, self.objects_dir):
            d.mkdir(parents=True, exist_ok=True)
        receipts.create(self.db_path)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="recdock-verify")
        self._jobs: dict[str, Future] = {}
        self._writing: set[str] = set()  # uploads a PATCH is appending to
        self._expiring: set[str] = set()  # uploads expiry is deciding about or deleting
        self._lock = threading.Lock()

    # -- paths and records --------------------------------------------------------------------

    @staticmethod
    def valid_id(upload_id: str) -> bool:
        return bool(UPLOAD_ID.match(upload_id))

    def _part(self, upload_id: str) -> Path:
        if not self.valid_id(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self.uploads_dir / f"{upload_id}.part"

    def _info_path(self, upload_id: str) -> Path:
        if not self.valid_id(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self.uploads_dir / f"{upload_id}.json"

    def object_path(self, sha256: str) -> Path:
        if not HEX64.match(sha256):
            raise ValueError(f"invalid sha256 {sha256!r}")
        return self.objects_dir / sha256[:2] / sha256[2:4] / sha256

    def load(self, upload_id: str) -> UploadInfo | None:
        try:
            data = json.loads(self._info_path(upload_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return UploadInfo(**data)

    def save(self, info: UploadInfo) -> None:
        """Replace the info file atomically and durably."""
        path = self._info_path(info.id)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(info), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.uploads_dir)

    def receipt(self, upload_id: str) -> dict[str, Any] | None:
        return receipts.receipt(self.db_path, upload_id)

    def failure(self, upload_id: str) -> dict[str, Any] | None:
        return receipts.failure(self.db_path, upload_id)

    # -- creation -----------------------------------------------------------------------------

    def create(
        self, station: str, length: int, sha256: str, sm3: str | None, metadata
    ) -> UploadInfo:
        info = UploadInfo(
            id=secrets.token_hex(16),
            station=station,
            length=length,
            offset=0,
            sha256=sha256,
            sm3=sm3,
            metadata=dict(metadata),
            created_at=_now(),
        )
        with open(self._part(info.id), "xb") as f:
            os.fsync(f.fileno())
        self.save(info)
        logger.info("upload %s created by %s: %d bytes", info.id, station, length)
        return info

    def deduplicate(
        self, station: str, length: int, sha256: str, sm3: str | None, metadata
    ) -> dict[str, Any] | None:
        """When this content is already stored, record a receipt for a new upload id and
        return it; otherwise None."""
        stored = receipts.first_receipt_of(self.db_path, sha256, length)
        if stored is None or (sm3 is not None and stored["sm3"] != sm3):
            return None
        obj = self.object_path(sha256)
        try:
            if obj.stat().st_size != length:
                return None
        except FileNotFoundError:
            return None
        upload_id = secrets.token_hex(16)
        self._record_receipt(upload_id, sha256, sm3, length, station, metadata, dedup=True)
        logger.info("upload %s by %s: sha256 %s already stored", upload_id, station, sha256)
        return self.receipt(upload_id)

    def _record_receipt(self, upload_id, sha256, sm3, size, station, metadata, *, dedup) -> None:
        receipts.record_receipt(
            self.db_path,
            upload_id,
            sha256,
            sm3,
            size,
            station,
            metadata,
            received_at=_now(),
            dedup=dedup,
        )

    # -- data ---------------------------------------------------------------------------------

    def open_for_append(self, info: UploadInfo):
        """Open the partial file at its durable offset (dropping any unacknowledged tail)."""
        f = open(self._part(info.id), "r+b")  # noqa: SIM115 - closed by the caller
        try:
            f.truncate(info.offset)
            f.seek(info.offset)
        except BaseException:
            f.close()
            raise
        return f

    def begin_write(self, upload_id: str) -> bool:
        """Reserve an upload for a PATCH, so expiry leaves it alone until :meth:`end_write`.

        False while expiry holds it (it may be deleting it): the PATCH must not touch it. Once
        this returns True, the caller reads the upload's record: if expiry deleted it just
        before, the record is gone.
        """
        with self._lock:
            if upload_id in self._expiring:
                return False
            self._writing.add(upload_id)
            return True

    def end_write(self, upload_id: str) -> None:
        with self._lock:
            self._writing.discard(upload_id)

    # -- verification -------------------------------------------------------------------------

    def start_verify(self, info: UploadInfo) -> Future:
        with self._lock:
            job = self._jobs.get(info.id)
            if job is not None:
                return job
            job = self._executor.submit(self._verify, info)
            self._jobs[info.id] = job
        # outside the lock: a job already over runs its callback here and now, and the
        # callback takes the lock (under it, the event loop calling this would deadlock)
        job.add_done_callback(lambda done, i=info.id: self._forget_job(i, done))
        return job

    def _forget_job(self, upload_id: str, job: Future) -> None:
        with self._lock:
            if self._jobs.get(upload_id) is job:
                del self._jobs[upload_id]
        exc = job.exception() if not job.cancelled() else None
        if exc is not None:
            # not a hash mismatch (that is recorded in _verify) but the server's own trouble
            # (disk full, I/O error): log it; the upload stays complete and is verified
            # again at the next receipt request or restart
            logger.error(
                "upload %s: verification failed: %s: %s", upload_id, type(exc).__name__, exc
            )

    def verifying(self, upload_id: str) -> Future | None:
        with self._lock:
            return self._jobs.get(upload_id)

    def _verify(self, info: UploadInfo) -> None:
        """Hash the complete upload; store it and record its receipt, or record why not."""
        part = self._part(info.id)
        obj = self.object_path(info.sha256)
        if not part.exists():
            # A crash between the rename into objects/ and the receipt: finish the job.
            if obj.exists() and obj.stat().st_size == info.length:
                self._done(info, obj)
            return
        actual = _digests(part, with_sm3=bool(info.sm3))
        expected = {"sha256": info.sha256, "size": info.length}
        if info.sm3:
            expected["sm3"] = info.sm3
        if actual != expected:
            self._mismatch(info, expected, actual)
            return
        _link_object(part, obj, self.objects_dir)
        part.unlink()
        _fsync_dir(self.uploads_dir)
        self._done(info, obj)

    def _mismatch(self, info: UploadInfo, expected: dict[str, Any], actual: dict[str, Any]) -> None:
        """Record why the upload failed verification and delete what was received."""
        reason = {
            "error": "hash_mismatch",
            "detail": "the received file does not match the announced hash; re-send it",
            "expected": expected,
            "actual": actual,
        }
        receipts.record_failure(self.db_path, info.id, info.station, reason, failed_at=_now())
        self._discard(info.id)
        logger.warning(
            "upload %s by %s: hash mismatch (expected %s, got %s)",
            info.id,
            info.station,
            info.sha256,
            actual["sha256"],
        )

    def _done(self, info: UploadInfo, obj: Path) -> None:
        self._record_receipt(
            info.id, info.sha256, info.sm3, info.length, info.station, info.metadata, dedup=False
        )
        self._info_path(info.id).unlink(missing_ok=True)
        logger.info("upload %s by %s verified: %s", info.id, info.station, obj)

    def _discard(self, upload_id: str) -> None:
        for path in (self._part(upload_id), self._info_path(upload_id)):
            path.unlink(missing_ok=True)
        _fsync_dir(self.uploads_dir)

    def terminate(self, upload_id: str) -> None:
        self._discard(upload_id)
        logger.info("upload %s terminated", upload_id)

    def resume_pending(self) -> int:
        """Verify complete uploads left unverified by a restart; returns how many."""
        count = 0
        for path in self.uploads_dir.glob("*.json"):
            info = self.load(path.stem) if self.valid_id(path.stem) else None
            if info is not None and info.offset == info.length:
                self.start_verify(info)
                count += 1
        return count

    def expire_uploads(self, older_than: float) -> list[str]:
        """Delete unfinished uploads untouched for ``older_than`` seconds; return their ids.

        Each upload is reserved first (see :meth:`begin_write`): one that a PATCH is writing
        is skipped, and a PATCH that arrives while its upload is reserved here is refused, so
        an upload is never deleted under a PATCH that resumes it. The age is read after the
        reservation, so a PATCH that finished just before counts as a touch.
        """
        cutoff = time.time() - older_than
        expired = []
        for path in self.uploads_dir.iterdir():
            stem = path.name.split(".", 1)[0]
            if not self.valid_id(stem):
                continue  # not an upload of ours: never touched
            with self._lock:
                if stem in self._writing or stem in self._jobs or stem in self._expiring:
                    continue
                self._expiring.add(stem)
            try:
                if self._expire(path, stem, cutoff):
                    expired.append(stem)
            finally:
                with self._lock:
                    self._expiring.discard(stem)
        if expired:
            logger.info("expired %d abandoned uploads", len(expired))
        return expired

    def _expire(self, path: Path, upload_id: str, cutoff: float) -> bool:
        """One entry of the uploads folder, reserved by the caller; True when the upload was
        deleted."""
        try:
            if path.stat().st_mtime >= cutoff:
                return False
        except FileNotFoundError:
            return False
        if path.suffix == ".json":
            info = self.load(upload_id)
            if info is not None and info.offset == info.length:
                self.start_verify(info)  # complete: verify, never expire
                return False
            self._discard(upload_id)
            return True
        if path.suffix == ".part" and not self._info_path(upload_id).exists():
            path.unlink(missing_ok=True)  # orphan of a crash during creation
        elif path.name.endswith(".json.tmp"):
            path.unlink(missing_ok=True)
        return False

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


def _digests(path: Path, *, with_sm3: bool) -> dict[str, Any]:
    """The file's SHA-256 (and SM3) and size, from one read pass in reused blocks."""
    sha = hashlib.sha256()
    sm3 = hashlib.new("sm3") if with_sm3 else None
    buf = bytearray(_READ_BLOCK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb") as f:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(buf):
            sha.update(view[:n])
            if sm3 is not None:
                sm3.update(view[:n])
            size += n
    actual: dict[str, Any] = {"sha256": sha.hexdigest(), "size": size}
    if sm3 is not None:
        actual["sm3"] = sm3.hexdigest()
    return actual


def _link_object(part: Path, obj: Path, objects_dir: Path) -> None:
    """Make the verified upload read-only and durable, and link it in as ``obj``."""
    obj.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(part, 0o444)
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    try:
        # link, never rename: two uploads of the same content finishing together must
        # not replace a stored object (same bytes, but "never changed once written")
        os.link(part, obj)
    except FileExistsError:
        pass  # already stored by an earlier upload of the same content
    else:
        for d in (obj.parent, obj.parent.parent, objects_dir):
            _fsync_dir(d)


# --------------------------------------------------------------------------------------------
# HTTP


def _tus_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if extra:
        headers.update(extra)
    return headers


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": detail, **extra}, status_code=status, headers=_tus_headers()
    )


def create_upload_router(
    store: UploadStore,
    auth,
    *,
    prefix: str = "/files",
    receipt_wait: float = 2.0,
    lock_wait: float = 30.0,
) -> APIRouter:
    """The tus endpoint as a FastAPI router. ``auth`` is a dependency returning the station id."""
    router = APIRouter(prefix=prefix, tags=["tus"])
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock_for(upload_id: str) -> asyncio.Lock:
        lock = locks.get(upload_id)
        if lock is None:
            lock = asyncio.Lock()
            locks[upload_id] = lock
        return lock

    def check_version(request: Request) -> JSONResponse | None:
        if request.headers.get("tus-resumable") != TUS_VERSION:
            return JSONResponse(
                {"error": "tus_version", "detail": "Tus-Resumable: 1.0.0 is required"},
                status_code=412,
                headers={"Tus-Version": TUS_VERSION},
            )
        return None

    def receipt_url(request: Request, upload_id: str) -> str:
        return str(request.url_for("tus_receipt", upload_id=upload_id))

    def own(upload_id: str, station: str) -> tuple[UploadInfo | None, JSONResponse | None]:
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

    @router.options("/")
    @router.options("/{upload_id}")
    async def tus_options() -> Response:
        return Response(
            status_code=204,
            headers=_tus_headers(
                {
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": TUS_EXTENSIONS,
                    "Tus-Max-Size": str(store.max_size),
                }
            ),
        )

    @router.post("/", name="tus_create")
    async def tus_create(request: Request, station: str = Depends(auth)) -> Response:
        if (bad := check_version(request)) is not None:
            return bad
        if "upload-defer-length" in request.headers:
            return _error(400, "unsupported", "Upload-Defer-Length is not supported")
        length_header = request.headers.get("upload-length", "")
        if not length_header.isdigit():
            return _error(400, "bad_length", "Upload-Length must be a non-negative integer")
        length = int(length_header)
        if length > store.max_size:
            return _error(413, "too_large", f"Upload-Length exceeds {store.max_size} bytes")
        try:
            metadata = decode_metadata(request.headers.get("upload-metadata"))
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
        receipt = await run_in_threadpool(store.deduplicate, station, length, sha256, sm3, metadata)
        if receipt is not None:
            upload_id = receipt["upload_id"]
            return JSONResponse(
                receipt,
                status_code=201,
                headers=_tus_headers(
                    {
                        "Location": str(request.url_for("tus_head", upload_id=upload_id)),
                        "Upload-Offset": str(length),
                        "Upload-Receipt": receipt_url(request, upload_id),
                    }
                ),
            )
        info = await run_in_threadpool(store.create, station, length, sha256, sm3, metadata)
        headers = {"Location": str(request.url_for("tus_head", upload_id=info.id))}
        if length == 0:
            store.start_verify(info)
            headers["Upload-Receipt"] = receipt_url(request, info.id)
        return Response(status_code=201, headers=_tus_headers(headers))

    @router.head("/{upload_id}", name="tus_head")
    async def tus_head(upload_id: str, request: Request, station: str = Depends(auth)) -> Response:
        if (bad := check_version(request)) is not None:
            return bad
        async with lock_for(upload_id):  # wait for a PATCH still writing
            info, err = await run_in_threadpool(own, upload_id, station)
        if err is not None:
            return Response(status_code=err.status_code, headers=_tus_headers())
        if info is None:
            receipt = await run_in_threadpool(store.receipt, upload_id)
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
            headers["Upload-Receipt"] = receipt_url(request, upload_id)
        return Response(status_code=200, headers=_tus_headers(headers))

    @router.patch("/{upload_id}")
    async def tus_patch(upload_id: str, request: Request, station: str = Depends(auth)) -> Response:
        if (bad := check_version(request)) is not None:
            return bad
        if request.headers.get("content-type") != OFFSET_CONTENT_TYPE:
            return _error(415, "content_type", f"Content-Type must be {OFFSET_CONTENT_TYPE}")
        offset_header = request.headers.get("upload-offset", "")
        if not offset_header.isdigit():
            return _error(400, "bad_offset", "Upload-Offset must be a non-negative integer")
        lock = lock_for(upload_id)
        try:
            await asyncio.wait_for(lock.acquire(), lock_wait)
        except TimeoutError:
            return _error(423, "locked", "another request is writing this upload; retry")
        try:
            # reserve before reading the record: expiry cannot delete it from here on, and
            # one it deleted just before is found gone
            if not store.begin_write(upload_id):
                return _error(404, "not_found", "this unfinished upload expired; create it again")
            try:
                info, err = await run_in_threadpool(own, upload_id, station)
                if err is not None:
                    return err
                if info is None:
                    return _error(403, "complete", "this upload is complete and verified")
                if int(offset_header) != info.offset:
                    return JSONResponse(
                        {"error": "offset_mismatch", "detail": "HEAD for the current offset"},
                        status_code=409,
                        headers=_tus_headers({"Upload-Offset": str(info.offset)}),
                    )
                too_much = await _receive(store, info, request)
            finally:
                store.end_write(upload_id)
        finally:
            lock.release()
        headers = {"Upload-Offset": str(info.offset)}
        if info.offset == info.length:
            store.start_verify(info)
            headers["Upload-Receipt"] = receipt_url(request, upload_id)
        if too_much:
            return JSONResponse(
                {"error": "too_much_data", "detail": "the body goes beyond Upload-Length"},
                status_code=413,
                headers=_tus_headers(headers),
            )
        return Response(status_code=204, headers=_tus_headers(headers))

    @router.delete("/{upload_id}")
    async def tus_delete(upload_id: str, request: Request, station: str = Depends(auth)):
        if (bad := check_version(request)) is not None:
            return bad
        async with lock_for(upload_id):
            info, err = await run_in_threadpool(own, upload_id, station)
            if err is not None:
                return err
            if info is None or info.offset == info.length:
                return _error(
                    403, "complete", "a complete upload cannot be deleted; stored media stay"
                )
            await run_in_threadpool(store.terminate, upload_id)
        return Response(status_code=204, headers=_tus_headers())

    @router.get("/{upload_id}/receipt", name="tus_receipt")
    async def tus_receipt(upload_id: str, station: str = Depends(auth)) -> Response:
        info, err = await run_in_threadpool(own, upload_id, station)
        if err is not None and err.status_code != 410:
            return err
        job = None
        if info is not None:
            if info.offset < info.length:
                return _error(409, "incomplete", "the upload is not complete", offset=info.offset)
            job = store.start_verify(info)
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), receipt_wait)
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

    return router


async def _receive(store: UploadStore, info: UploadInfo, request: Request) -> bool:
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
                    await run_in_threadpool(_write_behind, f, batch)
                    written += len(batch)
                    batch = bytearray()
                if too_much:
                    break
        except ClientDisconnect:
            logger.info("upload %s: client went away after %d bytes", info.id, written + len(batch))
        if batch:
            await run_in_threadpool(f.write, batch)
            written += len(batch)
        await run_in_threadpool(_flush_sync, f)
    finally:
        f.close()
    if written:
        info.offset += written
        await run_in_threadpool(store.save, info)
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
