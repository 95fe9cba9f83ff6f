"""agent/signals.py: a stop signal is acted on by a relay thread, never inside the handler."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from agent.signals import SignalRelay


@pytest.fixture
def handlers_restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, handler in saved.items():
        signal.signal(s, handler)


def deadlocked(*_args: object) -> None:
    raise TimeoutError("the signal handler waits for a lock its own thread holds")


def test_a_signal_inside_event_set_on_the_same_event_does_not_deadlock(
    handlers_restored: None,
) -> None:
    stop = threading.Event()
    notify_all = stop._cond.notify_all  # type: ignore[attr-defined]

    def signal_while_the_lock_is_held() -> None:
        notify_all()
        if threading.current_thread() is threading.main_thread():
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, on this thread

    stop._cond.notify_all = signal_while_the_lock_is_held  # type: ignore[attr-defined]
    acted = threading.Event()
    with SignalRelay(lambda: (stop.set(), acted.set())):
        signal.signal(signal.SIGALRM, deadlocked)
        signal.setitimer(signal.ITIMER_REAL, 5)
        stop.set()  # the main thread, holding the event's lock, receives SIGTERM
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert acted.wait(5), "the relay thread did not act on the signal"


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
