"""SIGTERM and SIGINT turned into a stop, never acted on inside the signal handler.

Python runs a signal handler on the main thread between any two bytecodes, also while that
thread is inside ``Event.set()`` or ``Event.wait()`` and holds the event's non-reentrant lock.
A handler that sets the same event then waits for ever, on its own thread, for a lock that
thread holds (CPython issue #126434 is the same trap in ``multiprocessing.Event``). So the
handler here only puts the signal's number in a ``queue.SimpleQueue``, whose ``put`` is safe to
call from a signal handler, and a relay thread runs the action.

The stop therefore takes effect a moment after the signal, not inside the handler.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalRelay:
    """Runs ``action`` on a relay thread for every one of ``signals`` that arrives.

    Installs the handlers at once; :meth:`close` (or leaving the ``with`` block) puts the
    previous handlers back and ends the thread. Only the main thread can install handlers.
    """

    def __init__(self, action: Callable[[], object], signals: Iterable[int] = STOP_SIGNALS) -> None:
        self._action = action
        self._asked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._relay, name="signal-relay", daemon=True)
        self._thread.start()
        self._previous: dict[int, Any] = {}
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self._asked.put(signum)  # nothing else here: see the module's docstring

    def _relay(self) -> None:
        while self._asked.get():
            self._action()

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        self._asked.put(0)  # ends the relay once the signals before it are acted on

    def __enter__(self) -> SignalRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
