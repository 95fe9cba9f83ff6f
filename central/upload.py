"""The central store's uploads: partial uploads, verified objects and their receipts on disk.

The tus endpoint (:mod:`central.tus`) serves this store over HTTP. Rules this module keeps:

* The unfinished uploads, their records and their ids are kept by :mod:`central.folder`
  (offsets recorded atomically and durably; ids checked before they touch a path).
* After the last byte the stored file is re-read and hashed (SHA-256, and SM3 when the station sent
  one) in a worker thread, off the request path. A match moves it, read-only (0400), to
  ``objects/sha256/ab/cd/<sha256>`` (fsync file, link, fsync folders) and records a receipt
  (:mod:`central.catalog.receipts`: ``receipts.sqlite``, or the PostgreSQL catalog's database);
  a mismatch deletes the partial upload and
  records why.
* Content the same station already uploaded (same ``sha256`` and size, and SM3 when given) gets
  a receipt for a new upload id at once (:meth:`UploadStore.deduplicate`): nothing is re-sent.
  Another station's uploads never answer a creation: a station that knows a hash sends the
  bytes, and its metadata never goes on another station's receipt.
* A creation is admitted only within the limits (:mod:`central.limits`): per station, open
  uploads, bytes announced and not sent, bytes stored a day; the data disk's reserve.
* An upload's lock is its lease in the database (:mod:`central.catalog.uploads`): a ``PATCH``
  (:meth:`UploadStore.begin_write`), verification and expiry each take it, so two workers on
  the data folder never write, verify or delete the same upload at once, and a worker killed
  holding it blocks the upload only until the lease runs out (``lease_s``).
* Expiry deletes an unfinished upload only under its lease, which a ``PATCH`` cannot take at the
  same time: never an upload being written, and a ``PATCH`` that comes while expiry holds its
  upload is refused.
* Every method that reads or writes a file or SQLite blocks: the HTTP handlers call them in a
  worker thread.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.catalog import receipts, uploads
from central.folder import (
    UploadFolder,
    UploadInfo,
    fsync_dir,
    new_upload_id,
    private_dir,
    private_file,
)
from central.limits import DEFAULT_MAX_SIZE, Admission, UploadLimits

__all__ = ["DEFAULT_MAX_SIZE", "HEX64", "UploadBusy", "UploadInfo", "UploadStore"]

logger = logging.getLogger(__name__)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
_READ_BLOCK = 1024 * 1024
DEFAULT_LEASE_S = 60.0  # a PATCH's lease; renewed while its body arrives
VERIFY_LEASE_S = 900.0  # hashing a large upload on a slow disk


class UploadBusy(Exception):
    """Another request (of this worker or another) holds the upload's lease."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _private_database(place: receipts.Place) -> None:
    """The receipts' SQLite file and its WAL, owner only (an older version's were 0644)."""
    if isinstance(place, Path):
        private_file(place)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(place.with_name(place.name + suffix), 0o600)


