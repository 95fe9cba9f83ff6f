"""What an offload tells its caller: per file, stored / already stored / failed, and why."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.errors import RecdockError
from agent.recorder.status import RecorderInfo

#: ``extra`` of log records whose content the OffloadReport also carries: the CLI prints
#: the report, so it leaves these out of its own stderr (the daemon's journal keeps them).
REPORTED = {"recdock_reported": True}


class Stopped(RecdockError):
    """The offload was asked to stop (SIGTERM); the file in flight was abandoned."""


def about(name: str, message: str) -> str:
    """A message for a file's own line: the line names the file, so the message does not
    name it again ("X: X: read error" reads as two problems)."""
    return message.removeprefix(f"{name}: ")


@dataclass(frozen=True)
class SourceStamp:
    """A recorder file's status when it was opened for the copy: what its removal compares
    (rule 1, agent/offload/clear.py)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> SourceStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@dataclass
class FileResult:
    source_path: str
    status: str  # stored | already | failed
    message: str = ""
    sha256: str | None = None
    store_path: str | None = None
    size: int = 0
    removed: bool = False
    late: bool = False
    age_hours: float | None = None
    relpath: bytes = b""  # as on the recorder
    stamp: SourceStamp | None = None  # the source when it was copied (or found already stored)


@dataclass
class OffloadReport:
    session_id: str
    device_serial: str
    info: RecorderInfo
    files: list[FileResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    bytes_copied: int = 0
    source_kept_reason: str | None = None
    #: station time when the recorder's status (and its clock) was read
    info_read_at: datetime | None = None
    #: files that could not be read whole: the recorder's storage is damaged or failing
    damaged: list[str] = field(default_factory=list)
    #: media in folders nested deeper than the profile's media.max_depth: left, never copied
    too_deep: list[str] = field(default_factory=list)
    #: the error that stopped the offload (the daemon tells a full store from a yanked recorder)
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """Every media file on the recorder is verified in the store: nothing left behind."""
        return (
            self.error is None
            and not self.problems
            and all(f.status in ("stored", "already") for f in self.files)
        )

    @property
    def ok(self) -> bool:
        """Complete, and filed under an identity nothing disputes (rule 8)."""
        return self.complete and not self.info.identity_conflict

    @property
    def failures(self) -> list[str]:
        lines = [f"{f.source_path}: {f.message}" for f in self.files if f.status == "failed"]
        conflict = self.info.identity_conflict
        identity = [f"identity conflict: {conflict}; filed under {self.device_serial}"]
        return (
            (identity if conflict else [])
            + self.problems
            + lines
            + ([self.error] if self.error else [])
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "device_serial": self.device_serial,
            "ok": self.ok,
            "stored": sum(1 for f in self.files if f.status == "stored"),
            "already": sum(1 for f in self.files if f.status == "already"),
            "failed": sum(1 for f in self.files if f.status == "failed"),
            "removed": sum(1 for f in self.files if f.removed),
            "late": [
                {"source_path": f.source_path, "age_hours": f.age_hours}
                for f in self.files
                if f.late
            ],
            "bytes_copied": self.bytes_copied,
            "problems": self.failures,
            "source_kept_reason": self.source_kept_reason,
        }
