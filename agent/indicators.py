"""The bay LEDs and the station buzzer, behind gpiozero's pin-factory seam.

An officer at a bay must read the recorder's state at a glance, and a colour-blind officer must read
it too: every state differs by its blink *timing*, colour only adds to it. The patterns live in one
table (``LED_PATTERNS``, ``BUZZER_PATTERNS``) so that docs, tests and code read the same data.

Every gpiozero device here gets an explicit ``pin_factory``: the mock factory runs only when chosen
(``make_pin_factory("mock")``), never as a fallback (invariant 7). An indicator failure never
crashes the caller's work: ``show`` and ``sound`` log the traceback and *return* an
:class:`IndicatorError`; the daemon decides what to do with it. See docs/indicators.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from typing import Any, Self

from gpiozero import LED, RGBLED, Buzzer
from pydantic import BaseModel, Field, field_validator, model_validator

from agent.errors import RecdockError

logger = logging.getLogger(__name__)

BCM_MIN = 0
BCM_MAX = 27
"""GPIO numbers (BCM) on the 40-pin header of a Raspberry Pi 4 or 5."""

Rgb = tuple[int, int, int]
BLACK: Rgb = (0, 0, 0)
RED: Rgb = (1, 0, 0)
GREEN: Rgb = (0, 1, 0)
BLUE: Rgb = (0, 0, 1)
YELLOW: Rgb = (1, 1, 0)
MAGENTA: Rgb = (1, 0, 1)
WHITE: Rgb = (1, 1, 1)


class IndicatorError(RecdockError):
    """An LED or the buzzer could not be driven, or the GPIO seam could not be set up.

    Raised by constructors and :func:`make_pin_factory` (start-up: the daemon stops with the
    message). *Returned*, not raised, by ``show`` and ``sound``: a dead LED never stops an
    offload.
    """


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


# --- the pin-factory seam ------------------------------------------------------------------------

PIN_FACTORY_KINDS = ("mock", "lgpio")
_NO_GPIO_HINT = 'set [gpio] factory = "mock" to run without hardware (simulated LEDs and buzzer)'


def make_pin_factory(kind: str) -> Any:
    """Return the gpiozero pin factory named ``kind``: ``"mock"`` or ``"lgpio"`` (Pi 4/5).

    There is no ``"auto"``: the mock is never a silent fallback (invariant 7), and
    ``GPIOZERO_PIN_FACTORY`` is not consulted. Raises :class:`IndicatorError` with what to set.
    """
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if kind == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        except Exception as exc:  # ImportError, lgpio.error, OSError: all mean "no usable GPIO"
            raise IndicatorError(
                f"no GPIO found (lgpio pin factory failed: {type(exc).__name__}: {exc}); "
                f"on a Raspberry Pi 4/5 install python3-lgpio and check access to /dev/gpiochip*, "
                f"or {_NO_GPIO_HINT}"
            ) from exc
    raise IndicatorError(
        f"unknown GPIO pin factory {kind!r}: choose one of {', '.join(PIN_FACTORY_KINDS)} "
        '("auto" is not offered: the simulated GPIO must be chosen explicitly)'
    )


def describe(pin_factory: Any) -> str:
    """One line for the start-up log saying whether the GPIO seam is real or simulated."""
    from gpiozero.pins.mock import MockFactory

    name = type(pin_factory).__name__
    if isinstance(pin_factory, MockFactory):
        return f"GPIO: SIMULATED ({name}, chosen explicitly): LEDs and buzzer drive no hardware"
    return f"GPIO: real ({name}): LEDs and buzzer drive the header pins"


def _require_factory(pin_factory: Any) -> None:
    if pin_factory is None:
        # gpiozero would pick a default factory by itself; we never let it (invariant 7).
        raise IndicatorError("no pin_factory given: pass make_pin_factory('lgpio' or 'mock')")


# --- devices -------------------------------------------------------------------------------------


class BayIndicator:
    """The LED of one bay (single-colour or RGB)."""

    def __init__(self, pins: BayPins, pin_factory: Any, *, name: str = "bay") -> None:
        _require_factory(pin_factory)
        self.name = name
        self.pins = pins
        self._lock = threading.Lock()
        self._state = State.IDLE
        try:
            if pins.is_rgb:
                self._device: LED | RGBLED = RGBLED(
                    pins.red,
                    pins.green,
                    pins.blue,
                    active_high=pins.active_high,
                    pwm=False,
                    pin_factory=pin_factory,
                )
            else:
                self._device = LED(
                    pins.led,
                    active_high=pins.active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
        except Exception as exc:
            raise IndicatorError(
                f"{name}: cannot open LED on GPIO {pins.pins()}: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def state(self) -> State:
        """The state last shown successfully."""
        return self._state

    def show(self, state: State) -> IndicatorError | None:
        """Show ``state``; showing the state already shown leaves the blink undisturbed.

        Returns ``None``, or the :class:`IndicatorError` (already logged) when the LED failed.
        """
        state = State(state)
        with self._lock:
            if state == self._state and self._device_is_showing():
                return None
            try:
                self._drive(LED_PATTERNS[state])
            except Exception as exc:  # a dead LED must not stop the caller's offload
                logger.exception("%s: cannot show %s on its LED", self.name, state.value)
                error = IndicatorError(f"{self.name}: cannot show {state.value}: {exc}")
                error.__cause__ = exc
                return error
            self._state = state
            return None

    def _device_is_showing(self) -> bool:
        return not self._device.closed

    def _drive(self, pattern: LedPattern) -> None:
        device = self._device
        if isinstance(device, RGBLED):
            if pattern.blinks:
                # Light it here first: a pin that fails, fails in the caller's thread, where it is
                # reported; inside gpiozero's blink thread it would only die quietly.
                device.value = pattern.color
                device.blink(
                    on_time=pattern.on_time,
                    off_time=pattern.off_time,
                    on_color=pattern.color,
                    off_color=BLACK,
                    background=True,
                )
            else:
                device.value = pattern.color
        elif pattern.blinks:
            device.on()  # fail here rather than in the blink thread, as above
            device.blink(on_time=pattern.on_time, off_time=pattern.off_time, background=True)
        elif pattern.lit:
            device.on()
        else:
            device.off()

    def close(self) -> None:
        with self._lock:
            self._device.close()


class StationBuzzer:
    """The station's active buzzer, silent during quiet hours or when disabled."""

    def __init__(
        self,
        pin: int,
        pin_factory: Any,
        quiet_hours: str | QuietHours | None = None,
        clock: Callable[[], datetime] = datetime.now,
        *,
        enabled: bool = True,
    ) -> None:
        _require_factory(pin_factory)
        self.pin = pin
        self.enabled = enabled
        self.quiet_hours = (
            parse_quiet_hours(quiet_hours) if isinstance(quiet_hours, str) else quiet_hours
        )
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._device = Buzzer(pin, initial_value=False, pin_factory=pin_factory)
        except Exception as exc:
            raise IndicatorError(
                f"cannot open buzzer on GPIO {pin}: {type(exc).__name__}: {exc}"
            ) from exc

    def silenced(self) -> str | None:
        """Why the buzzer would stay silent now (``"disabled"``, ``"quiet hours ..."``), or None."""
        if not self.enabled:
            return "disabled"
        if self.quiet_hours is not None and self._clock().time() in self.quiet_hours:
            return f"quiet hours {self.quiet_hours}"
        return None

    def sound(self, pattern: Sound) -> IndicatorError | None:
        """Play ``pattern`` in the background (a new sound cuts off the one playing).

        Staying silent for quiet hours or because the buzzer is disabled is not an error.
        Returns ``None``, or the :class:`IndicatorError` (already logged) when the buzzer failed.
        """
        pattern = Sound(pattern)
        reason = self.silenced()
        if reason is not None:
            logger.debug("buzzer: %s not sounded (%s)", pattern.value, reason)
            return None
        beep = BUZZER_PATTERNS[pattern]
        with self._lock:
            try:
                self._device.beep(
                    on_time=beep.on_time, off_time=beep.off_time, n=beep.n, background=True
                )
            except Exception as exc:  # a dead buzzer must not stop the caller's offload
                logger.exception("buzzer: cannot sound %s", pattern.value)
                error = IndicatorError(f"buzzer on GPIO {self.pin}: cannot sound {pattern.value}")
                error.__cause__ = exc
                return error
        return None

    def close(self) -> None:
        with self._lock:
            self._device.close()


