"""The station clock: a seam, like the GPIO pins.

A recorder's clock is set only from a station clock that is NTP-synchronised (docs/checks.md).
Two implementations, always chosen explicitly (rule 7, docs/architecture.md), never one as a
silent fallback for the other: :class:`~agent.seams.clock.system.SystemClock` (adjtimex) and
:class:`~agent.seams.clock.simulated.SimulatedClock`. tests/test_clock_contract.py runs one suite
against both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol


class StationClock(Protocol):
    def now(self) -> datetime:
        """The station's time, timezone-aware UTC."""
        ...

    def synchronised(self) -> bool:
        """Is the station clock NTP-synchronised, so it may set a recorder's clock?"""
        ...

    def describe(self) -> str:
        """One line for logs and status: which clock, and how synchronisation was decided."""
        ...


def make_clock(kind: Literal["system", "simulated"], **kw: Any) -> StationClock:
    """The station clock of the given kind; there is no default and no fallback."""
    if kind == "system":
        from agent.seams.clock.system import SystemClock

        if kw:
            raise TypeError(f"SystemClock takes no options (got {sorted(kw)})")
        return SystemClock()
    if kind == "simulated":
        from agent.seams.clock.simulated import SimulatedClock

        return SimulatedClock(**kw)
    raise ValueError(f"unknown station clock kind {kind!r}: 'system' or 'simulated'")
