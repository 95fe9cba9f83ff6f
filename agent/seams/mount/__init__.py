"""Mounting docked storage: read-only for offload, read-write only for a matched recorder.

* Block devices (udev dock): ``mount -t vfat|exfat -o ro,nosuid,nodev,noexec``; other
  file systems are refused. Read-write is ``mount -o remount,rw,nosuid,nodev,noexec``.
* FAT images and folders (simulated dock): agent/seams/mount/simulated.py, the fake beside
  the real thing: an image is mounted with fusefat, a folder is used in place.

Rule 5 (docs/architecture.md) is kept by structure: :meth:`Mounter.mount_readonly` is the
only way to a :class:`Mount`, and :meth:`Mounter.mount_readwrite` (and ``reconnect``) refuse
anything but a :class:`~agent.seams.dock.Matched` made by :func:`~agent.seams.dock.match_event`
for the same device. The daemon never mounts unmatched storage at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from agent.seams.dock import SUPPORTED_FS, DockEvent, Matched, is_matched
from agent.seams.mount.fsck import FsCheck, check_filesystem
from agent.seams.mount.mounts import SAFE_OPTIONS, Mount, MountError, NotMatchedError
from agent.seams.mount.simulated import mount_image, pull_image, unmount_image

log = logging.getLogger(__name__)

__all__ = ["FsCheck", "Mount", "MountError", "Mounter", "NotMatchedError", "same_device"]

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_command(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def same_device(devnode: str, devpath: str, sys_root: str = "/sys") -> bool:
    """Is ``devnode`` still the block device udev reported at ``devpath`` (its DEVPATH)?

    A device name (/dev/sdb1) is reused by the kernel as soon as a device is gone: a
    recorder pulled and a USB stick plugged in a moment later can get the same name. The
    DEVPATH names the device itself; the node's major:minor leads to it through sysfs.
    """
    try:
        st = os.stat(devnode)
    except OSError:
        return False
    if not stat.S_ISBLK(st.st_mode):
        return False
    link = f"{sys_root}/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return os.path.realpath(link) == os.path.realpath(sys_root + devpath)


class Mounter:
    def __init__(
        self,
        mount_dir: Path,
        *,
        run: Runner = run_command,
        device_check: Callable[[str, str], bool] = same_device,
    ) -> None:
        self.mount_dir = mount_dir
        self.run = run
        self.device_check = device_check  # tests without block devices pass their own

    def mountpoint(self, event: DockEvent) -> Path:
        name = (
            str(event.bay)
            if event.bay is not None
            else "port-"
            + "".join(c if c.isalnum() else "_" for c in (event.id_path or event.key))[-48:]
        )
        return self.mount_dir / name

    # -- read-only: any storage the daemon decided to read ---------------------------------

    def mount_readonly(self, event: DockEvent) -> Mount:
        if event.source is not None and event.fs_type == "folder":
            return Mount(event, event.source, "folder")
        # a mount point of its own per docking: a yanked recorder's late unmount must never
        # hit the next recorder docked in the same bay
        mnt = self.mountpoint(event).with_name(
            f"{self.mountpoint(event).name}-{secrets.token_hex(3)}"
        )
        self._prepare(mnt)
        if event.source is not None:
            return mount_image(event, mnt, writable=False)
        if event.fs_type not in SUPPORTED_FS:
            raise MountError(
                f"{event.devnode}: file system {event.fs_type or 'unknown'!r} refused: recorders "
                f"are read as {' or '.join(SUPPORTED_FS)} only"
            )
        if not event.devnode:
            raise MountError(f"{event.key}: no device node to mount")
        if not self.device_check(event.devnode, event.key):
            raise MountError(
                f"{event.devnode}: no longer the device that was docked ({event.key}): the "
                "recorder was pulled and the name given to other storage; not mounted"
            )
        self._check(
            ["mount", "-t", event.fs_type, "-o", f"ro,{SAFE_OPTIONS}", event.devnode, str(mnt)],
            f"{event.devnode}: cannot mount read-only at {mnt}",
        )
        return Mount(event, mnt, "block")

    # -- read-write: only with a match (rule 5) ---------------------------------------

    def mount_readwrite(self, mount: Mount, match: Matched) -> Mount:
        """Make ``mount`` writable, for clearing verified files and setting the clock."""
        self._require_match(mount, match)
        if mount.writable:
            return mount
        if mount.kind == "folder":
            mount.writable = True
            return mount
        if mount.kind == "fuse":
            self.unmount(mount)
            self._prepare(mount.path)
            return mount_image(mount.event, mount.path, writable=True)
        self._check(
            ["mount", "-o", f"remount,rw,{SAFE_OPTIONS}", str(mount.path)],
            f"{mount.event.devnode}: cannot remount read-write at {mount.path}",
        )
        mount.writable = True
        return mount

    def reconnect(self, mount: Mount, match: Matched) -> Mount:
        """Unmount and mount read-write again, as a recorder sees a re-dock (clock applied)."""
        self._require_match(mount, match)
        if mount.kind == "folder":
            return mount
        self.unmount(mount)
        if mount.kind == "fuse":
            self._prepare(mount.path)
            return mount_image(mount.event, mount.path, writable=True)
        fresh = self.mount_readonly(mount.event)  # checks the device node is still this device
        return self.mount_readwrite(fresh, match)

    def check_filesystem(self, mount: Mount) -> FsCheck:
        """The recorder's file system checked read-only (``fsck.fat -n``), on its device node
        or its image; a folder has none to check (``ok`` None)."""
        if mount.kind == "folder":
            return FsCheck(None, "a folder: no file system to check")
        if mount.kind == "fuse":
            assert mount.event.source is not None
            return check_filesystem(str(mount.event.source), mount.event.fs_type, self.run)
        assert mount.event.devnode is not None
        return check_filesystem(mount.event.devnode, mount.event.fs_type, self.run)

    @staticmethod
    def _require_match(mount: Mount, match: Matched) -> None:
        if not is_matched(match, mount.event):
            raise NotMatchedError(
                f"{mount.event.label()}: read-write access refused: no firmware profile or "
                "registered device matched this storage (rule 5)"
            )

    # -- unmount ---------------------------------------------------------------------------

    def unmount(self, mount: Mount) -> None:
        """Unmount (lazily when busy or dead); a folder is left as it is."""
        if mount.kind == "folder":
            return
        if mount.kind == "fuse":
            unmount_image(mount, self._run_quiet)
        else:
            done = self.run(["umount", str(mount.path)])
            if done.returncode != 0:
                log.warning("umount %s failed (%s): lazy unmount", mount.path, done.stderr.strip())
                self._run_quiet(["umount", "-l", str(mount.path)])
        mount.writable = False
        with contextlib.suppress(OSError):
            mount.path.rmdir()  # its own mount point: empty once unmounted

    def yank(self, mount: Mount) -> None:
        """Simulated unplug: the image's mount dies like a pulled cable (agent/seams/mount/
        simulated.py); a real recorder is pulled by hand."""
        if mount.kind == "fuse":
            pull_image(mount)

    def clean_stale(self) -> int:
        """Lazily unmount what a previous run left mounted under the mount folder."""
        cleaned = 0
        base = str(self.mount_dir.resolve()) + "/"
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            parts = line.split()
            if len(parts) < 3:
                continue
            target = parts[1].replace("\\040", " ")
            if not target.startswith(base):
                continue
            tool = ["fusermount", "-u", "-z"] if parts[2].startswith("fuse") else ["umount", "-l"]
            self._run_quiet([*tool, target])
            log.warning("unmounted %s, left mounted by a previous run", target)
            cleaned += 1
        return cleaned

    # -- helpers ---------------------------------------------------------------------------

    def _prepare(self, mnt: Path) -> None:
        try:
            os.stat(mnt)
        except FileNotFoundError:
            pass
        except OSError:
            # a dead FUSE endpoint (yanked): not a mount to ismount(), but one to the kernel
            self._run_quiet(["fusermount", "-u", "-z", str(mnt)])
        mnt.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.path.ismount(mnt):
            log.warning("%s was still mounted: unmounting it first", mnt)
            self._run_quiet(["umount", "-l", str(mnt)])

    def _check(self, cmd: list[str], what: str) -> None:
        done = self.run(cmd)
        if done.returncode != 0:
            raise MountError(f"{what}: {done.stderr.strip() or f'exit {done.returncode}'}")

    def _run_quiet(self, cmd: list[str]) -> None:
        try:
            self.run(cmd)
        except (OSError, subprocess.SubprocessError):
            log.exception("%s failed", " ".join(cmd))
