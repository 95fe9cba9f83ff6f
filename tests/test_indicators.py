"""Bay LEDs and the station buzzer on gpiozero's MockFactory, chosen explicitly.

Blink timings are asserted on the mock pins' timestamped state history (``MockPin.states``, each
entry's timestamp is the time since the previous change), with :func:`assert_states_and_times`.
"""

from __future__ import annotations

import itertools
import logging
import time
from datetime import datetime

import pytest
from gpiozero.pins.mock import MockFactory, MockPin
from pydantic import ValidationError

from agent.config.indicators import BayPins, IndicatorsConfig, parse_quiet_hours
from agent.errors import IndicatorError
from agent.seams.indicators.devices import BayIndicator, Indicators, StationBuzzer
from agent.seams.indicators.patterns import (
    BUZZER_PATTERNS,
    LED_PATTERNS,
    STATE_SOUNDS,
    Sound,
    State,
)
from agent.seams.indicators.pins import describe, make_pin_factory

LED_PIN = 17
RGB = {"red": 22, "green": 23, "blue": 24}
BUZZER_PIN = 18


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def assert_states_and_times(pin: MockPin, expected: list[tuple[float, bool]]) -> None:
    """The pin went through ``expected`` (seconds since the previous change, state), in order.

    gpiozero's own ``MockPin.assert_states_and_times`` allows 50 ms either way; a loaded CI
    machine wakes the blink thread later than that. A late wake-up only ever lengthens the
    phase it ends, so a phase may run long by 40 % (at least 150 ms, as tests/test_station.py
    allows: the suite runs in three processes on two CPUs, and a 0.1 s flash was seen to end
    88 ms late) but never short by more than gpiozero's 50 ms.
    """
    states = pin.states[: len(expected)]
    assert [s.state for s in states] == [state for _t, state in expected], pin.states
    for got, (want, _state) in zip(states, expected, strict=True):
        assert want - 0.05 <= got.timestamp <= want + max(0.4 * want, 0.15), (pin.states, expected)


def wait_for_changes(pin: MockPin, count: int, timeout: float) -> None:
    """Wait until ``pin.states`` holds ``count`` entries (the initial entry included)."""
    wait_for(lambda: len(pin.states) >= count, timeout, f"{count} states on {pin!r}")


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


@pytest.fixture
def single(factory):
    bay = BayIndicator(BayPins(led=LED_PIN), factory)
    pin = factory.pin(LED_PIN)
    pin.clear_states()
    yield bay, pin
    bay.close()


@pytest.fixture
def rgb(factory):
    bay = BayIndicator(BayPins(**RGB), factory)
    pins = {name: factory.pin(n) for name, n in RGB.items()}
    for pin in pins.values():
        pin.clear_states()
    yield bay, pins
    bay.close()


# --- the pattern table ---------------------------------------------------------------------------


BLINKING = [s for s in State if LED_PATTERNS[s].blinks]


def test_every_state_has_a_pattern():
    assert set(LED_PATTERNS) == set(State)


def test_no_two_states_share_a_timing():
    # What a colour-blind officer (or a single-colour LED) sees is the timing only.
    def timing(state):
        p = LED_PATTERNS[state]
        if not p.blinks:
            return ("steady", p.lit)
        return ("blink", p.on_time, p.off_time)

    for a, b in itertools.combinations(State, 2):
        assert timing(a) != timing(b), f"{a.value} and {b.value} look the same without colour"


def test_blinking_states_differ_visibly():
    # Not just distinct numbers: the period differs by a quarter or the duty cycle by a fifth.
    def period_and_duty(state):
        p = LED_PATTERNS[state]
        return p.on_time + p.off_time, p.on_time / (p.on_time + p.off_time)

    for a, b in itertools.combinations(BLINKING, 2):
        (pa, da), (pb, db) = period_and_duty(a), period_and_duty(b)
        assert abs(pa - pb) / max(pa, pb) >= 0.25 or abs(da - db) >= 0.2, (a.value, b.value)


def test_no_two_sounds_share_a_pattern():
    assert len(set(BUZZER_PATTERNS.values())) == len(BUZZER_PATTERNS) == len(Sound)


# --- single-colour LED: timing over time ---------------------------------------------------------


def test_a_new_bay_is_dark(single):
    bay, pin = single
    assert bay.state is State.IDLE
    assert pin.state is False


@pytest.mark.parametrize("state", BLINKING, ids=lambda s: s.value)
def test_blinking_state_timing(single, state):
    bay, pin = single
    on, off = LED_PATTERNS[state].on_time, LED_PATTERNS[state].off_time
    assert bay.show(state) is None
    assert bay.state is state
    # off (initial), on at once, off after on_time, on again after off_time
    wait_for_changes(pin, 4, timeout=on + off + 1.0)
    assert len(pin.states) >= 4
    assert_states_and_times(pin, [(0.0, False), (0.0, True), (on, False), (off, True)])


