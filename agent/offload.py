"""Offload one mounted recorder into the station store.

The way a file takes: open (no symlinks, no FIFOs) → one read pass into a reused
buffer, hashed and written → fsync → read back from disk and matched → source
unchanged? → linked into the store read-only → catalog row + audit entry + outbox
message, one transaction (a few files per transaction, each file already durable)
→ only then, unless the source is kept, the file is removed from the recorder.

Invariant 1 is kept here: a source file is removed only after its catalog row is
committed and read back, its store copy exists with the right size, the catalog
is bound to this store, and the source still has the size and time it had when
it was copied.

An interrupted offload (SIGKILL, power cut, recorder yanked) leaves at most temp
files, which the next run removes, and complete verified copies without a catalog
row ("orphans"), which the next run adopts: it hashes them from disk and
catalogs them, so nothing in the store is ever unaccounted for.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, canonical, now_utc
from agent.config import Config
from agent.errors import (
    CatalogError,
    RecdockError,
    RecorderError,
    RecorderGoneError,
    SourceChangedError,
    StoreError,
    StoreFullError,
)
from agent.names import decode_relpath, display, encode_relpath, safe_label
from agent.profiles import Profile
from agent.recorder import (
    MediaFile,
    RecorderInfo,
    list_media,
    open_source,
    read_info,
    recorded_times,
)
from agent.store import (
    GONE_ERRNOS,
    MANIFEST,
    MEDIA_DIR,
    SESSION_RECORD,
    TEMP_PREFIX,
    Digest,
    Follower,
    Store,
    aligned_buffer,
    discard_temp,
    fsync_dir,
    hash_fd,
    hash_file,
    source_name_of,
)

log = logging.getLogger(__name__)

#: ``extra`` of log records whose content the OffloadReport also carries: the CLI prints
#: the report, so it leaves these out of its own stderr (the daemon's journal keeps them).
REPORTED = {"recdock_reported": True}


class Stopped(RecdockError):
    """The offload was asked to stop (SIGTERM); the file in flight was abandoned."""


@dataclass
class FileResult:
    source_path: str
    status: str  # stored | already | failed
    message: str = ""
    sha256: str | None = None
    store_path: str | None = None
    size: int = 0
    removed: bool = False
    late: bool = False
    age_hours: float | None = None
    relpath: bytes = b""  # as on the recorder
    mtime_ns: int = 0  # the source's mtime when it was copied (or found already stored)


@dataclass
class OffloadReport:
    session_id: str
    device_serial: str
    info: RecorderInfo
    files: list[FileResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    bytes_copied: int = 0
    source_kept_reason: str | None = None
    #: station time when the recorder's status (and its clock) was read
    info_read_at: datetime | None = None
    #: the error that stopped the offload (the daemon tells a full store from a yanked recorder)
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.problems
            and all(f.status in ("stored", "already") for f in self.files)
        )

    @property
    def failures(self) -> list[str]:
        lines = [f"{f.source_path}: {f.message}" for f in self.files if f.status == "failed"]
        return self.problems + lines + ([self.error] if self.error else [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "device_serial": self.device_serial,
            "ok": self.ok,
            "stored": sum(1 for f in self.files if f.status == "stored"),
            "already": sum(1 for f in self.files if f.status == "already"),
            "failed": sum(1 for f in self.files if f.status == "failed"),
            "removed": sum(1 for f in self.files if f.removed),
            "late": [
                {"source_path": f.source_path, "age_hours": f.age_hours}
                for f in self.files
                if f.late
            ],
            "bytes_copied": self.bytes_copied,
            "problems": self.failures,
            "source_kept_reason": self.source_kept_reason,
        }


@dataclass
class _Pending:
    media: MediaFile
    source_path: str
    store_path: str
    digest: Digest
    start: datetime | None
    end: datetime | None
    late: bool
    age_hours: float | None
    mtime_ns: int  # the source's mtime when it was opened for the copy
    result: FileResult
    verified: Future[Digest | None] | None = None  # the verifier's verify-and-link of the copy


class SessionLock:
    """An flock held while a session runs; a dead process's locks vanish with it."""

    def __init__(self, home: Path, session_id: str, *, blocking: bool = True):
        self.path = home / "run" / "locks" / f"{session_id}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(self.fd)
            raise

    @classmethod
    def try_acquire(cls, home: Path, session_id: str) -> SessionLock | None:
        """The session's lock, or None when a live process (or a recovering one) holds it."""
        try:
            return cls(home, session_id, blocking=False)
        except BlockingIOError:
            return None

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def new_session_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


