"""The copy of one recorder file into the store: read once, hash, write; verified from disk.

The way a file takes: open (no symlinks, no FIFOs) → already in the store? (a re-dock, or a run
after a crash: the source is hashed and matched against the catalogued copy, itself re-hashed)
→ otherwise one read pass into reused buffers, hashed and written (``Store.write_temp``), while
the verifier thread reads each range back from disk and, once the copy is complete, links it
into the store (``Store.finish``) → the source unchanged? (size and mtime before and after, and
the path itself; its inode and change time too where the file system keeps them) → a
:class:`Pending` copy, which the offload catalogues with its group.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.catalog import Catalog, recordings
from agent.config import Config
from agent.errors import (
    GONE_ERRNOS,
    RecorderDamagedError,
    RecorderError,
    RecorderGoneError,
    SourceChangedError,
)
from agent.offload.clear import Clearer
from agent.offload.report import FileResult, SourceStamp, Stopped
from agent.recorder.filesystem import ChangeTimes
from agent.recorder.media import MediaFile, open_source, recorded_times
from agent.recorder.names import decode_relpath, encode_relpath
from agent.recorder.profiles import Profile
from agent.recorder.status import RecorderInfo
from agent.store import MEDIA_DIR, Store, discard_temp
from agent.store.follower import Follower
from agent.store.hashing import Digest, hash_fd
from agent.store.io import aligned_buffer

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """A copy verified (or being verified) in the store, not yet catalogued."""

    media: MediaFile
    source_path: str
    store_path: str
    digest: Digest
    start: datetime | None
    end: datetime | None
    late: bool
    age_hours: float | None
    stamp: SourceStamp  # the source when it was opened for the copy
    result: FileResult
    verified: Future[Digest | None] | None = None  # the verifier's verify-and-link of the copy


class Copier:
    """Copies the files of one offload; the verifier thread runs while :meth:`copy` goes on.

    Six buffers bound the memory whatever the file size: the copy (one being read, one hashed,
    two being written to the store disk) and the verifier's re-read (one read, one hashed).
    """

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        store: Store,
        clearer: Clearer,
        *,
        stop: threading.Event,
        clock: Callable[[], datetime],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.clearer = clearer
        self.stop = stop
        self.clock = clock
        self.progress = progress
        size = config.store.buffer_bytes
        self.buf = clearer.buf
        self.buf2 = clearer.read_ahead  # the clearer reads again only while no copy runs
        self.spare = [aligned_buffer(size) for _ in range(2)]
        self.vbuf = aligned_buffer(size)
        self.vbuf2 = aligned_buffer(size)  # the re-read's read-ahead
        self.verifier: ThreadPoolExecutor | None = None  # one per offload

    def start(self) -> None:
        self.verifier = ThreadPoolExecutor(1, thread_name_prefix="recdock-verify")

    def close(self) -> None:
        """Wait for the verifications in flight (their copies are linked or discarded)."""
        if self.verifier is not None:
            self.verifier.shutdown(wait=True)

    # -- one file ----------------------------------------------------------------------------

    def copy(
        self,
        source: Path,
        profile: Profile,
        info: RecorderInfo,
        m: MediaFile,
        store_dir: str,
        result: FileResult,
        *,
        clear: bool,
    ) -> Pending | None:
        """Copy ``m`` into the session's folder; None when it was already in the store."""
        fd = self._open(source, m)
        try:
            before = _fstat(fd, m)
            result.stamp = stamp = SourceStamp.of(before)
            start, end, _origin = recorded_times(profile, m)
            age = (self.clock() - start).total_seconds() / 3600 if start else None
            late = age is not None and age > self.config.offload.late_after_hours
            result.late, result.age_hours = late, (round(age, 2) if age is not None else None)
            if self._already_stored(source, info, m, fd, before, result, clear=clear):
                return None
            rel = encode_relpath(m.relpath)
            digest, verified = self._write(
                source, m, fd, before, self.store.root / store_dir / MEDIA_DIR / rel, rel
            )
        finally:
            close_source(fd, m.name)
        store_path = f"{store_dir}/{MEDIA_DIR}/{rel}"
        result.sha256, result.store_path = digest.sha256, store_path
        return Pending(
            m,
            m.name,
            store_path,
            digest,
            start,
            end,
            late,
            result.age_hours,
            stamp,
            result,
            verified,
        )

    @staticmethod
    def _open(source: Path, m: MediaFile) -> int:
        try:
            return open_source(source, m)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RecorderError(f"{m.name}: became a symbolic link: not followed") from exc
            if exc.errno in GONE_ERRNOS - {errno.ENOENT}:
                raise RecorderGoneError(
                    f"{m.name}: the recorder went away ({exc.strerror}); nothing was removed "
                    "from it. Dock it again to finish the offload"
                ) from exc
            if exc.errno == errno.ENOENT and not source.exists():
                raise RecorderGoneError(f"{source}: the recorder went away") from exc
            raise RecorderError(f"{m.name}: cannot open ({exc.strerror})") from exc

    def _already_stored(
        self,
        source: Path,
        info: RecorderInfo,
        m: MediaFile,
        fd: int,
        before: os.stat_result,
        result: FileResult,
        *,
        clear: bool,
    ) -> bool:
        """Already in the store? (re-dock, or a run after a crash): hashed and matched."""
        known = recordings.known_source(self.catalog, info.serial, m.name, before.st_size)
        if not known:
            return False
        digest = hash_fd(fd, self.buf, progress=self._progress, source_name=m.name)
        check_unchanged(source, m, before, fd, digest, self.clearer.ctimes)
        for row in known:
            if row["sha256"] == digest.sha256 and self.clearer.store_copy_ok(row, rehash=True):
                result.status, result.sha256 = "already", digest.sha256
                result.store_path = row["store_path"]
                result.message = "already in the store"
                if clear:
                    stamp = SourceStamp.of(before)  # the source as it was just hashed
                    self.clearer.remove(source, [(m, stamp, row, result)], info)
                return True
        os.lseek(fd, 0, os.SEEK_SET)
        return False

    def _write(
        self, source: Path, m: MediaFile, fd: int, before: os.stat_result, dest: Path, rel: str
    ) -> tuple[Digest, Future[Digest | None]]:
        """The copy, and the verifier's verify-and-link of it (the caller waits for it while
        the next file is copied, before the catalog commit)."""
        follow = Follower()
        assert self.verifier is not None
        future = self.verifier.submit(
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
                check_unchanged(source, m, before, fd, temp.digest, self.clearer.ctimes)
            except BaseException:
                follow.abandon()
                discard_temp(temp)
                raise
        except BaseException:
            follow.abandon()
            raise
        follow.complete(temp)
        return temp.digest, future

    def _progress(self, n: int) -> None:
        if self.stop.is_set():
            raise Stopped(
                "stopped on request (SIGTERM); the copy in flight was abandoned, files not yet "
                "offloaded stay on the recorder and the next offload resumes"
            )
        if self.progress:
            self.progress(n)


def check_unchanged(
    source: Path,
    m: MediaFile,
    before: os.stat_result,
    fd: int,
    digest: Digest,
    ctimes: ChangeTimes,
) -> None:
    """The source still has the size and mtime it had when it was opened (rule 1), and the
    same inode and change time where its file system keeps them (a rewrite in place whose
    size and mtime were put back)."""
    after = _fstat(fd, m)
    path = os.path.join(os.fsencode(source), m.relpath)
    try:
        now = os.lstat(path)
    except OSError as exc:
        raise RecorderGoneError(
            f"{m.name}: vanished during the copy ({exc.strerror}): the recorder went "
            "away or the file was deleted; nothing was removed from it. Dock it again to "
            "finish the offload"
        ) from exc
    if not _same_file(before, after, now, ctimes.kept(now, path)):
        raise SourceChangedError(
            f"{m.name}: changed on the recorder during the copy (size {before.st_size} -> "
            f"{now.st_size}); the copy was discarded and the file stays on the recorder. "
            "It is offloaded at the next docking"
        )
    if digest.size != before.st_size:
        # nothing about the file changed, yet it cannot be read whole: its file system
        # contradicts itself (a cluster chain cut short), and will at the next docking too
        raise RecorderDamagedError(
            f"{m.name}: the recorder's file system is damaged: the file is listed with "
            f"{before.st_size} bytes but only {digest.size} can be read (its cluster chain is "
            "broken); nothing was copied and it stays on the recorder. Take the recorder out "
            "of service and have its card imaged and repaired (docs/operations.md)"
        )


def _same_file(
    before: os.stat_result, after: os.stat_result, now: os.stat_result, ctime_kept: bool
) -> bool:
    """The open file and the path still say what the file said when it was opened."""
    same = (
        after.st_size == before.st_size == now.st_size
        and after.st_mtime_ns == before.st_mtime_ns == now.st_mtime_ns
        and stat.S_ISREG(now.st_mode)
    )
    if same and ctime_kept:
        same = after.st_ctime_ns == before.st_ctime_ns == now.st_ctime_ns and (
            (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
        )
    return same


def _fstat(fd: int, m: MediaFile) -> os.stat_result:
    """The open recorder file's status; a recorder that went away says so."""
    try:
        return os.fstat(fd)
    except OSError as exc:
        if exc.errno in GONE_ERRNOS:
            raise RecorderGoneError(
                f"{m.name}: the recorder went away ({exc.strerror}); nothing was removed "
                "from it. Dock it again to finish the offload"
            ) from exc
        raise RecorderError(f"{m.name}: cannot read its status ({exc.strerror})") from exc


def close_source(fd: int, name: str) -> None:
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
