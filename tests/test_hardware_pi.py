"""Real-hardware tests: run on a Raspberry Pi station, skipped elsewhere.

Excluded from CI by name (.ci/run passes --ignore=tests/test_hardware_pi.py): CI has no
GPIO and no docked recorder. On a station:

    RECDOCK_HW_LED_PIN=17 RECDOCK_HW_BUZZER_PIN=18 scripts/test tests/test_hardware_pi.py

and, with a real recorder docked whose block device has a file system:

    RECDOCK_HW_RECORDER=1 scripts/test tests/test_hardware_pi.py
"""

from __future__ import annotations

import glob
import os
import time

import pytest

HAVE_GPIO = bool(glob.glob("/dev/gpiochip*"))
pytestmark = pytest.mark.hardware


@pytest.mark.skipif(not HAVE_GPIO, reason="no /dev/gpiochip*: not a Raspberry Pi")
def test_lgpio_factory_drives_a_real_led() -> None:
    from agent.config.indicators import BayPins
    from agent.seams.indicators.devices import BayIndicator
    from agent.seams.indicators.patterns import State
    from agent.seams.indicators.pins import make_pin_factory

    pin = int(os.environ.get("RECDOCK_HW_LED_PIN", "17"))
    factory = make_pin_factory("lgpio")
    bay = BayIndicator(BayPins(led=pin), factory, name="hw")
    try:
        assert bay.show(State.READY) is None
        assert bay.state is State.READY
        time.sleep(0.5)  # a person at the station sees the LED light
        assert bay.show(State.IDLE) is None
    finally:
        bay.close()


@pytest.mark.skipif(not HAVE_GPIO, reason="no /dev/gpiochip*: not a Raspberry Pi")
def test_lgpio_factory_drives_the_buzzer() -> None:
    from agent.seams.indicators.devices import StationBuzzer
    from agent.seams.indicators.patterns import Sound
    from agent.seams.indicators.pins import make_pin_factory

    pin = int(os.environ.get("RECDOCK_HW_BUZZER_PIN", "18"))
    buzzer = StationBuzzer(pin, make_pin_factory("lgpio"))
    try:
        assert buzzer.sound(Sound.READY) is None
    finally:
        buzzer.close()


@pytest.mark.skipif(not os.environ.get("RECDOCK_HW_RECORDER"), reason="no recorder docked")
def test_udev_sees_a_docked_recorder() -> None:
    from agent.config import Config
    from agent.seams.dock.udev import UdevDock

    events = []
    dock = UdevDock(Config())
    dock.start(events.append)
    try:
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        dock.stop()
    assert any(e.kind == "add" and e.devnode for e in events), events