def test_ready_is_steady_on(single):
    bay, pin = single
    assert bay.show(State.READY) is None
    wait_for_changes(pin, 2, timeout=1.0)
    time.sleep(0.6)  # a window longer than any blink's on_time below 0.6 s: nothing may change
    assert [s.state for s in pin.states] == [False, True]


def test_idle_after_blinking_is_dark_and_stays_dark(single):
    bay, pin = single
    bay.show(State.NOT_READY)
    wait_for_changes(pin, 3, timeout=1.0)
    assert bay.show(State.IDLE) is None
    assert pin.state is False
    pin.clear_states()
    time.sleep(0.5)  # the fast blink would have toggled three times by now
    assert [s.state for s in pin.states] == [False]


def test_showing_the_same_state_does_not_restart_the_blink(single):
    bay, pin = single
    bay.show(State.RECOGNISED)
    wait_for_changes(pin, 2, timeout=1.0)
    time.sleep(0.25)
    bay.show(State.RECOGNISED)  # a restart would turn the LED off/on now, not at 0.5 s
    wait_for_changes(pin, 3, timeout=2.0)
    assert_states_and_times(pin, [(0.0, False), (0.0, True), (0.5, False)])


def test_active_low_single_led_inverts_the_pin(factory):
    bay = BayIndicator(BayPins(led=LED_PIN, active_high=False), factory)
    pin = factory.pin(LED_PIN)
    assert pin.state is True  # dark
    bay.show(State.READY)
    assert pin.state is False
    bay.close()


# --- RGB LED: colour channels --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "lit"),
    [
        (State.READY, {"green"}),
        (State.IDLE, set()),
    ],
    ids=lambda v: v.value if isinstance(v, State) else None,
)
def test_rgb_steady_colours(rgb, state, lit):
    bay, pins = rgb
    assert bay.show(state) is None
    assert {name for name, pin in pins.items() if pin.state} == lit


@pytest.mark.parametrize(
    ("state", "lit"),
    [
        (State.RECOGNISED, {"red", "green"}),  # yellow
        (State.NOT_READY, {"red"}),
        (State.UNKNOWN_DEVICE, {"blue"}),
        (State.STATION_FAULT, {"red", "green", "blue"}),  # white
        (State.YANKED, {"red", "blue"}),  # magenta
    ],
    ids=lambda v: v.value if isinstance(v, State) else None,
)
def test_rgb_blinks_the_right_channels(rgb, state, lit):
    bay, pins = rgb
    on, off = LED_PATTERNS[state].on_time, LED_PATTERNS[state].off_time
    assert bay.show(state) is None
    for name in lit:
        wait_for_changes(pins[name], 4, timeout=on + off + 1.0)
        assert_states_and_times(pins[name], [(0.0, False), (0.0, True), (on, False), (off, True)])
    for name in set(pins) - lit:
        assert [s.state for s in pins[name].states] == [False], name


def test_common_anode_rgb_drives_low_to_light(factory):
    bay = BayIndicator(BayPins(**RGB, active_high=False), factory)
    pins = {name: factory.pin(n) for name, n in RGB.items()}
    assert all(p.state for p in pins.values())  # all dark
    bay.show(State.READY)
    assert {name for name, p in pins.items() if not p.state} == {"green"}
    bay.close()


# --- failures are reported, not raised -----------------------------------------------------------


class FailingPin(MockPin):
    fail = False

    def _change_state(self, value):
        if self.fail:
            raise OSError(5, "Input/output error")
        return super()._change_state(value)


def test_a_gpio_error_is_logged_and_returned_not_raised(caplog):
    factory = MockFactory(pin_class=FailingPin)
    bay = BayIndicator(BayPins(led=LED_PIN), factory, name="bay 3")
    factory.pin(LED_PIN).fail = True
    with caplog.at_level(logging.ERROR, logger="agent.seams.indicators.devices"):
        error = bay.show(State.NOT_READY)
    assert isinstance(error, IndicatorError)
    assert "bay 3" in str(error)
    assert isinstance(error.__cause__, OSError)
    assert bay.state is State.IDLE  # not claimed shown
    assert any(r.exc_info for r in caplog.records)  # the traceback is in the log
    factory.pin(LED_PIN).fail = False
    bay.close()
    factory.close()


def test_no_pin_factory_is_refused():
    with pytest.raises(IndicatorError, match="make_pin_factory"):
        BayIndicator(BayPins(led=LED_PIN), None)


# --- buzzer --------------------------------------------------------------------------------------


NOON = datetime(2024, 5, 1, 12, 0)