class Offloader:
    def __init__(
        self,
        config: Config,
        home: Path,
        catalog: Catalog,
        *,
        keep_source: bool | None = None,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.config = config
        self.home = home
        self.catalog = catalog
        self.store = Store(
            home / "store", reserve_bytes=config.store.reserve_bytes, sm3=config.store.sm3
        )
        self.keep_source = config.offload.keep_source if keep_source is None else keep_source
        self.progress = progress
        self.stop = stop or threading.Event()
        self.clock = clock
        # six buffers bound the memory whatever the file size: the copy (one being read,
        # one hashed, two being written to the store disk) and the verifier's re-read
        # (one being read, one hashed)
        self.buf = aligned_buffer(config.store.buffer_bytes)
        self.buf2 = aligned_buffer(config.store.buffer_bytes)
        self.spare = [aligned_buffer(config.store.buffer_bytes) for _ in range(2)]
        self.vbuf = aligned_buffer(config.store.buffer_bytes)
        self.vbuf2 = aligned_buffer(config.store.buffer_bytes)  # the re-read's read-ahead
        self._verifier: ThreadPoolExecutor | None = None  # one per run()

    # -- entry point --------------------------------------------------------------------

    def run(
        self,
        source: Path,
        profile: Profile,
        *,
        usb_serial: str | None = None,
        serial: str | None = None,
        media: list[MediaFile] | None = None,
        session_extra: dict[str, Any] | None = None,
    ) -> OffloadReport:
        self.store.bind(self.catalog.catalog_id, self.catalog.is_empty())
        recover_interrupted(self.catalog, self.store, self.home, self.buf)
        problems: list[str] = []
        if media is None:
            media, found = list_media(source, profile)
            problems = [str(p) for p in found]
        info = read_info(source, profile, usb_serial=serial or usb_serial, media=media)
        # the device wrote its clock when it was docked: measure the drift now, before
        # a long offload makes the station clock move on (it is stored with the session)
        info_read_at = self.clock()
        drift = (info.clock - info_read_at).total_seconds() if info.clock else None
        if serial:
            info.serial = serial
        self._settle_removal_intents(info, media)
        started = self.clock()
        sid = new_session_id(started)
        serial_label = safe_label(info.serial)
        store_dir = f"{started:%Y/%m/%d}/{serial_label}/{sid}"
        report = OffloadReport(sid, info.serial, info, problems=problems, info_read_at=info_read_at)
        lock = SessionLock(self.home, sid)
        try:
            with self.catalog.tx() as conn:
                conn.execute(
                    "INSERT INTO sessions (id, station_id, device_serial, officer_id, unit,"
                    " profile, source, store_dir, started_at, device_info, files_seen, problems,"
                    " clock_offset_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        self.config.station_id,
                        info.serial,
                        info.officer,
                        info.unit,
                        profile.name,
                        str(source),
                        store_dir,
                        started.isoformat(),
                        _json({**info.as_dict(), **(session_extra or {})}),
                        len(media),
                        len(problems),
                        round(drift, 3) if drift is not None else None,
                    ),
                )
                self.catalog.append_audit(
                    "session.start",
                    sid,
                    {
                        "device_serial": info.serial,
                        "officer_id": info.officer,
                        "unit": info.unit,
                        "profile": profile.name,
                        "files_seen": len(media),
                        "problems": problems,
                    },
                )
            self._verifier = ThreadPoolExecutor(1, thread_name_prefix="recdock-verify")
            self._offload_files(source, profile, info, media, report, store_dir)
        except BaseException:
            # a commit failed (the catalog), or worse: copies may be linked into the store
            # without their rows. The session stays open, so the next run's recovery finds
            # and adopts them (an ended session is not searched for orphans).
            if self._verifier is not None:
                self._verifier.shutdown(wait=True)
            lock.release()
            raise
        try:
            if self._verifier is not None:
                self._verifier.shutdown(wait=True)
            self._finish(report, store_dir, profile, started, source)
        finally:
            lock.release()
        return report

    # -- the per-file loop --------------------------------------------------------------

    def _offload_files(
        self,
        source: Path,
        profile: Profile,
        info: RecorderInfo,
        media: list[MediaFile],
        report: OffloadReport,
        store_dir: str,
    ) -> None:
        group: list[_Pending] = []
        errors: list[FileResult] = []
        inflight: list[_Pending] = []  # copied, being verified by the verifier thread
        last_commit = time.monotonic()
        media_root = self.store.root / store_dir / MEDIA_DIR

        def settle(keep: int) -> None:
            """Wait for verifications until at most ``keep`` are in flight."""
            while len(inflight) > keep:
                p = inflight.pop(0)
                try:
                    assert p.verified is not None
                    p.verified.result()
                except StoreError as exc:
                    p.result.message = str(exc)
                    raise
                group.append(p)
                report.bytes_copied += p.media.size

        try:
            for m in media:
                if self.stop.is_set():
                    raise Stopped(
                        "stopped on request (SIGTERM); files not yet offloaded stay on the "
                        "recorder and the next offload resumes"
                    )
                result = FileResult(m.name, "failed", size=m.size, relpath=m.relpath)
                report.files.append(result)
                try:
                    pending = self._one_file(
                        source, profile, info, m, media_root, store_dir, result
                    )
                    if pending is not None:
                        inflight.append(pending)
                except (RecorderGoneError, StoreFullError, Stopped, CatalogError):
                    raise
                except StoreError as exc:
                    # the store disk itself failing is a station fault: stop
                    result.message = str(exc)
                    raise
                except RecorderError as exc:
                    result.message = str(exc)
                    errors.append(result)
                    log.warning("%s: %s", info.serial, exc, extra=REPORTED)
                settle(keep=1)  # one copy verifies while the next is copied
                due = len(group) >= self.config.store.commit_every_files or (
                    group
                    and time.monotonic() - last_commit >= self.config.store.commit_every_seconds
                )
                if due or len(errors) >= 64:
                    settle(keep=0)
                    self._commit(group, errors, report, source, info, profile)
                    group, errors = [], []
                    last_commit = time.monotonic()
        except (RecorderGoneError, StoreError, Stopped, CatalogError) as exc:
            report.error = str(exc)
            report.exception = exc
            for f in report.files:
                if f.status == "failed" and not f.message:
                    # the error line below already names the file in flight
                    named = str(exc).startswith(f.source_path + ":")
                    f.message = "not offloaded" if named else "not offloaded: " + str(exc)
            log.error("%s: offload stopped: %s", info.serial, exc, extra=REPORTED)
        finally:
            # copies already being verified are linked into the store: wait for them and
            # catalogue them too, whatever stopped the loop
            while inflight:
                try:
                    settle(keep=0)
                except StoreError as exc:
                    if report.error is None:
                        report.error, report.exception = str(exc), exc
            self._commit(group, errors, report, source, info, profile)

    def _one_file(
        self,
        source: Path,
        profile: Profile,
        info: RecorderInfo,
        m: MediaFile,
        media_root: Path,
        store_dir: str,
        result: FileResult,
    ) -> _Pending | None:
        try:
            fd = open_source(source, m)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RecorderError(f"{m.name}: became a symbolic link: not followed") from exc
            if exc.errno in (errno.ENOTCONN, errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN):
                raise RecorderGoneError(
                    f"{m.name}: the recorder went away ({exc.strerror}); nothing was removed "
                    "from it. Dock it again to finish the offload"
                ) from exc
            if exc.errno == errno.ENOENT and not source.exists():
                raise RecorderGoneError(f"{source}: the recorder went away") from exc
            raise RecorderError(f"{m.name}: cannot open ({exc.strerror})") from exc
        try:
            before = os.fstat(fd)
            result.mtime_ns = before.st_mtime_ns
            start, end, _origin = recorded_times(profile, m)
            age = (self.clock() - start).total_seconds() / 3600 if start else None
            late = age is not None and age > self.config.offload.late_after_hours
            result.late, result.age_hours = late, (round(age, 2) if age is not None else None)
            # already in the store? (re-dock, or a run after a crash)
            known = self.catalog.known_source(info.serial, m.name, before.st_size)
            if known:
                digest = hash_fd(fd, self.buf, progress=self._progress, source_name=m.name)
                self._check_unchanged(source, m, before, fd, digest)
                for row in known:
                    if row["sha256"] == digest.sha256 and self._store_copy_ok(row, rehash=True):
                        result.status, result.sha256 = "already", digest.sha256
                        result.store_path = row["store_path"]
                        result.message = "already in the store"
                        self._remove_batch(source, [(m, before.st_mtime_ns, row, result)], info)
                        return None
                os.lseek(fd, 0, os.SEEK_SET)
            rel = encode_relpath(m.relpath)
            dest = media_root / rel
            # the verifier thread reads the copy back from disk while it is written, and
            # links it into place once complete; _offload_files waits for it (while the
            # next file is copied) before the catalog commit
            follow = Follower()
            assert self._verifier is not None
            future = self._verifier.submit(
                self.store.finish, follow, self.vbuf, read_ahead=self.vbuf2, sync_dir=False
            )
            try:
                temp = self.store.write_temp(
                    fd,
                    dest,
                    self.buf,
                    size_hint=before.st_size,
                    source_name=m.name,
                    mtime_ns=before.st_mtime_ns,
                    progress=self._progress,
                    read_ahead=self.buf2,
                    spare=self.spare,
                    follow=follow,
                    # a store name cut to fit cannot give the recorder's name back
                    source_xattr=None if decode_relpath(rel) == m.relpath else m.relpath,
                )
                try:
                    self._check_unchanged(source, m, before, fd, temp.digest)
                except BaseException:
                    follow.abandon()
                    discard_temp(temp)
                    raise
            except BaseException:
                follow.abandon()
                raise
            follow.complete(temp)
        finally:
            _close_source(fd, m.name)
        store_path = f"{store_dir}/{MEDIA_DIR}/{rel}"
        result.sha256, result.store_path = temp.digest.sha256, store_path
        return _Pending(
            m,
            m.name,
            store_path,
            temp.digest,
            start,
            end,
            late,
            result.age_hours,
            before.st_mtime_ns,
            result,
            future,
        )

    def _progress(self, n: int) -> None:
        if self.stop.is_set():
            raise Stopped(
                "stopped on request (SIGTERM); the copy in flight was abandoned, files not yet "
                "offloaded stay on the recorder and the next offload resumes"
            )
        if self.progress:
            self.progress(n)

    def _check_unchanged(
        self, source: Path, m: MediaFile, before: os.stat_result, fd: int, digest: Digest
    ) -> None:
        after = os.fstat(fd)
        try:
            now = os.lstat(os.path.join(os.fsencode(source), m.relpath))
        except OSError as exc:
            raise RecorderGoneError(
                f"{m.name}: vanished during the copy ({exc.strerror}): the recorder went "
                "away or the file was deleted; nothing was removed from it. Dock it again to "
                "finish the offload"
            ) from exc
        same = (
            after.st_size == before.st_size == now.st_size == digest.size
            and after.st_mtime_ns == before.st_mtime_ns == now.st_mtime_ns
            and stat.S_ISREG(now.st_mode)
        )
        if not same:
            raise SourceChangedError(
                f"{m.name}: changed on the recorder during the copy (size {before.st_size} -> "
                f"{now.st_size}); the copy was discarded and the file stays on the recorder. "
                "It is offloaded at the next docking"
            )

    def _store_copy_ok(self, row: dict[str, Any], *, rehash: bool = False) -> bool:
        """The catalogued copy is in the store with its size (and, if asked, its hash)."""
        path = self.store.root / row["store_path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            log.error("catalogued file missing from the store: %s", path)
            return False
        if not (stat.S_ISREG(st.st_mode) and st.st_size == row["size"]):
            return False
        if rehash and hash_file(path, self.buf).sha256 != row["sha256"]:
            log.error("store copy does not match its catalog hash: %s", path)
            return False
        return True

    # -- commit and clear ---------------------------------------------------------------

    def _commit(
        self,
        group: list[_Pending],
        errors: list[FileResult],
        report: OffloadReport,
        source: Path,
        info: RecorderInfo,
        profile: Profile,
    ) -> None:
        if not group and not errors:
            return
        # the copies' directory entries are durable before their rows are (invariant 1)
        for folder in sorted({(self.store.root / p.store_path).parent for p in group}):
            try:
                fsync_dir(folder)
            except OSError as exc:
                raise StoreError(f"{folder}: cannot sync the store folder: {exc.strerror}") from exc
        at = now_utc()
        with self.catalog.tx() as conn:
            for p in group:
                entry = self.catalog.append_audit(
                    "file.stored",
                    p.store_path,
                    {
                        "session_id": report.session_id,
                        "device_serial": info.serial,
                        "source_path": p.source_path,
                        "sha256": p.digest.sha256,
                        "sm3": p.digest.sm3,
                        "size": p.digest.size,
                        "late": p.late,
                    },
                )
                conn.execute(
                    "INSERT INTO recordings (session_id, station_id, device_serial, officer_id,"
                    " unit, profile, source_path, source_size, source_mtime, store_path, size,"
                    " sha256, sm3, recorded_start, recorded_end, offloaded_at, age_hours, late,"
                    " audit_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        report.session_id,
                        self.config.station_id,
                        info.serial,
                        info.officer,
                        info.unit,
                        profile.name,
                        p.source_path,
                        p.media.size,
                        p.media.mtime_ns / 1e9,
                        p.store_path,
                        p.digest.size,
                        p.digest.sha256,
                        p.digest.sm3,
                        p.start.isoformat() if p.start else None,
                        p.end.isoformat() if p.end else None,
                        at,
                        p.age_hours,
                        1 if p.late else 0,
                        entry.seq,
                    ),
                )
                p.result.status = "stored"
            for r in errors:
                self.catalog.append_audit(
                    "file.error",
                    r.source_path,
                    {
                        "session_id": report.session_id,
                        "device_serial": info.serial,
                        "error": r.message,
                    },
                )
            conn.execute(
                "UPDATE sessions SET files_stored = files_stored + ?,"
                " bytes_stored = bytes_stored + ? WHERE id = ?",
                (len(group), sum(p.digest.size for p in group), report.session_id),
            )
        if not self.keep_source:
            # each file leaves the recorder only after its row is committed
            items = []
            for p in group:
                row = self.catalog.query(
                    "SELECT * FROM recordings WHERE store_path = ?", (p.store_path,)
                )
                if row:
                    items.append((p.media, p.mtime_ns, row[0], p.result))
            self._remove_batch(source, items, info)
        elif report.source_kept_reason is None:
            report.source_kept_reason = "keep-source is set"

    def clear(self, source: Path, report: OffloadReport) -> int:
        """Remove from the recorder every file ``report`` verified in the store.

        For the station, which offloads from a read-only mount (keep_source) and
        clears after remounting read-write. The same checks as during an offload
        apply to every file (invariant 1). Returns how many files were removed.
        """
        saved, self.keep_source = self.keep_source, False
        items = []
        try:
            for f in report.files:
                if f.status not in ("stored", "already") or f.removed or not f.store_path:
                    continue
                rows = self.catalog.query(
                    "SELECT * FROM recordings WHERE store_path = ?", (f.store_path,)
                )
                if not rows:
                    f.message = "kept on the recorder: its catalog row could not be read back"
                    continue
                items.append((MediaFile(f.relpath, f.size, f.mtime_ns), f.mtime_ns, rows[0], f))
            removed = self._remove_batch(source, items, report.info)
        finally:
            self.keep_source = saved
        if removed:
            report.source_kept_reason = None
        return removed

    def _remove_batch(
        self,
        source: Path,
        items: list[tuple[MediaFile, int, dict[str, Any], FileResult]],
        info: RecorderInfo,
    ) -> int:
        """Remove verified, catalogued files from the recorder (invariant 1).

        Each removal is announced in the catalog first (``removal_intent_at``), then the
        files are unlinked, then the removals are recorded with their audit entries: three
        steps for a whole group, whatever its size. A crash between the unlink and the
        record leaves the intent, and the next docking of the device records the removal
        (see :meth:`_settle_removal_intents`), so the audit log misses none.
        """
        if self.keep_source:
            return 0
        ready = [it for it in items if self._removable(source, *it)]
        if not ready:
            return 0
        with self.catalog.tx() as conn:
            conn.executemany(
                "UPDATE recordings SET removal_intent_at = ? WHERE id = ?",
                [(now_utc(), row["id"]) for _m, _t, row, _r in ready],
            )
        removed: list[tuple[str, dict[str, Any]]] = []
        try:
            for m, _mtime, row, result in ready:
                if self._unlink(source, m, result):
                    removed.append((m.name, row))
        finally:
            self._record_removals(removed, info, [row for _m, _t, row, _r in ready])
        return len(removed)

    def _removable(
        self, source: Path, m: MediaFile, mtime_ns: int, row: dict[str, Any], result: FileResult
    ) -> bool:
        """May this file leave the recorder now? (catalog trusted, source unchanged)"""
        reason = self._removal_refused(row)
        if reason:
            result.message = f"kept on the recorder: {reason}"
            return False
        try:
            now = os.lstat(os.path.join(os.fsencode(source), m.relpath))
        except OSError:
            return False
        if (
            not stat.S_ISREG(now.st_mode)
            or now.st_size != row["size"]
            or now.st_mtime_ns != mtime_ns
        ):
            result.message = "kept on the recorder: it changed since it was copied"
            return False
        return True

    def _unlink(self, source: Path, m: MediaFile, result: FileResult) -> bool:
        try:
            os.unlink(os.path.join(os.fsencode(source), m.relpath))
        except OSError as exc:
            if exc.errno == errno.EROFS:
                result.message = "kept on the recorder: mounted read-only"
            else:
                result.message = f"kept on the recorder: cannot remove ({exc.strerror})"
            return False
        result.removed = True
        return True

    def _record_removals(
        self,
        removed: list[tuple[str, dict[str, Any]]],
        info: RecorderInfo,
        announced: list[dict[str, Any]],
        *,
        note: str | None = None,
    ) -> None:
        at = now_utc()
        with self.catalog.tx() as conn:
            conn.executemany(
                "UPDATE recordings SET removal_intent_at = NULL WHERE id = ?",
                [(row["id"],) for row in announced],
            )
            for name, row in removed:
                conn.execute(
                    "UPDATE recordings SET source_removed_at = ? WHERE id = ?", (at, row["id"])
                )
                data = {
                    "device_serial": info.serial,
                    "sha256": row["sha256"],
                    "store_path": row["store_path"],
                }
                if note:
                    data["note"] = note
                self.catalog.append_audit("file.removed_from_recorder", name, data)

    def _settle_removal_intents(self, info: RecorderInfo, media: list[MediaFile]) -> None:
        """Record removals a dead process made but did not record (see _remove_batch)."""
        rows = self.catalog.query(
            "SELECT * FROM recordings WHERE device_serial = ? AND removal_intent_at IS NOT NULL",
            (info.serial,),
        )
        if not rows:
            return
        present = {m.name for m in media}
        gone = [(r["source_path"], r) for r in rows if r["source_path"] not in present]
        self._record_removals(
            gone, info, rows, note="removed before an interruption; recorded at the next docking"
        )

    def _removal_refused(self, row: dict[str, Any]) -> str | None:
        """Why the catalog cannot be trusted to remove a source now, or None."""
        if not self.catalog.path.exists():
            return "the catalog file is missing"
        try:
            fresh = self.catalog.query(
                "SELECT sha256, size, store_path FROM recordings WHERE id = ?", (row["id"],)
            )
        except Exception as exc:  # noqa: BLE001 - any catalog failure means: do not delete
            log.exception("catalog unreadable while clearing a recorder")
            return f"the catalog is unreadable ({exc})"
        if not fresh or fresh[0]["sha256"] != row["sha256"]:
            return "its catalog row could not be read back"
        if not self._store_copy_ok(row):
            return "its store copy is missing or has the wrong size"
        return None

    # -- session end --------------------------------------------------------------------

    def _finish(
        self,
        report: OffloadReport,
        store_dir: str,
        profile: Profile,
        started: datetime,
        source: Path,
    ) -> None:
        state = "done" if report.error is None else "interrupted"
        try:
            finalize_session(self.catalog, self.store, report.session_id, state)
        except RecdockError as exc:
            report.error = report.error or str(exc)
            log.error(
                "%s: session %s not finalised: %s", report.device_serial, report.session_id, exc
            )


