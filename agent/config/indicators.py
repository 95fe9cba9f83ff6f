"""The ``[indicators]`` section: which BCM pins drive each bay's LED and the buzzer, quiet hours.

Configuration only (pydantic models); the devices that drive the pins live in
agent/seams/indicators/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

BCM_MIN = 0
BCM_MAX = 27
"""GPIO numbers (BCM) on the 40-pin header of a Raspberry Pi 4 or 5."""


# --- quiet hours ---------------------------------------------------------------------------------

_QUIET_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A daily local-time window, start included, end excluded; it may wrap midnight."""

    start: time
    end: time

    def __contains__(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # wraps midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(text: str) -> QuietHours:
    """Parse ``"HH:MM-HH:MM"`` (24-hour, local time), e.g. ``"22:00-06:00"``."""
    match = _QUIET_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f'quiet_hours must be "HH:MM-HH:MM" in 24-hour local time, e.g. "22:00-06:00"; '
            f"got {text!r}"
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    window = QuietHours(time(h1, m1), time(h2, m2))
    if window.start == window.end:
        raise ValueError(
            f"quiet_hours {text!r} starts and ends at the same time; "
            "leave quiet_hours out to keep the buzzer on all day"
        )
    return window


# --- configuration -------------------------------------------------------------------------------

Pin = int


class BayPins(BaseModel, extra="forbid"):
    """The BCM pins of one bay's LED: either ``led`` or ``red``/``green``/``blue``."""

    led: Pin | None = Field(
        default=None, ge=BCM_MIN, le=BCM_MAX, description="BCM pin of a single-colour LED"
    )
    red: Pin | None = Field(
        default=None, ge=BCM_MIN, le=BCM_MAX, description="BCM pin of an RGB LED's red leg"
    )
    green: Pin | None = Field(
        default=None, ge=BCM_MIN, le=BCM_MAX, description="BCM pin of an RGB LED's green leg"
    )
    blue: Pin | None = Field(
        default=None, ge=BCM_MIN, le=BCM_MAX, description="BCM pin of an RGB LED's blue leg"
    )
    active_high: bool = Field(
        default=True,
        description="true when a high pin lights the LED (common cathode); "
        "false for a common-anode RGB LED or an LED wired from 3V3 to the pin",
    )

    @model_validator(mode="after")
    def _one_kind_of_led(self) -> Self:
        rgb = (self.red, self.green, self.blue)
        if self.led is not None and any(p is not None for p in rgb):
            raise ValueError("set either led (single LED) or red/green/blue (RGB LED), not both")
        if self.led is None and not all(p is not None for p in rgb):
            raise ValueError(
                "set led = <BCM pin> for a single LED, or all of red, green and blue for an RGB LED"
            )
        return self

    @property
    def is_rgb(self) -> bool:
        return self.led is None

    def pins(self) -> dict[str, int]:
        """The pins in use, by role (``led`` or ``red``/``green``/``blue``)."""
        roles = ("led",) if self.led is not None else ("red", "green", "blue")
        return {role: getattr(self, role) for role in roles}


class IndicatorsConfig(BaseModel, extra="forbid"):
    """The ``[indicators]`` section: bay LEDs, the station buzzer and its quiet hours."""

    bays: dict[int, BayPins] = Field(
        default_factory=dict,
        description="bay number (1-based, as printed on the station) -> its LED pins",
    )
    buzzer: Pin | None = Field(
        default=None,
        ge=BCM_MIN,
        le=BCM_MAX,
        description="BCM pin driving the active buzzer's transistor; omit when there is none",
    )
    buzzer_enabled: bool = Field(
        default=True,
        description="false keeps the buzzer silent at all hours (its pin is still held low)",
    )
    quiet_hours: str | None = Field(
        default=None,
        description='local-time window "HH:MM-HH:MM" when the buzzer is silent, may wrap '
        'midnight ("22:00-06:00"); LEDs work as usual',
    )

    @field_validator("bays")
    @classmethod
    def _bay_numbers(cls, bays: dict[int, BayPins]) -> dict[int, BayPins]:
        bad = sorted(n for n in bays if not 1 <= n <= 64)
        if bad:
            raise ValueError(f"bay numbers run from 1 to 64; got {bad}")
        return bays

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value

    @model_validator(mode="after")
    def _no_pin_twice(self) -> Self:
        users: dict[int, str] = {}
        claims = [
            (pin, f"bay {bay} {role}")
            for bay, pins in sorted(self.bays.items())
            for role, pin in pins.pins().items()
        ]
        if self.buzzer is not None:
            claims.append((self.buzzer, "buzzer"))
        for pin, user in claims:
            if pin in users:
                raise ValueError(f"GPIO BCM {pin} is used twice: by {users[pin]} and by {user}")
            users[pin] = user
        return self

    def quiet_window(self) -> QuietHours | None:
        return None if self.quiet_hours is None else parse_quiet_hours(self.quiet_hours)
