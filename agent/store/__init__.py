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

import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.errors import CatalogError, StoreError, StoreFullError, VerifyMismatchError
from agent.store.follower import Follower, TempCopy
from agent.store.hashing import Digest, digest_of, hash_range, new_hashers
from agent.store.io import (
    WRITEBACK_EVERY,
    Prefetcher,
    Writes,
    discard,
    fsync_dir,
    is_aligned,
    makedirs_durable,
    nothing,
    read_plain,
    set_direct,
    source_error,
    store_error,
    wait_on_disk,
    write_once,
)
from agent.store.layout import (
    MANIFEST,
    MARKER,
    MEDIA_DIR,
    PURGED_PREFIX,
    SESSION_RECORD,
    SOURCE_XATTR,
    TEMP_PREFIX,
)

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST",
    "MARKER",
    "MEDIA_DIR",
    "PURGED_PREFIX",
    "SESSION_RECORD",
    "SOURCE_XATTR",
    "TEMP_PREFIX",
    "Store",
    "discard_temp",
    "source_name_of",
]


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
                discard(p)
            elif p.name != MARKER:
                others.append(p.name)
        if others or not catalog_is_empty:
            raise CatalogError(
                f"{self.root}: the store has no {MARKER} marker"
                + (" but holds data" if others else "")
                + "; the catalog and the store do not belong together. Restore them from a "
                "backup; nothing is offloaded or removed meanwhile"
            )
        write_once(marker, catalog_id + "\n")

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
        well, that many writes are in flight at once while this thread hashes. Writeback of
        what is written starts every 32 MiB, so the final fsync is short and a large
        recording never sits in memory as dirty pages; with ``follow`` each such range is
        handed to the verifier (``finish``), which reads it back while the copy goes on. On
        failure the copy is abandoned (``follow`` told) and the temp file removed; on
        success the caller completes or abandons ``follow``.
        """
        self.ensure_room(size_hint, source_name)
        tmp, fd = self._open_temp(dest, source_name, follow)
        if source_xattr is not None:
            _keep_source_name(fd, dest, source_xattr, source_name)
        try:
            try:
                bufs = [buf, *([read_ahead] if read_ahead is not None else []), *spare]
                digest = self._copy(src_fd, fd, bufs, size_hint, source_name, progress, follow)
                os.fsync(fd)
                os.fchmod(fd, 0o444)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            return TempCopy(tmp, dest, digest, source_name)
        except BaseException as exc:
            if follow is not None:
                follow.abandon()
            discard(tmp)
            if isinstance(exc, OSError):
                raise store_error(exc, dest, source_name) from exc
            raise

    @staticmethod
    def _open_temp(dest: Path, source_name: str, follow: Follower | None) -> tuple[Path, int]:
        """Create the copy's temp file beside its final name; tell ``follow`` where it is."""
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
            raise store_error(exc, dest, source_name) from exc
        if follow is not None:
            follow.start(tmp, dest, source_name)
        return tmp, fd

    def _copy(
        self,
        src_fd: int,
        fd: int,
        bufs: list[memoryview],
        size_hint: int,
        source_name: str,
        progress: Callable[[int], None] | None,
        follow: Follower | None,
    ) -> Digest:
        """One read pass: each piece hashed and written at its offset; the digest."""
        if all(is_aligned(b) for b in bufs):
            # aligned buffers: read and write around the page cache (see set_direct)
            set_direct(src_fd, True)  # the recorder's file, where it can
            set_direct(fd, True)
        on_written = follow.written if follow is not None else None
        hashers = new_hashers(self.sm3)
        total = 0
        reader: Prefetcher | None = None
        if len(bufs) > 1 and size_hint > len(bufs[0]):
            # a reader thread, this thread hashing, up to len(bufs) - 2 writes in flight
            reader = Prefetcher(src_fd, bufs, error=lambda e: source_error(e, source_name))
            writes = Writes(fd, max(0, len(bufs) - 2), on_written)
            chunks: Iterator[tuple[memoryview, Callable[[], None]]] = iter(reader)
        else:
            writes = Writes(fd, 0, on_written)
            chunks = ((v, nothing) for v in read_plain(src_fd, bufs[0], source_name))
        try:
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
        return digest_of(hashers, total)

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
        try:
            bufs = [buf] if read_ahead is None else [buf, read_ahead]
            done = self._read_back(tmp, follow, bufs)
            if done is None:
                return None  # abandoned by the writer, who removes the temp file
            temp, reread = done
            dest, written = temp.dest, temp.digest
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
        except BaseException as exc:
            discard(tmp)
            if isinstance(exc, OSError):
                raise store_error(exc, follow.dest, follow.source_name) from exc
            raise

    def _read_back(
        self, tmp: Path, follow: Follower, bufs: list[memoryview]
    ) -> tuple[TempCopy, Digest] | None:
        """Read the copy back from disk, range by range as the writer hands them over.

        The completed copy and the digest of what was read back; None when abandoned.
        """
        hashers = new_hashers(self.sm3)
        pos = 0
        temp: TempCopy | None = None
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            # from the disk into the buffer, not through the page cache, where it can
            if is_aligned(bufs[0]):
                set_direct(fd, True)
            while temp is None:
                ready, temp = follow.wait_written(pos + WRITEBACK_EVERY)
                if ready is None:
                    return None
                if temp is None:
                    # on the disk, out of the cache, then read back
                    wait_on_disk(fd, pos, ready - pos)
                    os.posix_fadvise(fd, pos, ready - pos, os.POSIX_FADV_DONTNEED)
                else:
                    # the writer fsynced the whole copy; the rest, to the end of file
                    os.posix_fadvise(fd, pos, 0, os.POSIX_FADV_DONTNEED)
                    ready = None
                pos = hash_range(fd, bufs, hashers, pos, ready)
                if ready is not None and pos < ready:
                    raise VerifyMismatchError(
                        f"{follow.dest}: the copy on disk is shorter ({pos} bytes) than "
                        f"what was written ({ready}); the copy was discarded and the "
                        "recorder keeps the file. Check the store disk"
                    )
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return temp, digest_of(hashers, pos)

    def write_session_files(
        self, session_dir: Path, manifest: list[tuple[str, str]], record: dict[str, Any]
    ) -> None:
        """Write a finished session's manifest and record, once each."""
        lines = "".join(f"{sha}  {rel}\n" for sha, rel in sorted(manifest, key=lambda x: x[1]))
        if not (session_dir / MANIFEST).exists():
            write_once(session_dir / MANIFEST, lines)
        if not (session_dir / SESSION_RECORD).exists():
            text = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            write_once(session_dir / SESSION_RECORD, text)

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


def discard_temp(temp: TempCopy) -> None:
    """Remove a temp copy that will not be finished."""
    discard(temp.tmp)


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