def _close_source(fd: int, name: str) -> None:
    """Close a recorder file; a recorder that went away fails the close (FUSE flush).

    The descriptor is released either way. The failure must not mask the error
    being raised (a traceback instead of "the recorder went away"), nor discard a
    copy already verified and linked: the next file's open reports the recorder gone.
    """
    try:
        os.close(fd)
    except OSError as exc:
        level = logging.DEBUG if exc.errno in GONE_ERRNOS else logging.WARNING
        log.log(level, "%s: closing it on the recorder failed: %s", name, exc.strerror)


# -- sessions: finish, and recover after a crash --------------------------------------------


def _json(obj: Any) -> str:
    return canonical(obj)


def finalize_session(catalog: Catalog, store: Store, session_id: str, state: str) -> None:
    """Write the session's manifest and record (once), then mark it ended."""
    rows = catalog.query("SELECT * FROM sessions WHERE id = ?", (session_id,))
    if not rows:
        return
    sess = rows[0]
    recs = catalog.query(
        "SELECT store_path, sha256, size, source_path, recorded_start, recorded_end, late"
        " FROM recordings WHERE session_id = ? ORDER BY id",
        (session_id,),
    )
    session_dir = store.root / sess["store_dir"]
    ended = now_utc()
    if recs:
        prefix = sess["store_dir"] + "/"
        manifest = [(r["sha256"], r["store_path"][len(prefix) :]) for r in recs]
        info = json.loads(sess["device_info"] or "{}")
        record = {
            "session_id": session_id,
            "station_id": sess["station_id"],
            "device_serial": sess["device_serial"],
            "officer_id": sess["officer_id"],
            "unit": sess["unit"],
            "profile": sess["profile"],
            "device": info,
            "started_at": sess["started_at"],
            "ended_at": ended,
            "state": state,
            "clock_offset_s": sess["clock_offset_s"],
            "files": [
                {
                    "path": r["store_path"][len(prefix) :],
                    "source_path": r["source_path"],
                    "sha256": r["sha256"],
                    "size": r["size"],
                    "recorded_start": r["recorded_start"],
                    "recorded_end": r["recorded_end"],
                    "late": bool(r["late"]),
                }
                for r in recs
            ],
        }
        store.write_session_files(session_dir, manifest, record)
    with catalog.tx() as conn:
        cur = conn.execute(
            "UPDATE sessions SET state = ?, ended_at = ? WHERE id = ? AND ended_at IS NULL",
            (state, ended, session_id),
        )
        if cur.rowcount != 1:
            return  # already ended: one session.end entry per session
        catalog.append_audit(
            "session.end",
            session_id,
            {"state": state, "files_stored": len(recs), "device_serial": sess["device_serial"]},
        )


