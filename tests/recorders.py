"""Test helpers: virtual recorders as folders and real FAT32 images, fusefat mounts.

Real parts, not fakes: a FAT32 image is made by dosfstools/mtools and mounted with
fusefat in the foreground, so a test can kill the fusefat process to yank the
recorder. Everything is written under the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.recorder.simulated import RecorderSpec, build_fat_image, build_tree

BIN = Path(sys.executable).parent
HAVE_FUSEFAT = shutil.which("fusefat") is not None and os.path.exists("/dev/fuse")


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> object:
    """Wait until predicate() is truthy, with a deadline (no sleeping for luck)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def make_folder_recorder(dest: Path, serial: str = "SIM0001", **kw: object) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    build_tree(dest, RecorderSpec(serial=serial, **kw))  # type: ignore[arg-type]
    return dest


def make_fat_recorder(image: Path, serial: str = "SIM0001", **kw: object) -> Path:
    build_fat_image(image, RecorderSpec(serial=serial, **kw))  # type: ignore[arg-type]
    return image


@dataclass
class FatMount:
    image: Path
    mountpoint: Path
    proc: subprocess.Popen[bytes]

    def yank(self) -> None:
        """Pull the recorder out: kill the fusefat process (the mount goes dead)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def unmount(self) -> None:
        if self.proc.poll() is None:
            subprocess.run(
                ["fusermount", "-u", str(self.mountpoint)], check=False, capture_output=True
            )
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.yank()
        # a yanked mount stays as a dead endpoint until it is lazily unmounted
        subprocess.run(
            ["fusermount", "-u", "-z", str(self.mountpoint)], check=False, capture_output=True
        )


@contextlib.contextmanager
def fat_mount(image: Path, mountpoint: Path, *, rw: bool = False) -> Iterator[FatMount]:
    """Mount a FAT32 image with fusefat in the foreground; unmount on exit."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    opts = "rw+" if rw else "ro"
    proc = subprocess.Popen(
        ["fusefat", "-f", "-o", opts, str(image), str(mountpoint)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    m = FatMount(image, mountpoint, proc)
    try:
        wait_for(
            lambda: os.path.ismount(mountpoint) or proc.poll() is not None, 10, "fusefat mount"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"fusefat could not mount {image} (exit {proc.returncode})")
        yield m
    finally:
        m.unmount()


def recdock(
    *args: str,
    home: Path,
    config: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `recdock` console script as a user would."""
    cmd = [str(BIN / "recdock"), "--home", str(home)]
    if config is not None:
        cmd += ["--config", str(config)]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("RECDOCK_CONFIG", None)
    return subprocess.run(
        cmd + list(args), capture_output=True, text=True, timeout=timeout, env=full_env
    )
