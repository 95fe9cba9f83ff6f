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

import errno
import hashlib
import json
import logging
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable, Generator
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
MARKER = ".catalog-id"
MANIFEST = "manifest-sha256.txt"
SESSION_RECORD = "session.json"
MEDIA_DIR = "media"

#: errno values that mean the recorder itself went away (unplugged, FUSE process died).
GONE_ERRNOS = {errno.ENOTCONN, errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN, errno.ENOENT}
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


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
                f"reserve {self.reserve_bytes}. Free space on the store (sync and purge) or "
                "lower store.reserve_bytes; the recorder keeps the file"
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
    ) -> TempCopy:
        """The copy's first half: read once, hash and write a temp file, fsync it, 0444.

        With a second buffer (``read_ahead``) a reader thread fills one buffer from the
        recorder while this thread hashes and writes the other. Writeback of what is
        written starts every 32 MiB, so the final fsync is short and a large recording
        never sits in memory as dirty pages.
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
            raise _store_error(exc, dest, source_name) from exc
        try:
            hashers = _new_hashers(self.sm3)
            total = 0
            flushed = 0
            try:
                chunks = (
                    _read_ahead(src_fd, buf, read_ahead, source_name)
                    if read_ahead is not None and size_hint > len(buf)
                    else _read_plain(src_fd, buf, source_name)
                )
                try:
                    for view in chunks:
                        n = len(view)
                        for h in hashers:
                            h.update(view)
                        off = 0
                        while off < n:
                            off += os.write(fd, view[off:])
                        total += n
                        if total - flushed >= WRITEBACK_EVERY:
                            # starts writeback of the dirty range without waiting for it
                            os.posix_fadvise(fd, flushed, total - flushed, os.POSIX_FADV_DONTNEED)
                            flushed = total
                        if progress:
                            progress(n)
                finally:
                    chunks.close()
                os.fsync(fd)
                os.fchmod(fd, 0o444)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            return TempCopy(tmp, dest, _digest(hashers, total), source_name)
        except OSError as exc:
            _discard(tmp)
            raise _store_error(exc, dest, source_name) from exc
        except BaseException:
            _discard(tmp)
            raise

    def finish(self, temp: TempCopy, buf: memoryview, *, sync_dir: bool = True) -> Digest:
        """The copy's second half: re-read from disk, match, link into place (never replace).

        On any failure the temp file is removed and the store is as it was.
        """
        dest, tmp, written = temp.dest, temp.tmp, temp.digest
        try:
            reread = hash_file(tmp, buf, sm3=self.sm3)
            if reread != written:
                raise VerifyMismatchError(
                    f"{dest}: the copy read back from disk does not match what was read from "
                    f"{temp.source_name} (sha256 {reread.sha256[:12]}… != "
                    f"{written.sha256[:12]}…); the copy was discarded and the recorder keeps "
                    "the file. Check the store disk"
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
            raise _store_error(exc, dest, temp.source_name) from exc
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


def _read_plain(src_fd: int, buf: memoryview, source_name: str) -> Generator[memoryview]:
    while True:
        try:
            n = os.readv(src_fd, [buf])
        except OSError as exc:
            raise source_error(exc, source_name) from exc
        if n == 0:
            return
        yield buf[:n]


def _read_ahead(
    src_fd: int, buf_a: memoryview, buf_b: memoryview, source_name: str
) -> Generator[memoryview]:
    """Chunks of the source, read by a helper thread one buffer ahead of the consumer.

    os.readv releases the GIL, and so does hashlib on large updates, so reading the
    recorder overlaps hashing and writing. A chunk is valid until the next one is asked for.
    """
    free: queue.Queue[memoryview | None] = queue.Queue()
    full: queue.Queue[tuple[memoryview, int] | BaseException] = queue.Queue()
    free.put(buf_a)
    free.put(buf_b)

    def reader() -> None:
        try:
            while True:
                b = free.get()
                if b is None:
                    return
                n = os.readv(src_fd, [b])
                full.put((b, n))
                if n == 0:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            full.put(exc)

    thread = threading.Thread(target=reader, name="recdock-read-ahead", daemon=True)
    thread.start()
    current: memoryview | None = None
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                if isinstance(item, OSError):
                    raise source_error(item, source_name) from item
                raise item
            b, n = item
            if current is not None:
                free.put(current)
            if n == 0:
                return
            current = b
            yield b[:n]
    finally:
        free.put(None)
        free.put(None)
        thread.join(timeout=30)


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
