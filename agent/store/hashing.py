"""Fingerprints: SHA-256 always, SM3 (GB/T 32905) when asked, through hashlib (OpenSSL).

hashlib releases the GIL for updates above 2 KiB, so hashing overlaps the reads and writes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.store.io import Prefetcher, source_error


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    sm3: str | None


def new_hashers(sm3: bool) -> list[Any]:
    hs = [hashlib.sha256()]
    if sm3:
        hs.append(hashlib.new("sm3"))
    return hs


def digest_of(hashers: list[Any], size: int) -> Digest:
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
    hashers = new_hashers(sm3)
    size = 0
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as exc:
            if source_name is None:
                raise
            raise source_error(exc, source_name) from exc
        if n == 0:
            return digest_of(hashers, size)
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


def hash_range(
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
