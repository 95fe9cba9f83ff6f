"""The GPIO pin-factory seam: gpiozero's lgpio factory on a Pi, its mock only when chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import IndicatorError

# --- the pin-factory seam ------------------------------------------------------------------------

PIN_FACTORY_KINDS = ("mock", "lgpio")
_NO_GPIO_HINT = 'set [gpio] factory = "mock" to run without hardware (simulated LEDs and buzzer)'


def make_pin_factory(kind: str) -> Any:
    """Return the gpiozero pin factory named ``kind``: ``"mock"`` or ``"lgpio"`` (Pi 4/5).

    There is no ``"auto"``: the mock is never a silent fallback (rule 7), and
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


def require_factory(pin_factory: Any) -> None:
    if pin_factory is None:
        # gpiozero would pick a default factory by itself; we never let it (rule 7).
        raise IndicatorError("no pin_factory given: pass make_pin_factory('lgpio' or 'mock')")


# --- for `recdock doctor` ------------------------------------------------------------------------


def gpiochips(dev: Path = Path("/dev")) -> list[str]:
    """The GPIO character devices of this machine (``/dev/gpiochip*``), in order."""
    return sorted(str(p) for p in dev.glob("gpiochip*"))


def probe_pins(kind: str, pins: list[int]) -> dict[int, str | None]:
    """Claim each BCM pin once through the pin factory ``kind``, then release them all: None
    for a pin that could be claimed, else why not (a running station holds its own pins).

    Raises :class:`IndicatorError` when the factory itself cannot be made.
    """
    factory = make_pin_factory(kind)
    answers: dict[int, str | None] = {}
    try:
        for number in pins:
            try:
                factory.pin(number)
            except Exception as exc:  # lgpio.error ("GPIO busy"), PinInvalidPin, ...
                answers[number] = f"{type(exc).__name__}: {exc}"
            else:
                answers[number] = None
    finally:
        factory.close()
    return answers
