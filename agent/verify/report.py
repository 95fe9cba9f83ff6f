"""What a check covers (:class:`Scope`), and what it found (:class:`VerifyReport`).

Findings are handed on as they are found (``on_finding``: the command line prints each at
once) and written to the check's scratch database; the report itself keeps only counts and
the first :data:`KEPT` of each kind, so its memory stays the same whatever it finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

#: How many problems (and notes) a report keeps in memory; the rest are counted and written.
KEPT = 10_000

PROBLEM, NOTE = "problem", "note"


@dataclass(frozen=True)
class Scope:
    """Which part of the station a check covers. The audit chain is always checked whole;
    the other keys narrow the sessions whose files, records and entries are checked.
    ``since``/``until``: UTC (SQLite's ``YYYY-MM-DD HH:MM:SS``), ``until`` exclusive."""

    session: str | None = None
    device: str | None = None
    since: str | None = None
    until: str | None = None
    chain_only: bool = False

    @property
    def partial(self) -> bool:
        return any(v is not None for v in (self.session, self.device, self.since, self.until))

    def describe(self) -> str:
        if self.chain_only:
            return "audit chain only"
        if not self.partial:
            return "full"
        keys = {"session": self.session, "device": self.device}
        keys |= {"since": self.since, "until": self.until}
        return ", ".join(f"{k} {v}" for k, v in keys.items() if v is not None)


class Bar(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


#: ``progress(what, total, unit)`` makes a progress bar (the command line's, on a terminal).
Progress = Callable[[str, int, str], Bar]


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(what: str, total: int, unit: str) -> Bar:
    return _NoBar()


@dataclass
class VerifyReport:
    scope: str = "full"
    files_checked: int = 0
    files_purged: int = 0  # purged by retention: absent, as expected
    bytes_checked: int = 0
    audit_entries: int = 0
    problem_count: int = 0
    note_count: int = 0
    resumed: bool = False
    state_path: Path | None = None  # the check's scratch database: every finding, in order
    problems: list[str] = field(default_factory=list)  # the first KEPT
    notes: list[str] = field(default_factory=list)  # the first KEPT
    on_finding: Callable[[str, str], None] | None = None
    record: Callable[[str, str], None] | None = None  # the scratch database's writer

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, text: str) -> None:
        self.add(PROBLEM, text)

    def note(self, text: str) -> None:
        self.add(NOTE, text)

    def add(self, level: str, text: str, *, record: bool = True) -> None:
        if level == PROBLEM:
            self.problem_count += 1
            kept = self.problems
        else:
            self.note_count += 1
            kept = self.notes
        if len(kept) < KEPT:
            kept.append(text)
        if record and self.record is not None:
            self.record(level, text)
        if self.on_finding is not None:
            self.on_finding(level, text)
