"""The store's I/O: durable folders, page-aligned buffers, O_DIRECT, read-ahead and writes.

Nothing here knows the store's rules; agent/store/__init__.py keeps them. The uploader
(sync/upload/chunks.py) reads store files through the same read-ahead.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import functools
import logging
import mmap
import os
import queue
import secrets
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from agent.errors import (
    FULL_ERRNOS,
    GONE_ERRNOS,
    RecorderError,
    RecorderGoneError,
    StoreError,
    StoreFullError,
)
from agent.store.layout import TEMP_PREFIX

log = logging.getLogger(__name__)

#: Every this many bytes written, writeback of them starts, and the verifier may read
#: them back from disk while the rest of the file is still being copied.
WRITEBACK_EVERY = 32 * 1024 * 1024


#: O_DIRECT wants the buffer's address, the length and the file offset aligned to the
#: disk's logical block; a page is a multiple of the block size of every disk a station uses.
DIRECT_ALIGN = mmap.PAGESIZE


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


def aligned_buffer(size: int) -> memoryview:
    """A reusable page-aligned buffer (an anonymous mmap), which O_DIRECT can write from."""
    return memoryview(mmap.mmap(-1, size))


def is_aligned(buf: memoryview) -> bool:
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


def _read_source(fd: int, buf: memoryview) -> int:
    """One read from the recorder; with O_DIRECT refused for it, again without."""
    try:
        return os.readv(fd, [buf])
    except OSError as exc:
        if exc.errno != errno.EINVAL or not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise
    set_direct(fd, False)
    return os.readv(fd, [buf])


def nothing() -> None:
    pass


def read_plain(src_fd: int, buf: memoryview, source_name: str) -> Generator[memoryview]:
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


class Writes:
    """A copy's writes, each at its offset; up to ``in_flight`` at once on helper threads.

    Two writes in flight keep the disk busy while the next piece is hashed (an O_DIRECT
    write returns only when the disk has the data). Writes complete in order for the
    verifier: a range is announced (``on_written``) only when everything before it is written.
    """

    def __init__(self, fd: int, in_flight: int, on_written: Callable[[int], None] | None) -> None:
        self.fd = fd
        self.on_written = on_written
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
            if self.on_written is not None:
                self.on_written(end)

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


def discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("could not remove temp file %s", path)


class SourceReadError(RecorderError):
    """Reading a file on the recorder failed (I/O error)."""


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


def store_error(exc: OSError, dest: Path, source_name: str) -> StoreError:
    if exc.errno in FULL_ERRNOS:
        return StoreFullError(
            f"{dest.parent}: the store disk is full while copying {source_name}; the "
            "partial copy was removed and the recorder keeps the file. Free space on "
            "the store"
        )
    return StoreError(f"{dest}: writing to the store failed: {exc.strerror}")


def write_once(path: Path, text: str) -> None:
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
            raise StoreError(f"{path}: already exists in the store; it is never replaced") from exc
        raise StoreError(f"{path}: writing to the store failed: {exc.strerror}") from exc
    finally:
        discard(tmp)
    fsync_dir(path.parent)
