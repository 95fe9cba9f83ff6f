"""The station store: files written once, durably, verified from disk, then read-only.

The rules (docs/architecture.md states them first):

1. A file appears under its final name only complete, fsynced, read-only and
   verified: it is written to a temp file (``.recdock-partial-*``) in the
   destination folder, fsynced, made 0444, its pages dropped from the cache
   (``posix_fadvise(DONTNEED)`` after the fsync), re-read from disk and hashed
   again, then linked to its final name (never replacing an existing file) and
   the folder fsynced.
2. A temp file is never media: nothing reads, catalogs or uploads it; the next
   offload removes it.
3. The store never goes below its configured free-space reserve; a full disk is a
   permanent error (no retry loop spins on it).
4. Anyone can check a session with ``sha256sum -c manifest-sha256.txt``.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import logging
import mmap
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import (
    CatalogError,
    RecorderError,
    RecorderGoneError,
    StoreError,
    StoreFullError,
    VerifyMismatchError,
)

log = logging.getLogger(__name__)

TEMP_PREFIX = ".recdock-partial-"
# the recorder's own path of a copy whose store name was cut (names.encode_component): kept on
# the file itself, so a copy adopted after a crash is catalogued under its real name
SOURCE_XATTR = "user.recdock.source"
MARKER = ".catalog-id"
MANIFEST = "manifest-sha256.txt"
SESSION_RECORD = "session.json"
MEDIA_DIR = "media"

#: errno values that mean the recorder itself went away (unplugged, FUSE process died).
GONE_ERRNOS = {errno.ENOTCONN, errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN, errno.ENOENT}
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


#: Every this many bytes written, writeback of them starts, and the verifier may read
#: them back from disk while the rest of the file is still being copied.
WRITEBACK_EVERY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    sm3: str | None


@dataclass(frozen=True)
class TempCopy:
    """A copy written, fsynced and read-only under its temp name, not yet verified."""

    tmp: Path
    dest: Path
    digest: Digest
    source_name: str


class SourceReadError(RecorderError):
    """Reading a file on the recorder failed (I/O error)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry changed."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


def _new_hashers(sm3: bool) -> list[Any]:
    hs = [hashlib.sha256()]
    if sm3:
        hs.append(hashlib.new("sm3"))
    return hs


def _digest(hashers: list[Any], size: int) -> Digest:
    return Digest(
        size, hashers[0].hexdigest(), hashers[1].hexdigest() if len(hashers) > 1 else None
    )


def hash_fd(
    fd: int,
    buf: memoryview,
    *,
    sm3: bool = False,
    progress: Callable[[int], None] | None = None,
    source_name: str | None = None,
) -> Digest:
    """Hash an open file from its current position to its end, through ``buf``.

    With ``source_name`` the file is on a recorder: a read error becomes the recorder's
    error (SourceReadError, or RecorderGoneError when it went away).
    """
    hashers = _new_hashers(sm3)
    size = 0
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as exc:
            if source_name is None:
                raise
            raise source_error(exc, source_name) from exc
        if n == 0:
            return _digest(hashers, size)
        view = buf[:n]
        for h in hashers:
            h.update(view)
        size += n
        if progress:
            progress(n)


