"""The simulated dock's recorders: FAT32 images mounted with fusefat, folders used in place.

The fake of the mounting seam, chosen only through the simulated dock (rule 7): a real dock
mounts block devices (agent/seams/mount/__init__.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent.seams.dock import DockEvent
from agent.seams.mount.mounts import MOUNT_TIMEOUT_S, SAFE_OPTIONS, Mount, MountError


def mount_image(event: DockEvent, mnt: Path, *, writable: bool) -> Mount:
    """Mount a FAT image with fusefat in the foreground; fusefat cannot remount, so
    read-write is an unmount and a new mount with ``rw+``."""
    assert event.source is not None
    fusefat = shutil.which("fusefat")
    if fusefat is None:
        raise MountError("fusefat not found: install the Debian package fusefat")
    if event.fs_type != "vfat":
        raise MountError(f"{event.source}: not a FAT image: the simulated dock mounts FAT only")
    opts = f"{'rw+' if writable else 'ro'},{SAFE_OPTIONS}"
    proc = subprocess.Popen(
        [fusefat, "-f", "-o", opts, str(event.source), str(mnt)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C at the daemon must not pull the recorders first
    )
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    while not os.path.ismount(mnt):
        if proc.poll() is not None:
            raise MountError(f"{event.source}: fusefat could not mount it (exit {proc.returncode})")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise MountError(
                f"{event.source}: fusefat did not mount it within {MOUNT_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.02)
    return Mount(event, mnt, "fuse", writable=writable, proc=proc)


def unmount_image(mount: Mount, run_quiet: Callable[[list[str]], None]) -> None:
    run_quiet(["fusermount", "-u", str(mount.path)])
    if mount.proc is not None:
        try:
            mount.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pull_image(mount)
    # a dead FUSE endpoint (yanked) stays until it is lazily unmounted
    run_quiet(["fusermount", "-u", "-z", str(mount.path)])


def pull_image(mount: Mount) -> None:
    """Simulated unplug: kill the FUSE process, so the mount dies like a pulled cable."""
    if mount.proc is not None and mount.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(mount.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            mount.proc.wait(timeout=10)
