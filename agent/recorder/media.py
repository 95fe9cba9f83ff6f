"""A mounted recorder's media: listing, opening, recording times, small writes.

Everything a recorder presents is untrusted (rule 6, docs/architecture.md): names are bytes and
are never used as paths outside the recorder, symlinks are never followed, FIFOs
and device files are never opened, the status file is size-limited and
schema-checked, and its clock is only a measurement.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wcmatch import glob as wglob

from agent.errors import GONE_ERRNOS, RecorderError, RecorderGoneError
from agent.recorder.names import display
from agent.recorder.profiles import Profile

log = logging.getLogger(__name__)

#: Folders listed below a profile's ``media.max_depth``: their media are named, one by one, as
#: left on the recorder; deeper still, a folder is reported as a whole (on a damaged card a
#: folder can hold its own ancestor, and a walk without an end would never finish).
LISTED_BEYOND = 32
GLOB_FLAGS = wglob.GLOBSTAR | wglob.IGNORECASE | wglob.DOTGLOB


@dataclass(frozen=True)
class MediaFile:
    relpath: bytes  # as on the recorder, '/'-separated
    size: int
    mtime_ns: int
    #: in folders nested deeper than the profile's media.max_depth: listed, never copied
    too_deep: bool = False

    @property
    def name(self) -> str:
        return display(self.relpath)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def gone_or(exc: OSError, where: str) -> RecorderError:
    if exc.errno in GONE_ERRNOS - {2}:
        return RecorderGoneError(f"{where}: the recorder went away ({exc.strerror})")
    return RecorderError(f"{where}: cannot read the recorder ({exc.strerror})")


def list_media(root: Path, profile: Profile) -> tuple[list[MediaFile], list[Problem]]:
    """Every media file on the recorder, and a problem for each entry that is refused.

    Entries that match the profile's media globs but are not regular files
    (symlinks, FIFOs, devices, sockets) are refused and never opened; unreadable
    folders are reported. Media in folders nested deeper than the profile's
    ``media.max_depth`` are listed with ``too_deep`` set: the offload leaves them and
    names each one. Nothing outside ``root`` is touched.
    """
    broot = os.fsencode(root)
    if not os.path.isdir(broot):
        raise RecorderGoneError(f"{root}: the recorder is not mounted there (no such folder)")
    walk = _Walk(root, profile)
    walk.folder(broot, b"", 0)
    return walk.files, walk.problems


class _Walk:
    """One walk of a recorder: a ``scandir`` per folder, bytes names, no link followed."""

    def __init__(self, root: Path, profile: Profile) -> None:
        self.root, self.profile = root, profile
        self.limit = profile.media.max_depth
        self.files: list[MediaFile] = []
        self.problems: list[Problem] = []

    def folder(self, dir_b: bytes, rel: bytes, depth: int) -> None:
        """Walk one folder, ``depth`` folders below the root."""
        try:
            entries = list(os.scandir(dir_b))
        except OSError as exc:
            if exc.errno in GONE_ERRNOS - {2}:
                raise gone_or(exc, str(self.root)) from exc
            self.problems.append(
                Problem(display(rel) or "/", f"folder unreadable ({exc.strerror})")
            )
            return
        for entry in sorted(entries, key=lambda e: e.name):
            erel = entry.name if not rel else rel + b"/" + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                if exc.errno in GONE_ERRNOS - {2}:
                    raise gone_or(exc, str(self.root)) from exc
                self.problems.append(Problem(display(erel), f"cannot stat ({exc.strerror})"))
                continue
            self.entry(entry.path, erel, st, depth)

    def entry(self, path: bytes, erel: bytes, st: os.stat_result, depth: int) -> None:
        profile, text = self.profile, display(erel)
        is_media = wglob.globmatch(
            erel.decode("utf-8", "surrogateescape"), profile.media.globs, flags=GLOB_FLAGS
        )
        if stat.S_ISLNK(st.st_mode):
            if is_media or _looks_dir_pattern(erel, profile):
                self.problems.append(Problem(text, "symbolic link: not followed, not copied"))
        elif stat.S_ISDIR(st.st_mode):
            if depth >= self.limit + LISTED_BEYOND:
                self.problems.append(
                    Problem(
                        text,
                        f"folders nested deeper than {self.limit + LISTED_BEYOND}: not read "
                        "(a folder loop on a damaged card?); what they hold stays on the recorder",
                    )
                )
            else:
                self.folder(path, erel, depth + 1)
        elif not is_media:
            return
        elif not stat.S_ISREG(st.st_mode):
            kind = _kind(st.st_mode)
            self.problems.append(
                Problem(text, f"{kind}, not a regular file: skipped, never opened")
            )
        else:
            too_deep = depth > self.limit
            self.files.append(MediaFile(erel, st.st_size, st.st_mtime_ns, too_deep))


def marked_important(relpath: bytes, profile: Profile) -> bool:
    """The recorder marked this file important (its profile's ``media.important_globs``)."""
    globs = profile.media.important_globs
    return bool(globs) and wglob.globmatch(
        relpath.decode("utf-8", "surrogateescape"), globs, flags=GLOB_FLAGS
    )


def _looks_dir_pattern(rel: bytes, profile: Profile) -> bool:
    # a symlinked folder that would have held media: report it too
    probe = rel.decode("utf-8", "surrogateescape") + "/x.mp4"
    return wglob.globmatch(probe, profile.media.globs, flags=GLOB_FLAGS)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def open_source(root: Path, media: MediaFile) -> int:
    """Open a media file for reading without following symlinks or blocking on FIFOs.

    Re-checks after opening that it is still a regular file (a name can be swapped
    between listing and opening).
    """
    path = os.path.join(os.fsencode(root), media.relpath)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RecorderError(f"{media.name}: no longer a regular file: skipped")
        os.set_blocking(fd, True)
        # no POSIX_FADV_SEQUENTIAL: measured, it cuts reads from a fusefat mount from
        # ~800 to ~95 MB/s and from ext4 on virtio from ~3.4 to ~1.4 GB/s (docs/performance.md)
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_small_file(path: Path, data: bytes, *, create: bool = True) -> None:
    """Replace a small file on a (writable) recorder: no symlink followed, fsynced.

    fusefat does not honour O_TRUNC, so a shorter content is cut explicitly.
    """
    flags = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o644)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
        if os.fstat(fd).st_size > len(data):
            os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def recorded_times(
    profile: Profile, media: MediaFile
) -> tuple[datetime | None, datetime | None, str]:
    """Start and end of a recording, and where they came from ('name' or 'mtime')."""
    name = os.path.basename(media.relpath).decode("utf-8", "replace")
    start = profile.start_from_name(name)
    end = datetime.fromtimestamp(media.mtime_ns / 1e9, UTC) if media.mtime_ns > 0 else None
    if start is not None:
        return start, end, "name"
    return end, end, "mtime"
