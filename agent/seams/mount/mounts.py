"""A docked recorder made reachable: the :class:`Mount`, and what mounting can fail with."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import RecdockError, RecorderError
from agent.seams.dock import DockEvent

SAFE_OPTIONS = "nosuid,nodev,noexec"
MOUNT_TIMEOUT_S = 15.0


class MountError(RecorderError):
    """Docked storage could not be mounted, remounted or unmounted."""


class NotMatchedError(RecdockError):
    """Read-write access was asked for storage no profile matched (rule 5)."""


@dataclass
class Mount:
    """Docked storage made reachable at ``path``."""

    event: DockEvent
    path: Path
    kind: Literal["block", "fuse", "folder"]
    writable: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def describe(self) -> str:
        mode = "read-write" if self.writable else "read-only"
        if self.kind == "folder":
            return f"folder {self.path}, used in place (not mounted)"
        what = self.event.devnode if self.kind == "block" else f"image {self.event.source}"
        return f"{what} mounted {mode} at {self.path}"