def beeps(pattern):
    expected = [(0.0, False)]
    for i in range(pattern.n):
        expected.append((0.0 if i == 0 else pattern.off_time, True))
        expected.append((pattern.on_time, False))
    return expected


@pytest.fixture
def buzzer_pin(factory):
    return factory.pin(BUZZER_PIN)


def make_buzzer(factory, quiet=None, now=NOON, enabled=True):
    buzzer = StationBuzzer(BUZZER_PIN, factory, quiet, clock=lambda: now, enabled=enabled)
    factory.pin(BUZZER_PIN).clear_states()
    return buzzer


def test_ready_is_one_short_beep(factory, buzzer_pin):
    buzzer = make_buzzer(factory)
    assert buzzer.sound(Sound.READY) is None
    wait_for_changes(buzzer_pin, 3, timeout=1.0)
    time.sleep(0.3)  # and nothing after it
    assert len(buzzer_pin.states) == 3
    assert_states_and_times(buzzer_pin, [(0.0, False), (0.0, True), (0.1, False)])
    buzzer.close()


def test_not_ready_is_three_beeps(factory, buzzer_pin):
    buzzer = make_buzzer(factory)
    assert buzzer.sound(Sound.NOT_READY) is None
    wait_for_changes(buzzer_pin, 7, timeout=2.0)
    time.sleep(0.3)
    assert [s.state for s in buzzer_pin.states] == [False] + [True, False] * 3
    assert_states_and_times(buzzer_pin, beeps(BUZZER_PATTERNS[Sound.NOT_READY]))
    buzzer.close()


@pytest.mark.parametrize("sound", [Sound.UNKNOWN_DEVICE, Sound.FAULT], ids=lambda s: s.value)
def test_other_sounds_follow_the_table(factory, buzzer_pin, sound):
    buzzer = make_buzzer(factory)
    pattern = BUZZER_PATTERNS[sound]
    buzzer.sound(sound)
    expected = beeps(pattern)
    wait_for_changes(buzzer_pin, len(expected), timeout=pattern.n * 1.5 + 1.0)
    assert_states_and_times(buzzer_pin, expected)
    buzzer.close()


@pytest.mark.parametrize(
    ("window", "now", "quiet"),
    [
        ("22:00-06:00", datetime(2024, 5, 1, 23, 30), True),  # before midnight
        ("22:00-06:00", datetime(2024, 5, 2, 2, 0), True),  # after midnight
        ("22:00-06:00", datetime(2024, 5, 1, 22, 0), True),  # start is included
        ("22:00-06:00", datetime(2024, 5, 2, 6, 0), False),  # end is excluded
        ("22:00-06:00", datetime(2024, 5, 1, 12, 0), False),
        ("12:00-13:30", datetime(2024, 5, 1, 12, 45), True),
        ("12:00-13:30", datetime(2024, 5, 1, 23, 0), False),
    ],
)
def test_quiet_hours_silence_the_buzzer(factory, buzzer_pin, window, now, quiet):
    buzzer = make_buzzer(factory, quiet=window, now=now)
    assert buzzer.sound(Sound.READY) is None
    if quiet:
        time.sleep(0.2)  # longer than the beep
        assert [s.state for s in buzzer_pin.states] == [False]
        assert buzzer.silenced() == f"quiet hours {window}"
    else:
        wait_for_changes(buzzer_pin, 3, timeout=1.0)
        assert buzzer.silenced() is None
    buzzer.close()


def test_disabled_buzzer_is_silent(factory, buzzer_pin):
    buzzer = make_buzzer(factory, enabled=False)
    buzzer.sound(Sound.FAULT)
    time.sleep(0.2)
    assert [s.state for s in buzzer_pin.states] == [False]
    assert buzzer.silenced() == "disabled"
    buzzer.close()


# --- the station: all bays and the buzzer --------------------------------------------------------


@pytest.fixture
def station(factory):
    config = IndicatorsConfig(bays={1: BayPins(led=LED_PIN), 2: BayPins(**RGB)}, buzzer=BUZZER_PIN)
    indicators = Indicators(config, factory, clock=lambda: NOON)
    yield indicators
    indicators.close()


def test_station_shows_per_bay_and_beeps_on_entering_a_verdict(station, factory):
    buzzer = factory.pin(BUZZER_PIN)
    buzzer.clear_states()
    assert station.show(1, State.RECOGNISED) is None
    assert State.RECOGNISED not in STATE_SOUNDS
    assert station.show(1, State.READY) is None
    assert station.show(1, State.READY) is None  # again: no second beep
    wait_for_changes(buzzer, 3, timeout=1.0)
    time.sleep(0.3)
    assert [s.state for s in buzzer.states] == [False, True, False]
    assert factory.pin(LED_PIN).state is True
    assert station.state(1) is State.READY
    assert station.state(2) is State.IDLE


