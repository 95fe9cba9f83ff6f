"""What each bay state looks like on a LED and sounds like on the buzzer: data, not code.

An officer at a bay must read the recorder's state at a glance, and a colour-blind officer must read
it too: every state differs by its blink *timing*, colour only adds to it. The patterns live in one
table (``LED_PATTERNS``, ``BUZZER_PATTERNS``) so that docs, tests, the daemon and `recdock status`
read the same data. No hardware here: `recdock status` imports this module without gpiozero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

Rgb = tuple[int, int, int]
BLACK: Rgb = (0, 0, 0)
RED: Rgb = (1, 0, 0)
GREEN: Rgb = (0, 1, 0)
BLUE: Rgb = (0, 0, 1)
YELLOW: Rgb = (1, 1, 0)
MAGENTA: Rgb = (1, 0, 1)
WHITE: Rgb = (1, 1, 1)
CYAN: Rgb = (0, 1, 1)


class State(StrEnum):
    """What a bay shows. Transitions are described in docs/indicators.md."""

    IDLE = "idle"
    """No recorder in the bay."""
    RECOGNISED = "recognised"
    """A recorder was recognised and the station is working on it (offload, checks)."""
    READY = "ready"
    """Offloaded, cleared and checked: take it for the shift."""
    NOT_READY = "not_ready"
    """Not fit for a shift; the reason is in ``recdock status``, not on the LED."""
    UNKNOWN_DEVICE = "unknown_device"
    """Storage that no firmware profile matches: never offloaded, never written."""
    STATION_FAULT = "station_fault"
    """A station-wide problem (store full, catalog unreadable); overrides every bay."""
    YANKED = "yanked"
    """The recorder was pulled out before its verdict: the bay is empty but the work was not
    finished. Shown until the next plug-in (or until the daemon returns the bay to IDLE)."""
    FAULT_UNREPORTED = "fault_unreported"
    """No recorder in the bay, and a fault has not reached the centre in time
    (``[faults] unreported_after_hours``): shown on the empty bays instead of IDLE."""


class Sound(StrEnum):
    """What the station buzzer says."""

    READY = "ready"
    NOT_READY = "not_ready"
    UNKNOWN_DEVICE = "unknown_device"
    FAULT = "fault"


@dataclass(frozen=True)
class LedPattern:
    """How one state looks on a bay LED.

    ``on_time``/``off_time`` of ``None`` mean a steady light (lit when ``color`` is not black).
    A single-colour LED ignores ``color`` and shows only the timing, so the timing alone must tell
    the states apart.
    """

    on_time: float | None
    off_time: float | None
    color: Rgb

    @property
    def blinks(self) -> bool:
        return self.on_time is not None

    @property
    def lit(self) -> bool:
        return self.color != BLACK


@dataclass(frozen=True)
class BeepPattern:
    """``n`` beeps of ``on_time`` seconds separated by ``off_time`` seconds of silence."""

    on_time: float
    off_time: float
    n: int


# The one table of what each state looks like. Keep docs/indicators.md in step with it; the tests
# check that no two states share a timing.
LED_PATTERNS: Mapping[State, LedPattern] = {
    State.IDLE: LedPattern(None, None, BLACK),  # dark
    State.RECOGNISED: LedPattern(0.5, 0.5, YELLOW),  # 1 Hz even blink
    State.READY: LedPattern(None, None, GREEN),  # steady on
    State.NOT_READY: LedPattern(0.15, 0.15, RED),  # fast flicker, ~3 Hz
    State.UNKNOWN_DEVICE: LedPattern(1.0, 1.0, BLUE),  # slow even blink, 0.5 Hz
    State.STATION_FAULT: LedPattern(0.1, 1.9, WHITE),  # short flash every 2 s
    State.YANKED: LedPattern(1.5, 0.5, MAGENTA),  # mostly on, a dark gap every 2 s
    State.FAULT_UNREPORTED: LedPattern(0.1, 3.9, CYAN),  # short flash every 4 s
}

BUZZER_PATTERNS: Mapping[Sound, BeepPattern] = {
    Sound.READY: BeepPattern(0.1, 0.0, 1),  # one short beep
    Sound.NOT_READY: BeepPattern(0.1, 0.1, 3),  # three short beeps
    Sound.UNKNOWN_DEVICE: BeepPattern(0.4, 0.2, 2),  # two long beeps
    Sound.FAULT: BeepPattern(1.0, 0.0, 1),  # one long tone
}

# The sound that goes with entering a state; states not listed are silent.
STATE_SOUNDS: Mapping[State, Sound] = {
    State.READY: Sound.READY,
    State.NOT_READY: Sound.NOT_READY,
    State.UNKNOWN_DEVICE: Sound.UNKNOWN_DEVICE,
    State.STATION_FAULT: Sound.FAULT,
    State.YANKED: Sound.NOT_READY,
}