class Indicators:
    """All bay LEDs and the buzzer of a station, built from :class:`IndicatorsConfig`.

    ``show(bay, state)`` also sounds the buzzer when a bay *enters* a state that has a sound
    (``STATE_SOUNDS``). ``station_fault(True)`` makes every bay show STATION_FAULT, remembering
    each bay's own state for when the fault clears.
    """

    def __init__(
        self,
        config: IndicatorsConfig,
        pin_factory: Any,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        _require_factory(pin_factory)
        self.config = config
        self.pin_factory = pin_factory
        self._lock = threading.RLock()
        self._wanted: dict[int, State] = {}
        self._fault = False
        self.bays: dict[int, BayIndicator] = {}
        self.buzzer: StationBuzzer | None = None
        try:
            for number, pins in sorted(config.bays.items()):
                self.bays[number] = BayIndicator(pins, pin_factory, name=f"bay {number}")
                self._wanted[number] = State.IDLE
            if config.buzzer is not None:
                self.buzzer = StationBuzzer(
                    config.buzzer,
                    pin_factory,
                    config.quiet_window(),
                    clock,
                    enabled=config.buzzer_enabled,
                )
        except IndicatorError:
            self.close()
            raise

    def describe(self) -> str:
        """One start-up log line: real or simulated GPIO, and which pins do what."""
        bays = ", ".join(
            f"{n}={'/'.join(str(p) for p in b.pins.pins().values())}" for n, b in self.bays.items()
        )
        if self.buzzer is None:
            buzzer = "no buzzer"
        else:
            buzzer = f"buzzer={self.buzzer.pin}"
            if not self.buzzer.enabled:
                buzzer += " (disabled)"
            elif self.buzzer.quiet_hours is not None:
                buzzer += f" (quiet {self.buzzer.quiet_hours})"
        return f"{describe(self.pin_factory)}; bays {bays or 'none'}; {buzzer}"

    def state(self, bay: int) -> State:
        """What bay ``bay`` shows now (STATION_FAULT while a station fault is on)."""
        return self.bays[bay].state

    def show(self, bay: int, state: State) -> IndicatorError | None:
        """Show ``state`` on ``bay``; a GPIO failure is returned, never raised."""
        state = State(state)
        with self._lock:
            indicator = self.bays.get(bay)
            if indicator is None:
                logger.error("no bay %s in [indicators.bays] (known: %s)", bay, sorted(self.bays))
                return IndicatorError(f"no bay {bay} in [indicators.bays]")
            self._wanted[bay] = state
            if self._fault:
                return None
            return self._show(indicator, state)

    def station_fault(self, active: bool) -> IndicatorError | None:
        """Turn the station-wide fault on (every bay shows STATION_FAULT) or off (bays restored)."""
        with self._lock:
            if active == self._fault:
                return None
            self._fault = active
            errors = []
            for number, indicator in self.bays.items():
                shown = State.STATION_FAULT if active else self._wanted[number]
                errors.append(indicator.show(shown))
            if active and self.buzzer is not None:
                errors.append(self.buzzer.sound(Sound.FAULT))
            return next((e for e in errors if e is not None), None)

    def _show(self, indicator: BayIndicator, state: State) -> IndicatorError | None:
        entering = indicator.state != state
        error = indicator.show(state)
        sound = STATE_SOUNDS.get(state)
        if entering and sound is not None and self.buzzer is not None:
            buzzer_error = self.buzzer.sound(sound)
            error = error or buzzer_error
        return error

    def close(self) -> None:
        """Turn everything off and release the pins; safe to call twice."""
        with self._lock:
            for indicator in self.bays.values():
                try:
                    indicator.close()
                except Exception:
                    logger.exception("%s: error while closing its LED", indicator.name)
            if self.buzzer is not None:
                try:
                    self.buzzer.close()
                except Exception:
                    logger.exception("buzzer: error while closing")
