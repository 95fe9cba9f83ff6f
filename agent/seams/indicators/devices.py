"""The bay LEDs and the station buzzer, behind gpiozero's pin-factory seam.

What each state looks like is data in agent/seams/indicators/patterns.py.

Every gpiozero device here gets an explicit ``pin_factory``: the mock factory runs only when chosen
(``make_pin_factory("mock")``), never as a fallback (rule 7). An indicator failure never
crashes the caller's work: ``show`` and ``sound`` log the traceback and *return* an
:class:`IndicatorError`; the daemon decides what to do with it. See docs/indicators.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gpiozero import LED, RGBLED, Buzzer

from agent.config.indicators import BayPins, IndicatorsConfig, QuietHours, parse_quiet_hours
from agent.errors import IndicatorError
from agent.seams.indicators.patterns import (
    BLACK,
    BUZZER_PATTERNS,
    LED_PATTERNS,
    STATE_SOUNDS,
    LedPattern,
    Sound,
    State,
)
from agent.seams.indicators.pins import describe, require_factory

logger = logging.getLogger(__name__)


# --- devices -------------------------------------------------------------------------------------


class BayIndicator:
    """The LED of one bay (single-colour or RGB)."""

    def __init__(self, pins: BayPins, pin_factory: Any, *, name: str = "bay") -> None:
        require_factory(pin_factory)
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
        require_factory(pin_factory)
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
        require_factory(pin_factory)
        self.config = config
        self.pin_factory = pin_factory
        self._lock = threading.RLock()
        self._wanted: dict[int, State] = {}
        self._fault = False
        self._unreported = False
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
            return self._show(indicator, self._displayed(state))

    def _displayed(self, state: State) -> State:
        """An empty bay shows FAULT_UNREPORTED while a fault has not reached the centre."""
        return State.FAULT_UNREPORTED if self._unreported and state is State.IDLE else state

    def unreported(self, active: bool) -> IndicatorError | None:
        """A fault has not reached the centre in time (on), or every one has (off): the
        empty bays show it (docs/indicators.md); a bay with a recorder keeps its own state."""
        with self._lock:
            if active == self._unreported:
                return None
            self._unreported = active
            if self._fault:
                return None
            errors = [
                self.bays[n].show(self._displayed(s))
                for n, s in self._wanted.items()
                if s is State.IDLE and n in self.bays
            ]
            return next((e for e in errors if e is not None), None)

    def station_fault(self, active: bool) -> IndicatorError | None:
        """Turn the station-wide fault on (every bay shows STATION_FAULT) or off (bays restored)."""
        with self._lock:
            if active == self._fault:
                return None
            self._fault = active
            errors = []
            for number, indicator in self.bays.items():
                shown = State.STATION_FAULT if active else self._displayed(self._wanted[number])
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
