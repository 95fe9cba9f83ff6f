"""The recorder's file system checked read-only (``fsck.fat -n``) before anything is written.

Writing to a damaged FAT (clearing files, the clock's time file) can make the damage worse and
lose what is still readable, so the station writes only to a recorder whose check passed
(agent/station/findings.py). The check never writes: ``-n`` answers every question with "no".

Two findings are not damage: the dirty flag (every recorder pulled out while mounted
read-write has it, the kernel sets it on a read-write mount) and a wrong free-cluster count
in the FSInfo sector (a hint that FAT drivers may leave stale). Everything else is.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

#: The read-only check of each file system the dock accepts, and its Debian package.
CHECKERS = {
    "vfat": (["fsck.fat", "-n"], "dosfstools"),
    "exfat": (["fsck.exfat", "-n"], "exfatprogs"),
}
#: Lines of fsck.fat that report no damage (see above), or only frame the report.
HARMLESS = (
    "Dirty bit is set",
    "Automatically removing dirty bit",
    "Free cluster summary wrong",
    "Auto-correcting",
    "Leaving filesystem unchanged",
    "fsck.fat ",
    "exfatprogs version",
)
DETAIL_CHARS = 400
DIRTY = "Dirty bit is set"

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class FsCheck:
    """What the check found: ``ok`` False means damaged (or not checkable), None not checked."""

    ok: bool | None
    detail: str
    tool: str = ""
    #: the file system is marked dirty (not damage: a recorder pulled out while mounted
    #: read-write; the station still reports it, docs/faults.md)
    dirty: bool = False


def check_filesystem(target: str, fs_type: str | None, run: Runner) -> FsCheck:
    """Check the file system on ``target`` (a block device or an image) read-only."""
    checker = CHECKERS.get(fs_type or "")
    if checker is None:
        return FsCheck(False, f"no read-only check known for file system {fs_type!r}")
    cmd, package = checker
    if not (shutil.which(cmd[0]) or shutil.which(cmd[0], path="/usr/sbin:/sbin")):
        return FsCheck(False, f"{cmd[0]} not found: install the Debian package {package}", cmd[0])
    try:
        done = run([*cmd, target])
    except (OSError, subprocess.SubprocessError) as exc:
        return FsCheck(False, f"{cmd[0]} could not run ({exc})", cmd[0])
    if done.returncode == 0:
        return FsCheck(True, "no error", cmd[0])
    output = done.stdout + "\n" + done.stderr
    found = _findings(output, target)
    dirty = any(line.strip().startswith(DIRTY) for line in output.splitlines())
    if done.returncode == 1 and not found:
        detail = "no damage (only the dirty flag or the free-cluster hint)"
        return FsCheck(True, detail, cmd[0], dirty=dirty)
    if done.returncode > 1 and not found:
        found = [f"{cmd[0]} could not check it (exit {done.returncode})"]
    return FsCheck(False, "; ".join(found)[:DETAIL_CHARS], cmd[0], dirty=dirty)


def _findings(output: str, target: str) -> list[str]:
    """The lines of a report that say something is wrong."""
    found = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line or line.startswith(HARMLESS):
            continue
        if line.startswith(f"{target}:") and "files" in line:
            continue  # the summary: "<image>: 6 files, 2052/73140 clusters"
        found.append(line)
    return found
