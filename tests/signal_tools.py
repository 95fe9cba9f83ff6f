"""Tests of stop signals that land while the main thread holds an event's lock.

Python runs a signal handler on the main thread between two bytecodes, also inside
``Event.set()`` or ``Event.wait()`` while that thread holds the event's lock
(agent/seams/signals.py).
These tools send a real signal from exactly there, and turn a deadlock into a test failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


def signal_inside(event: threading.Event, method: str, signum: int = signal.SIGTERM) -> list[bool]:
    """Make ``event``'s condition send ``signum`` to this process once, from inside ``method``
    (``"wait"`` or ``"notify_all"``) on the main thread, with the event's lock held.

    Returns a list that holds ``True`` once the signal was sent."""
    real = getattr(event._cond, method)  # type: ignore[attr-defined]
    sent: list[bool] = []

    def with_a_signal(*args: object, **kwargs: object) -> object:
        if method == "notify_all":
            real(*args, **kwargs)  # as in set(): waiters told, then the signal, lock still held
        if not sent and threading.current_thread() is threading.main_thread():
            sent.append(True)
            os.kill(os.getpid(), signum)  # its handler runs here, on this thread
        return None if method == "notify_all" else real(*args, **kwargs)

    setattr(event._cond, method, with_a_signal)  # type: ignore[attr-defined]
    return sent


@contextlib.contextmanager
def deadlock_alarm(seconds: float) -> Iterator[None]:
    """A SIGALRM after ``seconds`` raises TimeoutError (a deadlocked handler fails the test
    instead of hanging it); SIGTERM, SIGINT and SIGALRM handlers are restored afterwards.

    The block fails even when the code under test swallows that TimeoutError (a worker that
    logs errors and goes on)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    fired: list[bool] = []

    def deadlocked(*_args: object) -> None:
        fired.append(True)
        raise TimeoutError("the signal handler waits for a lock its own thread holds")

    signal.signal(signal.SIGALRM, deadlocked)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert not fired, f"deadlocked: still blocked {seconds} s after the signal"