def hash_file(path: Path, buf: memoryview, *, sm3: bool = False, drop_cache: bool = True) -> Digest:
    """Hash a file as it is on disk (its cached pages dropped first when asked)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        digest = hash_fd(fd, buf, sm3=sm3)
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return digest
    finally:
        os.close(fd)


#: O_DIRECT wants the buffer's address, the length and the file offset aligned to the
#: disk's logical block; a page is a multiple of the block size of every disk a station uses.
DIRECT_ALIGN = mmap.PAGESIZE


def _keep_source_name(fd: int, dest: Path, raw: bytes, source_name: str) -> None:
    try:
        os.setxattr(fd, SOURCE_XATTR, raw)
    except OSError as exc:
        # the copy is as good without it; only its adoption after a crash loses the name
        log.warning(
            "%s: the store's file system keeps no extended attribute (%s): if the offload "
            "is interrupted before this copy is catalogued, it is catalogued under its "
            "shortened store name %s and the next offload stores it once more",
            source_name,
            exc.strerror,
            dest.name,
        )


def source_name_of(path: Path) -> bytes | None:
    """The recorder path kept on a store file by ``write_temp(source_xattr=...)``."""
    try:
        return os.getxattr(path, SOURCE_XATTR, follow_symlinks=False)
    except OSError:
        return None


def aligned_buffer(size: int) -> memoryview:
    """A reusable page-aligned buffer (an anonymous mmap), which O_DIRECT can write from."""
    return memoryview(mmap.mmap(-1, size))


def _is_aligned(buf: memoryview) -> bool:
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(buf)) % DIRECT_ALIGN == 0
    except (TypeError, ValueError):  # a read-only or empty buffer
        return False


def set_direct(fd: int, on: bool) -> bool:
    """Switch O_DIRECT on or off for an open file; whether it is now on.

    Written with O_DIRECT, a copy goes from the offload's own buffer to the disk and
    never through the page cache: no second copy of every byte in memory, no dirty
    pages, and nothing cached that the verifier could mistake for the disk. File
    systems without it (tmpfs on older kernels, some FUSE) say EINVAL: then the copy
    is written through the page cache as before.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL and on:
            return False
        raise
    return on


class Follower:
    """One copy handed from its writer (``Store.write_temp``) to its verifier (``Store.finish``).

    The writer says when the temp file exists (``start``), how far writeback has been
    started (``written``), and at the end either ``complete`` (fsynced, read-only, the
    source unchanged: it may be linked) or ``abandon`` (it is being removed). The
    verifier waits on it and never links a copy that was not completed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tmp: Path | None = None
        self.dest: Path = Path()
        self.source_name = ""
        self._written = 0
        self._temp: TempCopy | None = None
        self._abandoned = False

    # -- the writer's side --------------------------------------------------------------

    def start(self, tmp: Path, dest: Path, source_name: str) -> None:
        with self._cond:
            self._tmp, self.dest, self.source_name = tmp, dest, source_name
            self._cond.notify_all()

    def written(self, n: int) -> None:
        with self._cond:
            self._written = n
            self._cond.notify_all()

    def complete(self, temp: TempCopy) -> None:
        with self._cond:
            if not self._abandoned:
                self._temp = temp
            self._cond.notify_all()

    def abandon(self) -> None:
        with self._cond:
            if self._temp is None:
                self._abandoned = True
            self._cond.notify_all()

    # -- the verifier's side -------------------------------------------------------------

    def wait_started(self) -> Path | None:
        """The temp file once the writer created it; None if the copy was abandoned."""
        with self._cond:
            self._cond.wait_for(lambda: self._tmp is not None or self._abandoned)
            return None if self._abandoned else self._tmp

    def wait_written(self, want: int) -> tuple[int | None, TempCopy | None]:
        """Wait until ``want`` bytes are written, or the copy is completed or abandoned.

        Returns (bytes written, None) while the copy goes on, (bytes, the completed copy)
        once it is complete, (None, None) when it was abandoned.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._written >= want or self._temp is not None or self._abandoned
            )
            if self._abandoned:
                return None, None
            return self._written, self._temp


SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not glibc/Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_sync_file_range = _libc_sync_file_range()


def wait_on_disk(fd: int, offset: int, length: int) -> None:
    """Write out ``length`` bytes of a file from ``offset`` and wait until they are on disk.

    sync_file_range(2) (no Python binding: ctypes) waits for just that range, so the
    verifier can read it back while later ranges are still being written. Where it is
    missing, fdatasync(2) of the whole file does the same, more slowly.
    """
    flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
    if _sync_file_range is not None and _sync_file_range(fd, offset, length, flags) == 0:
        return
    os.fdatasync(fd)


def _hash_range(
    fd: int, bufs: list[memoryview], hashers: list[Any], pos: int, end: int | None
) -> int:
    """Read from ``pos`` up to ``end`` (None: the end of file) and hash; the new position.

    With two buffers the next piece is read (a Prefetcher) while this one is hashed. A
    read O_DIRECT refuses (EINVAL: an unaligned piece) is read again through the cache.
    """
    os.lseek(fd, pos, os.SEEK_SET)
    reader = Prefetcher(fd, bufs, limit=None if end is None else end - pos)
    try:
        for view, release in reader:
            for h in hashers:
                h.update(view)
            pos += len(view)
            release()
    finally:
        reader.close()
    return pos


