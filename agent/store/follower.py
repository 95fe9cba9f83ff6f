"""One copy handed from its writer (``Store.write_temp``) to its verifier (``Store.finish``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from agent.store.hashing import Digest


@dataclass(frozen=True)
class TempCopy:
    """A copy written, fsynced and read-only under its temp name, not yet verified."""

    tmp: Path
    dest: Path
    digest: Digest
    source_name: str


class Follower:
    """One copy handed from its writer (``Store.write_temp``) to its verifier (``Store.finish``).

    The writer says when the temp file exists (``start``), how far writeback has been
    started (``written``), and at the end either ``complete`` (fsynced, read-only, the
    source unchanged: it may be linked) or ``abandon`` (it is being removed). The
    verifier waits on it and never links a copy that was not completed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tmp: Path | None = None
        self.dest: Path = Path()
        self.source_name = ""
        self._written = 0
        self._temp: TempCopy | None = None
        self._abandoned = False

    # -- the writer's side --------------------------------------------------------------

    def start(self, tmp: Path, dest: Path, source_name: str) -> None:
        with self._cond:
            self._tmp, self.dest, self.source_name = tmp, dest, source_name
            self._cond.notify_all()

    def written(self, n: int) -> None:
        with self._cond:
            self._written = n
            self._cond.notify_all()

    def complete(self, temp: TempCopy) -> None:
        with self._cond:
            if not self._abandoned:
                self._temp = temp
            self._cond.notify_all()

    def abandon(self) -> None:
        with self._cond:
            if self._temp is None:
                self._abandoned = True
            self._cond.notify_all()

    # -- the verifier's side -------------------------------------------------------------

    def wait_started(self) -> Path | None:
        """The temp file once the writer created it; None if the copy was abandoned."""
        with self._cond:
            self._cond.wait_for(lambda: self._tmp is not None or self._abandoned)
            return None if self._abandoned else self._tmp

    def wait_written(self, want: int) -> tuple[int | None, TempCopy | None]:
        """Wait until ``want`` bytes are written, or the copy is completed or abandoned.

        Returns (bytes written, None) while the copy goes on, (bytes, the completed copy)
        once it is complete, (None, None) when it was abandoned.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._written >= want or self._temp is not None or self._abandoned
            )
            if self._abandoned:
                return None, None
            return self._written, self._temp
