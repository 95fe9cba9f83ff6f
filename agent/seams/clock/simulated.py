"""The simulated station clock: the fake of the clock seam, for tests and trials.

Synchronised or not, and an offset from the real time, exactly as given. Chosen only explicitly
(``recdock run --simulate``, ``recdock check --simulated-station-clock``; rule 7).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SimulatedClock:
    """A station clock for tests and trials: explicitly synchronised or not, and offset."""

    def __init__(self, synchronised: bool = True, offset_s: float = 0.0) -> None:
        self._synchronised = synchronised
        self.offset_s = offset_s

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def synchronised(self) -> bool:
        return self._synchronised

    def describe(self) -> str:
        state = "synchronised" if self._synchronised else "not synchronised"
        return f"SIMULATED station clock ({state}, offset {self.offset_s:+.1f} s)"
