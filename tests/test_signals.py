"""agent/seams/signals.py: a stop signal is acted on by a relay thread, never inside the handler."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from agent.seams.signals import SignalRelay
from tests.signal_tools import deadlock_alarm, signal_inside


@pytest.fixture
def handlers_restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_a_signal_inside_event_set_on_the_same_event_does_not_deadlock() -> None:
    stop = threading.Event()
    signalled = signal_inside(stop, "notify_all")
    acted = threading.Event()
    with deadlock_alarm(10), SignalRelay(lambda: (stop.set(), acted.set())):
        stop.set()  # the main thread, holding the event's lock, receives SIGTERM
        assert acted.wait(5), "the relay thread did not act on the signal"
    assert signalled == [True]


def test_every_signal_is_relayed_and_close_puts_the_old_handlers_back(
    handlers_restored: None,
) -> None:
    seen: list[str] = []
    done = threading.Event()

    def previous(_signum: int, _frame: object) -> None:
        seen.append("previous")

    signal.signal(signal.SIGINT, previous)
    relay = SignalRelay(lambda: (seen.append("relayed"), done.set()))
    for _ in range(3):
        done.clear()
        os.kill(os.getpid(), signal.SIGINT)
        assert done.wait(5)
    relay.close()
    assert signal.getsignal(signal.SIGINT) is previous
    os.kill(os.getpid(), signal.SIGINT)
    assert seen == ["relayed", "relayed", "relayed", "previous"]