class Store:
    def __init__(self, root: Path, *, reserve_bytes: int, sm3: bool = False):
        self.root = root
        self.reserve_bytes = reserve_bytes
        self.sm3 = sm3

    # -- the store belongs to one catalog ------------------------------------------------

    def bind(self, catalog_id: str, catalog_is_empty: bool) -> None:
        """Check (or, for a new station, write) the marker tying the store to its catalog.

        The marker is written only when both sides are new: an empty store and a
        catalog that never recorded a session. Any other mismatch means the catalog
        was lost or replaced, and nothing may be offloaded or removed.
        """
        makedirs_durable(self.root)
        marker = self.root / MARKER
        if marker.exists():
            found = marker.read_text().strip()
            if found != catalog_id:
                raise CatalogError(
                    f"{self.root}: the store belongs to catalog {found[:8]}…, not to this catalog "
                    f"{catalog_id[:8]}… (was the catalog deleted or replaced?). Restore the "
                    "station's catalog.db from a backup; nothing is offloaded or removed meanwhile"
                )
            return
        others = []
        for p in self.root.iterdir():
            if p.name.startswith(TEMP_PREFIX) and p.is_file():
                # a marker write that was killed before its link: never data
                _discard(p)
            elif p.name != MARKER:
                others.append(p.name)
        if others or not catalog_is_empty:
            raise CatalogError(
                f"{self.root}: the store has no {MARKER} marker"
                + (" but holds data" if others else "")
                + "; the catalog and the store do not belong together. Restore them from a "
                "backup; nothing is offloaded or removed meanwhile"
            )
        self._write_small(marker, catalog_id + "\n")

    # -- space ------------------------------------------------------------------------

    def free_bytes(self) -> int:
        makedirs_durable(self.root)
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def ensure_room(self, size: int, what: str) -> None:
        free = self.free_bytes()
        if free - size < self.reserve_bytes:
            raise StoreFullError(
                f"{self.root}: no room for {what} ({size} bytes): {free} bytes free, "
                f"reserve {self.reserve_bytes}. Give the store more room or lower "
                "store.reserve_bytes (never delete store files by hand); the recorder keeps "
                "the file"
            )

    # -- writing ----------------------------------------------------------------------

    def write_temp(
        self,
        src_fd: int,
        dest: Path,
        buf: memoryview,
        *,
        size_hint: int,
        source_name: str,
        mtime_ns: int | None = None,
        progress: Callable[[int], None] | None = None,
        read_ahead: memoryview | None = None,
        spare: Sequence[memoryview] = (),
        follow: Follower | None = None,
        source_xattr: bytes | None = None,
    ) -> TempCopy:
        """The copy's first half: read once, hash and write a temp file, fsync it, 0444.

        ``source_xattr``, when given, is kept on the file as :data:`SOURCE_XATTR` (the
        recorder's path of a copy whose store name cannot give it back).

        With a second buffer (``read_ahead``) a reader thread fills one buffer from the
        recorder while this thread hashes and writes the other; with ``spare`` buffers as
        well, that many writes are in flight at once while this thread hashes. Writeback of what is
        written starts every 32 MiB, so the final fsync is short and a large recording
        never sits in memory as dirty pages; with ``follow`` each such range is handed
        to the verifier (``finish``), which reads it back while the copy goes on. On
        failure the copy is abandoned (``follow`` told) and the temp file removed; on
        success the caller completes or abandons ``follow``.
        """
        self.ensure_room(size_hint, source_name)
        if os.path.lexists(dest):
            raise StoreError(f"{dest}: already exists in the store; it is never replaced")
        tmp = dest.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            makedirs_durable(dest.parent)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:  # no inode left, read-only store...
            if follow is not None:
                follow.abandon()
            raise _store_error(exc, dest, source_name) from exc
        if follow is not None:
            follow.start(tmp, dest, source_name)
        if source_xattr is not None:
            _keep_source_name(fd, dest, source_xattr, source_name)
        try:
            # aligned buffers: read and write around the page cache (see set_direct)
            bufs = [buf, *([read_ahead] if read_ahead is not None else []), *spare]
            if all(_is_aligned(b) for b in bufs):
                set_direct(src_fd, True)  # the recorder's file, where it can
                set_direct(fd, True)
            hashers = _new_hashers(self.sm3)
            total = 0
            try:
                if len(bufs) > 1 and size_hint > len(buf):
                    # a reader thread, this thread hashing, up to len(bufs) - 2 writes in flight
                    reader = Prefetcher(src_fd, bufs, error=lambda e: source_error(e, source_name))
                    writes = _Writes(fd, max(0, len(bufs) - 2), follow)
                else:
                    reader, writes = None, _Writes(fd, 0, follow)
                try:
                    chunks = (
                        iter(reader)
                        if reader is not None
                        else ((v, _nothing) for v in _read_plain(src_fd, buf, source_name))
                    )
                    for view, release in chunks:
                        n = len(view)
                        for h in hashers:
                            h.update(view)
                        writes.put(view, total, release)
                        total += n
                        if progress:
                            progress(n)
                    writes.drain()
                finally:
                    writes.close()
                    if reader is not None:
                        reader.close()
                os.fsync(fd)
                os.fchmod(fd, 0o444)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            return TempCopy(tmp, dest, _digest(hashers, total), source_name)
        except OSError as exc:
            if follow is not None:
                follow.abandon()
            _discard(tmp)
            raise _store_error(exc, dest, source_name) from exc
        except BaseException:
            if follow is not None:
                follow.abandon()
            _discard(tmp)
            raise

    def finish(
        self,
        follow: Follower,
        buf: memoryview,
        *,
        read_ahead: memoryview | None = None,
        sync_dir: bool = True,
    ) -> Digest | None:
        """The copy's second half: re-read it from disk, match, link into place (never replace).

        Runs in the verifier thread while ``write_temp`` writes the copy: every range the
        writer hands over (``Follower.written``) is waited for until it is on the disk,
        dropped from the page cache and read back, so a large recording is verified
        while it is copied rather than after. Nothing is linked before the writer calls
        ``Follower.complete`` (the copy fsynced, read-only, its source checked unchanged)
        and the whole file read back from disk matches the hash taken while copying.

        None when the writer abandoned the copy. On any failure the temp file is
        removed and the store is as it was.
        """
        tmp = follow.wait_started()
        if tmp is None:
            return None
        temp: TempCopy | None = None
        try:
            hashers = _new_hashers(self.sm3)
            pos = 0
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                # from the disk into the buffer, not through the page cache, where it can
                if _is_aligned(buf):
                    set_direct(fd, True)
                bufs = [buf] if read_ahead is None else [buf, read_ahead]
                while temp is None:
                    ready, temp = follow.wait_written(pos + WRITEBACK_EVERY)
                    if ready is None:
                        return None  # abandoned by the writer, who removes the temp file
                    if temp is None:
                        # on the disk, out of the cache, then read back
                        wait_on_disk(fd, pos, ready - pos)
                        os.posix_fadvise(fd, pos, ready - pos, os.POSIX_FADV_DONTNEED)
                    else:
                        # the writer fsynced the whole copy; the rest, to the end of file
                        os.posix_fadvise(fd, pos, 0, os.POSIX_FADV_DONTNEED)
                        ready = None
                    pos = _hash_range(fd, bufs, hashers, pos, ready)
                    if ready is not None and pos < ready:
                        raise VerifyMismatchError(
                            f"{follow.dest}: the copy on disk is shorter ({pos} bytes) than "
                            f"what was written ({ready}); the copy was discarded and the "
                            "recorder keeps the file. Check the store disk"
                        )
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            dest, written = temp.dest, temp.digest
            reread = _digest(hashers, pos)
            if reread != written:
                raise VerifyMismatchError(
                    f"{dest}: the copy read back from disk does not match what was read from "
                    f"{temp.source_name} (sha256 {reread.sha256[:12]}… != "
                    f"{written.sha256[:12]}…, {reread.size} != {written.size} bytes); the copy "
                    "was discarded and the recorder keeps the file. Check the store disk"
                )
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise StoreError(
                    f"{dest}: already exists in the store; it is never replaced"
                ) from None
            os.unlink(tmp)
            if sync_dir:
                fsync_dir(dest.parent)
            return written
        except OSError as exc:
            _discard(tmp)
            raise _store_error(exc, follow.dest, follow.source_name) from exc
        except BaseException:
            _discard(tmp)
            raise

    def _write_small(self, path: Path, text: str) -> None:
        """Write a small file once: temp, fsync, 0444, link to its final name, fsync dir."""
        makedirs_durable(path.parent)
        tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                data = text.encode("utf-8")
                off = 0
                while off < len(data):
                    off += os.write(fd, data[off:])
                os.fsync(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            os.link(tmp, path)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise StoreFullError(f"{path}: the store disk is full") from exc
            if isinstance(exc, FileExistsError):
                raise StoreError(
                    f"{path}: already exists in the store; it is never replaced"
                ) from exc
            raise StoreError(f"{path}: writing to the store failed: {exc.strerror}") from exc
        finally:
            _discard(tmp)
        fsync_dir(path.parent)

    def write_session_files(
        self, session_dir: Path, manifest: list[tuple[str, str]], record: dict[str, Any]
    ) -> None:
        """Write a finished session's manifest and record, once each."""
        lines = "".join(f"{sha}  {rel}\n" for sha, rel in sorted(manifest, key=lambda x: x[1]))
        if not (session_dir / MANIFEST).exists():
            self._write_small(session_dir / MANIFEST, lines)
        if not (session_dir / SESSION_RECORD).exists():
            text = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            self._write_small(session_dir / SESSION_RECORD, text)

    def remove_temp_files(self, folder: Path) -> int:
        """Remove temp files an interrupted copy left in ``folder`` and below."""
        removed = 0
        if not folder.exists():
            return 0
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
        return removed


def _store_error(exc: OSError, dest: Path, source_name: str) -> StoreError:
    if exc.errno in FULL_ERRNOS:
        return StoreFullError(
            f"{dest.parent}: the store disk is full while copying {source_name}; the "
            "partial copy was removed and the recorder keeps the file. Free space on "
            "the store"
        )
    return StoreError(f"{dest}: writing to the store failed: {exc.strerror}")


def _read_source(fd: int, buf: memoryview) -> int:
    """One read from the recorder; with O_DIRECT refused for it, again without."""
    try:
        return os.readv(fd, [buf])
    except OSError as exc:
        if exc.errno != errno.EINVAL or not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise
    set_direct(fd, False)
    return os.readv(fd, [buf])


def _nothing() -> None:
    pass


def _read_plain(src_fd: int, buf: memoryview, source_name: str) -> Generator[memoryview]:
    while True:
        try:
            n = _read_source(src_fd, buf)
        except OSError as exc:
            raise source_error(exc, source_name) from exc
        if n == 0:
            return
        yield buf[:n]


class Prefetcher:
    """Reads a file ahead, in order, into a pool of reused buffers, on a helper thread.

    Iterating yields ``(chunk, release)``: the chunk's buffer is read into again only
    after ``release()``, so a consumer may hold several chunks at once (the copy keeps
    two in flight to the disk). os.readv releases the GIL, and so do hashlib on large
    updates, os.pwrite and a socket's send. ``error`` turns a read's OSError into the
    exception raised to the consumer. Reads stop after ``limit`` bytes when given.
    """

    def __init__(
        self,
        fd: int,
        bufs: list[memoryview],
        *,
        limit: int | None = None,
        error: Callable[[OSError], BaseException] | None = None,
    ) -> None:
        self._free: queue.Queue[memoryview | None] = queue.Queue()
        self._full: queue.Queue[tuple[memoryview, int] | BaseException] = queue.Queue()
        for b in bufs:
            self._free.put(b)
        self._fd, self._limit, self._error, self._n = fd, limit, error, len(bufs)
        self._thread = threading.Thread(target=self._read, name="recdock-read-ahead", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        left = self._limit
        try:
            while True:
                b = self._free.get()
                if b is None:
                    return
                if left == 0:
                    n = 0
                else:
                    n = _read_source(self._fd, b if left is None else b[: min(len(b), left)])
                self._full.put((b, n))
                if n == 0:
                    return
                if left is not None:
                    left -= n
        except BaseException as exc:  # handed to the consumer, which raises it
            self._full.put(exc)

    def __iter__(self) -> Iterator[tuple[memoryview, Callable[[], None]]]:
        while True:
            item = self._full.get()
            if isinstance(item, BaseException):
                if isinstance(item, OSError) and self._error is not None:
                    raise self._error(item) from item
                raise item
            b, n = item
            if n == 0:
                return
            yield b[:n], functools.partial(self._free.put, b)

    def close(self) -> None:
        for _ in range(self._n + 1):
            self._free.put(None)
        self._thread.join(timeout=30)


def prefetch_chunks(
    fd: int,
    buf_a: memoryview,
    buf_b: memoryview,
    *,
    limit: int | None = None,
    error: Callable[[OSError], BaseException] | None = None,
) -> Generator[memoryview]:
    """Chunks of a file read one buffer ahead (a ``Prefetcher`` of two buffers).

    A chunk is valid until the next one is asked for.
    """
    reader = Prefetcher(fd, [buf_a, buf_b], limit=limit, error=error)
    try:
        previous: Callable[[], None] | None = None
        for view, release in reader:
            if previous is not None:
                previous()
            previous = release
            yield view
    finally:
        reader.close()


class _Writes:
    """A copy's writes, each at its offset; up to ``in_flight`` at once on helper threads.

    Two writes in flight keep the disk busy while the next piece is hashed (an O_DIRECT
    write returns only when the disk has the data). Writes complete in order for the
    verifier: a range is handed to ``follow`` only when everything before it is written.
    """

    def __init__(self, fd: int, in_flight: int, follow: Follower | None) -> None:
        self.fd = fd
        self.follow = follow
        self.in_flight = in_flight
        self.pool = (
            ThreadPoolExecutor(in_flight, thread_name_prefix="recdock-write") if in_flight else None
        )
        self.pending: collections.deque[tuple[int, Future[None], Callable[[], None]]] = (
            collections.deque()
        )
        self.flushed = 0

    def put(self, view: memoryview, offset: int, release: Callable[[], None]) -> None:
        end = offset + len(view)
        if self.pool is None:
            _pwrite_all(self.fd, view, offset)
            release()
            self._written(end)
            return
        self.pending.append((end, self.pool.submit(_pwrite_all, self.fd, view, offset), release))
        while self.pending and (len(self.pending) > self.in_flight or self.pending[0][1].done()):
            self._reap()

    def _reap(self) -> None:
        end, future, release = self.pending.popleft()
        future.result()
        release()
        self._written(end)

    def _written(self, end: int) -> None:
        if end - self.flushed >= WRITEBACK_EVERY:
            # starts writeback of the dirty range (if any) without waiting for it
            os.posix_fadvise(self.fd, self.flushed, end - self.flushed, os.POSIX_FADV_DONTNEED)
            self.flushed = end
            if self.follow is not None:
                self.follow.written(end)

    def drain(self) -> None:
        while self.pending:
            self._reap()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # after a failure: let the writes in flight end


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset``; a piece O_DIRECT cannot take goes through the cache."""
    done = 0
    while done < len(view):
        rest = view[done:]
        at = offset + done
        direct = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        if direct and (len(rest) % DIRECT_ALIGN or at % DIRECT_ALIGN):
            # the last piece of a file (or a short read): the page cache can write it
            set_direct(fd, False)
        try:
            done += os.pwrite(fd, rest, at)
        except OSError as exc:
            if direct and exc.errno == errno.EINVAL:
                set_direct(fd, False)
                continue
            raise


def discard_temp(temp: TempCopy) -> None:
    """Remove a temp copy that will not be finished."""
    _discard(temp.tmp)


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("could not remove temp file %s", path)


def source_error(exc: OSError, source_name: str) -> RecorderError:
    if exc.errno in GONE_ERRNOS:
        return RecorderGoneError(
            f"{source_name}: the recorder went away while it was read ({exc.strerror}); "
            "nothing was removed from it. Dock it again to finish the offload"
        )
    return SourceReadError(
        f"{source_name}: read error on the recorder ({exc.strerror}); the file stays on the "
        "recorder. Dock it again; if it repeats the recorder's storage is failing: report it"
    )


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