class UploadStore:
    """Partial uploads, verified objects and receipts under one data folder."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        workers=2,
        limits: UploadLimits | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        database: str | os.PathLike[str] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.max_size = max_size
        self.limits = limits or UploadLimits()
        self.uploads_dir = self.data_dir / "uploads"
        self.objects_dir = self.data_dir / "objects" / "sha256"
        # beside the catalog on PostgreSQL (``database``), else receipts.sqlite here
        self.db_path = receipts.location(self.data_dir, database)
        private_dir(self.data_dir)
        for d in (self.objects_dir.parent, self.objects_dir):
            private_dir(d)
        _private_database(self.db_path)
        receipts.create(self.db_path)
        self.folder = UploadFolder(self.uploads_dir, self.db_path)
        self.admission = Admission(
            self.limits, self.data_dir, functools.partial(receipts.stored_bytes_on, self.db_path)
        )
        self.admission.reset(self._ledger())
        self.lease_s = lease_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="recdock-verify")
        self._jobs: dict[str, Future] = {}
        self._lock = threading.Lock()

    # -- paths and records --------------------------------------------------------------------

    valid_id = staticmethod(UploadFolder.valid_id)

    def object_path(self, sha256: str) -> Path:
        if not HEX64.match(sha256):
            raise ValueError(f"invalid sha256 {sha256!r}")
        return self.objects_dir / sha256[:2] / sha256[2:4] / sha256

    def load(self, upload_id: str) -> UploadInfo | None:
        return self.folder.load(upload_id)

    def save(self, info: UploadInfo, holder: str) -> bool:
        """Record the upload's offset (durably, only under ``holder``'s lease): see
        :meth:`UploadFolder.save`. False when the lease was lost: nothing recorded."""
        if not self.folder.save(info, holder):
            return False
        self.admission.track(info.id, info.station, info.length, info.offset)
        return True

    def receipt(self, upload_id: str) -> dict[str, Any] | None:
        return receipts.receipt(self.db_path, upload_id)

    def failure(self, upload_id: str) -> dict[str, Any] | None:
        return receipts.failure(self.db_path, upload_id)

    # -- creation -----------------------------------------------------------------------------

    def create(
        self, station: str, length: int, sha256: str, sm3: str | None, metadata
    ) -> UploadInfo:
        """A new upload, when the limits admit it (else :class:`LimitExceeded`); the limits
        count every worker's open uploads (the database's records)."""
        with self.admission.admitting(station, length, self._ledger):
            return self._create(station, length, sha256, sm3, metadata)

    def _create(self, station, length, sha256, sm3, metadata) -> UploadInfo:
        info = UploadInfo(
            id=new_upload_id(),
            station=station,
            length=length,
            offset=0,
            sha256=sha256,
            sm3=sm3,
            metadata=dict(metadata),
            created_at=_now(),
        )
        self.folder.create(info)
        self.admission.track(info.id, station, length, 0)
        logger.info("upload %s created by %s: %d bytes", info.id, station, length)
        return info

    def deduplicate(
        self, station: str, length: int, sha256: str, sm3: str | None, metadata
    ) -> dict[str, Any] | None:
        """When ``station`` itself already uploaded this content and it is stored, record a
        receipt for a new upload id and return it; otherwise None (the bytes are sent, and the
        store still keeps one object: :func:`_link_object`)."""
        stored = receipts.first_receipt_of(self.db_path, station, sha256, length)
        if stored is None or (sm3 is not None and stored["sm3"] != sm3):
            return None
        obj = self.object_path(sha256)
        try:
            if obj.stat().st_size != length:
                return None
        except FileNotFoundError:
            return None
        upload_id = new_upload_id()
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
        """Open the partial file at its durable offset: see :meth:`UploadFolder.open_for_append`."""
        return self.folder.open_for_append(info)

    def begin_write(self, upload_id: str) -> str | None:
        """Take the upload's lease for a PATCH (any worker's) until :meth:`end_write`; returns
        its holder token. None while expiry holds it (it may be deleting it: hands off).
        :class:`UploadBusy` while another request holds it (a killed worker's lease runs out
        after ``lease_s``). With a token, the caller reads the record: gone if expiry won."""
        token = f"write:{self.worker}:{secrets.token_hex(6)}"
        held = self._take(upload_id, token, self.lease_s)
        if held is None or held == "":
            return token
        if held.startswith("expire:"):
            return None
        raise UploadBusy(upload_id)

    def renew(self, upload_id: str, token: str) -> bool:
        """Keep a PATCH's lease; False when it ran out and another took it."""
        return uploads.renew(self.db_path, upload_id, token, until=time.time() + self.lease_s)

    def end_write(self, upload_id: str, token: str) -> None:
        uploads.release(self.db_path, upload_id, token)

    def _take(self, upload_id: str, token: str, lease_s: float) -> str | None:
        now = time.time()
        return uploads.take(self.db_path, upload_id, token, now=now, until=now + lease_s)

    def _ledger(self) -> list[tuple[str, str, int, int]]:
        """The open uploads of every worker (the database's records), for the limits."""
        return [(i.id, i.station, i.length, i.offset) for i in self.folder.records()]

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
        """Under the upload's lease (another worker may be verifying it, or writing it: then
        nothing is done here, and a later receipt request asks again)."""
        token = f"verify:{self.worker}:{secrets.token_hex(6)}"
        if self._take(info.id, token, VERIFY_LEASE_S) not in (None, ""):
            return
        try:
            current = self.load(info.id)
            if current is None and not self.folder.part(info.id).exists():
                return  # verified (or failed) meanwhile, at another worker
            if current is not None and current.offset != current.length:
                return  # not complete: an old view of it
            self._verify_held(current or info)
        finally:
            uploads.release(self.db_path, info.id, token)

    def _verify_held(self, info: UploadInfo) -> None:
        """Hash the complete upload; store it and record its receipt, or record why not."""
        part = self.folder.part(info.id)
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
        fsync_dir(self.uploads_dir)
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
        self.folder.forget(info.id)
        self.admission.forget(info.id)
        logger.info("upload %s by %s verified: %s", info.id, info.station, obj)

    def _discard(self, upload_id: str) -> None:
        self.folder.discard(upload_id)
        self.admission.forget(upload_id)

    def terminate(self, upload_id: str) -> None:
        self._discard(upload_id)
        logger.info("upload %s terminated", upload_id)

    def resume_pending(self) -> int:
        """Verify complete uploads left unverified by a restart; returns how many."""
        count = 0
        for info in self.folder.records():
            if info.offset == info.length:
                self.start_verify(info)
                count += 1
        return count

    def expire_uploads(self, older_than: float) -> list[str]:
        """Delete unfinished uploads untouched for ``older_than`` seconds; return their ids.

        Each upload's lease is taken first (see :meth:`begin_write`): one that a PATCH of any
        worker is writing is skipped, and a PATCH that arrives while expiry holds it is
        refused, so an upload is never deleted under a PATCH that resumes it. The age is read
        again under the lease, so a PATCH that finished just before counts as a touch.
        """
        cutoff = time.time() - older_than
        expired = []
        for upload_id in uploads.untouched_since(self.db_path, cutoff):
            with self._lock:
                if upload_id in self._jobs:
                    continue
            token = f"expire:{self.worker}:{secrets.token_hex(6)}"
            if self._take(upload_id, token, self.lease_s) is not None:
                continue  # held (or gone)
            try:
                outcome = _expire(self, upload_id, cutoff)
            finally:
                uploads.release(self.db_path, upload_id, token)
            if outcome == "expired":
                expired.append(upload_id)
            elif isinstance(outcome, UploadInfo):
                self.start_verify(outcome)  # complete: verified (its lease free again), kept
        _drop_orphans(self, cutoff)
        if expired:
            logger.info("expired %d abandoned uploads", len(expired))
        return expired

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


def _expire(store: UploadStore, upload_id: str, cutoff: float) -> str | UploadInfo | None:
    """One upload, its lease held by the caller: ``"expired"`` when it was deleted, the upload
    when it is complete (to verify once the lease is released: never expired), else None."""
    touched = uploads.touched_at(store.db_path, upload_id)
    if touched is None or touched >= cutoff:
        return None
    info = store.load(upload_id)
    if info is None:
        return None
    if info.offset == info.length:
        return info
    store._discard(upload_id)
    return "expired"


def _drop_orphans(store: UploadStore, cutoff: float) -> None:
    """Partial files without a record (a crash during creation), older than ``cutoff``."""
    for path in store.uploads_dir.glob("*.part"):
        stem = path.name.split(".", 1)[0]
        if not store.valid_id(stem) or store.folder.load(stem) is not None:
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


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
    for d in (obj.parent.parent, obj.parent):
        d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(part, 0o400)  # read-only, and only the service's user reads it
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
            fsync_dir(d)
