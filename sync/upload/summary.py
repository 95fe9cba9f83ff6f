"""What one upload pass reports: a :class:`FileOutcome` per recording, a :class:`PassSummary`.

``recdock sync --once`` prints the summary (``--json``: :func:`as_dict`) and picks its exit code
from it (agent/cli/sync.py); the worker's loop reads ``window_open`` and ``error`` from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FileOutcome:
    store_path: str
    status: str  # synced | unconfirmed | rejected | failed | stopped | missing
    detail: str = ""
    bytes_sent: int = 0


@dataclass
class PassSummary:
    window_open: bool = True
    opens_in_s: float | None = None
    candidates: int = 0
    set_aside: int = 0
    synced: int = 0
    unconfirmed: int = 0
    rejected: int = 0
    failed: int = 0
    remaining: int = 0
    bytes_sent: int = 0
    stopped: bool = False
    error: str | None = None
    files: list[FileOutcome] = field(default_factory=list)

    def count(self, outcome: FileOutcome) -> None:
        self.files.append(outcome)
        self.bytes_sent += outcome.bytes_sent
        if outcome.status in ("synced", "unconfirmed", "rejected", "failed"):
            setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        elif outcome.status == "missing":
            self.failed += 1


def as_dict(summary: PassSummary) -> dict[str, Any]:
    """The summary as plain JSON-able data (what ``run_once`` returns)."""
    d = asdict(summary)
    d["files"] = [asdict(f) for f in summary.files]
    return json.loads(json.dumps(d))