def test_unknown_bay_is_reported_not_raised(station):
    error = station.show(9, State.READY)
    assert isinstance(error, IndicatorError)
    assert "no bay 9" in str(error)


def test_station_fault_overrides_every_bay_and_clears_back(station):
    station.show(1, State.READY)
    assert station.station_fault(True) is None
    assert station.state(1) is State.STATION_FAULT
    assert station.state(2) is State.STATION_FAULT
    station.show(2, State.NOT_READY)  # remembered, not shown, while the fault lasts
    assert station.state(2) is State.STATION_FAULT
    assert station.station_fault(False) is None
    assert station.state(1) is State.READY
    assert station.state(2) is State.NOT_READY


def test_close_releases_the_pins_and_is_idempotent(factory):
    config = IndicatorsConfig(bays={1: BayPins(led=LED_PIN)}, buzzer=BUZZER_PIN)
    Indicators(config, factory).close()
    again = Indicators(config, factory)  # the pins are free again
    again.close()
    again.close()


# --- configuration -------------------------------------------------------------------------------


def test_config_from_toml_like_data():
    config = IndicatorsConfig.model_validate(
        {
            "bays": {"1": {"led": 17}, "2": {"red": 22, "green": 23, "blue": 24}},
            "buzzer": 18,
            "quiet_hours": "22:00-06:00",
        }
    )
    assert config.bays[2].is_rgb
    assert config.quiet_window() == parse_quiet_hours("22:00-06:00")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"buzer": 18}, "buzer"),
        ({"bays": {1: {"led": 17, "colour": "red"}}}, "colour"),
        (
            {"bays": {1: {"led": 17}, 2: {"led": 17}}},
            "BCM 17 is used twice: by bay 1 led and by bay 2 led",
        ),
        (
            {"bays": {1: {"red": 18, "green": 23, "blue": 24}}, "buzzer": 18},
            "by bay 1 red and by buzzer",
        ),
        ({"bays": {1: {"led": 28}}}, "less than or equal to 27"),
        ({"buzzer": -1}, "greater than or equal to 0"),
        ({"bays": {1: {"led": 17, "red": 22}}}, "not both"),
        ({"bays": {1: {"red": 22, "green": 23}}}, "all of red, green and blue"),
        ({"bays": {0: {"led": 17}}}, "bay numbers run from 1"),
        ({"quiet_hours": "10pm-6am"}, '"HH:MM-HH:MM"'),
        ({"quiet_hours": "22:00-24:00"}, '"HH:MM-HH:MM"'),
        ({"quiet_hours": "07:00-07:00"}, "same time"),
    ],
)
def test_config_rejects(data, message):
    with pytest.raises(ValidationError) as info:
        IndicatorsConfig.model_validate(data)
    assert message in str(info.value)


def test_every_config_field_is_described():
    for model in (IndicatorsConfig, BayPins):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


# --- the pin-factory seam ------------------------------------------------------------------------


def lgpio_works() -> bool:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory

        LGPIOFactory().close()
    except Exception:
        return False
    return True


def test_mock_is_made_only_when_asked_and_says_so():
    factory = make_pin_factory("mock")
    assert isinstance(factory, MockFactory)
    assert "SIMULATED" in describe(factory)
    factory.close()


@pytest.mark.skipif(lgpio_works(), reason="lgpio works on this machine: real GPIO is present")
def test_lgpio_without_gpio_says_what_to_set(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")  # must not be consulted
    with pytest.raises(IndicatorError, match=r'no GPIO found.*set \[gpio\] factory = "mock"'):
        make_pin_factory("lgpio")


@pytest.mark.parametrize("kind", ["auto", "", "rpigpio", "MOCK"])
def test_no_other_factory_and_no_auto_fallback(kind):
    with pytest.raises(IndicatorError, match="mock, lgpio"):
        make_pin_factory(kind)


def test_station_describe_names_the_seam_and_pins(station):
    line = station.describe()
    assert "SIMULATED" in line
    assert "1=17" in line and "2=22/23/24" in line and "buzzer=18" in line
    assert "\n" not in line


def test_an_unreported_fault_shows_on_the_empty_bays_only(station):
    station.show(1, State.READY)
    assert station.unreported(True) is None
    assert station.state(1) is State.READY  # a recorder's verdict stays
    assert station.state(2) is State.FAULT_UNREPORTED
    station.show(1, State.IDLE)  # the recorder taken: the bay shows it too
    assert station.state(1) is State.FAULT_UNREPORTED
    station.station_fault(True)
    assert station.state(2) is State.STATION_FAULT
    station.station_fault(False)
    assert station.state(2) is State.FAULT_UNREPORTED
    assert station.unreported(False) is None
    assert station.state(1) is State.IDLE and station.state(2) is State.IDLE
