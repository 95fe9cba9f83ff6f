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
import secrets
import stat
from collections.abc import Callable
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


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    sm3: str | None


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


def hash_file(path: Path, buf: memoryview, *, sm3: bool = False, drop_cache: bool = True) -> Digest:
    """Hash a file as it is on disk (its cached pages dropped first when asked)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        hashers = _new_hashers(sm3)
        size = 0
        while True:
            n = os.readv(fd, [buf])
            if n == 0:
                break
            view = buf[:n]
            for h in hashers:
                h.update(view)
            size += n
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return _digest(hashers, size)
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

    def copy_in(
        self,
        src_fd: int,
        dest: Path,
        buf: memoryview,
        *,
        size_hint: int,
        source_name: str,
        mtime_ns: int | None = None,
        progress: Callable[[int], None] | None = None,
        before_link: Callable[[Digest], None] | None = None,
        sync_dir: bool = True,
    ) -> Digest:
        """Copy an open source file to ``dest``: one read pass, hashed while writing.

        Returns the digest of what was read; the copy has been re-read from disk and
        matched before it appears under its final name. ``before_link`` may raise to
        abandon the copy (the source changed meanwhile). With ``sync_dir`` False the
        caller fsyncs ``dest.parent`` itself (once for many files) before it relies on
        the copy, that is before the catalog row is committed. Raises SourceReadError /
        RecorderGoneError for the recorder's side, StoreError / StoreFullError for ours.
        """
        self.ensure_room(size_hint, source_name)
        makedirs_durable(dest.parent)
        if os.path.lexists(dest):
            raise StoreError(f"{dest}: already exists in the store; it is never replaced")
        tmp = dest.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            hashers = _new_hashers(self.sm3)
            total = 0
            try:
                while True:
                    try:
                        n = os.readv(src_fd, [buf])
                    except OSError as exc:
                        raise source_error(exc, source_name) from exc
                    if n == 0:
                        break
                    view = buf[:n]
                    for h in hashers:
                        h.update(view)
                    off = 0
                    while off < n:
                        off += os.write(fd, view[off:])
                    total += n
                    if progress:
                        progress(n)
                os.fsync(fd)
                os.fchmod(fd, 0o444)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            written = _digest(hashers, total)
            reread = hash_file(tmp, buf, sm3=self.sm3)
            if reread != written:
                raise VerifyMismatchError(
                    f"{dest}: the copy read back from disk does not match what was read from "
                    f"{source_name} (sha256 {reread.sha256[:12]}… != {written.sha256[:12]}…); "
                    "the copy was discarded and the recorder keeps the file. Check the store disk"
                )
            if before_link is not None:
                before_link(written)
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
            if exc.errno in FULL_ERRNOS:
                raise StoreFullError(
                    f"{dest.parent}: the store disk is full while copying {source_name}; the "
                    "partial copy was removed and the recorder keeps the file. Free space on "
                    "the store"
                ) from exc
            raise StoreError(f"{dest}: writing to the store failed: {exc.strerror}") from exc
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