def recover_interrupted(catalog: Catalog, store: Store, home: Path, buf: memoryview) -> int:
    """Finish sessions a dead process left running; returns how many were recovered."""
    recovered = 0
    for sess in catalog.query("SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at"):
        sid = sess["id"]
        # holding the session's lock while recovering it: two bays starting at once after
        # a power cut must not both clean up and adopt the same session
        lock = SessionLock.try_acquire(home, sid)
        if lock is None:
            continue  # a live process owns it, or another one is recovering it
        try:
            still_open = catalog.query(
                "SELECT 1 FROM sessions WHERE id = ? AND ended_at IS NULL", (sid,)
            )
            if not still_open:
                continue  # recovered meanwhile by another process
            session_dir = store.root / sess["store_dir"]
            removed = store.remove_temp_files(session_dir)
            adopted = _adopt_orphans(catalog, store, sess, session_dir, buf)
            log.warning(
                "session %s (%s) was interrupted: %d temp files removed, "
                "%d verified copies adopted",
                sid,
                sess["device_serial"],
                removed,
                adopted,
            )
            finalize_session(catalog, store, sid, "interrupted")
            recovered += 1
        finally:
            lock.release()
    return recovered


def _adopt_orphans(
    catalog: Catalog, store: Store, sess: dict[str, Any], session_dir: Path, buf: memoryview
) -> int:
    media_root = session_dir / MEDIA_DIR
    if not media_root.is_dir():
        return 0
    known = {
        r["store_path"]
        for r in catalog.query(
            "SELECT store_path FROM recordings WHERE session_id = ?", (sess["id"],)
        )
    }
    adopted = 0
    for dirpath, _dirs, files in os.walk(media_root):
        for name in sorted(files):
            if name.startswith(TEMP_PREFIX):
                continue
            full = Path(dirpath) / name
            rel_store = full.relative_to(store.root).as_posix()
            if rel_store in known:
                continue
            # the recorder's path: kept on the file when its store name was cut
            raw = source_name_of(full) or decode_relpath(full.relative_to(media_root).as_posix())
            digest = hash_file(full, buf, sm3=store.sm3)
            st = full.stat()
            with catalog.tx() as conn:
                entry = catalog.append_audit(
                    "file.recovered",
                    rel_store,
                    {
                        "session_id": sess["id"],
                        "device_serial": sess["device_serial"],
                        "source_path": display(raw),
                        "sha256": digest.sha256,
                        "size": digest.size,
                        "note": "verified copy found after an interrupted offload; catalogued",
                    },
                )
                conn.execute(
                    "INSERT INTO recordings (session_id, station_id, device_serial, officer_id,"
                    " unit, profile, source_path, source_size, source_mtime, store_path, size,"
                    " sha256, sm3, offloaded_at, adopted, audit_seq)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?)",
                    (
                        sess["id"],
                        sess["station_id"],
                        sess["device_serial"],
                        sess["officer_id"],
                        sess["unit"],
                        sess["profile"],
                        display(raw),
                        digest.size,
                        st.st_mtime,
                        rel_store,
                        digest.size,
                        digest.sha256,
                        digest.sm3,
                        now_utc(),
                        entry.seq,
                    ),
                )
                conn.execute(
                    "UPDATE sessions SET files_stored = files_stored + 1,"
                    " bytes_stored = bytes_stored + ? WHERE id = ?",
                    (digest.size, sess["id"]),
                )
            adopted += 1
    return adopted


__all__ = [
    "FileResult",
    "OffloadReport",
    "Offloader",
    "Stopped",
    "finalize_session",
    "recover_interrupted",
    "MANIFEST",
    "SESSION_RECORD",
]
