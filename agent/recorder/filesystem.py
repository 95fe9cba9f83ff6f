"""What a recorder's file system keeps that tells whether a file's bytes changed.

A file system that keeps a change time (``st_ctime``) sets it on every write and every
``utime``, and nobody can set it back: there the same inode with the same size, modification
time and change time has the same bytes. FAT and exFAT keep no change time (Linux reports the
modification time in its place), and a FUSE file system reports whatever it likes; a recorder
behind USB can rewrite any sector without the host seeing it at all. There only reading the
file again tells (agent/offload/clear.py, rule 1 of docs/architecture.md).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Local file systems whose change time the kernel keeps and nobody can set back.
KEEPS_CTIME = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs"})
MOUNTINFO = Path("/proc/self/mountinfo")


def fs_type(path: Path | bytes) -> str | None:
    """The type of the file system ``path`` is on (``vfat``, ``fuse.fusefat``, ``ext4``...),
    from /proc/self/mountinfo by device number; None when it cannot be told."""
    try:
        dev = os.stat(path).st_dev
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:
        return None
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[2] == want and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None


class ChangeTimes:
    """Whether the file systems met so far keep a change time, by device number (one lookup
    per mount, not per file; a remount is a new device number)."""

    def __init__(self) -> None:
        self._kept: dict[int, bool] = {}

    def kept(self, st: os.stat_result, path: Path | bytes) -> bool:
        """Does the file system of ``path`` (whose status is ``st``) keep change times?"""
        if st.st_dev not in self._kept:
            self._kept[st.st_dev] = fs_type(path) in KEEPS_CTIME
        return self._kept[st.st_dev]
