"""The station's log: the bay and the device on every line, to the journal and a rotating file."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path

_context = threading.local()


class BayContextFilter(logging.Filter):
    """Adds ``bay`` and ``device`` to every record, from the thread's current docking."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.bay = getattr(_context, "bay", "-")
        record.device = getattr(_context, "device", "-")
        return True


def set_log_context(bay: int | str | None, device: str | None) -> None:
    _context.bay = "-" if bay is None else bay
    _context.device = device or "-"


def setup_station_logging(level: int = logging.INFO, log_dir: Path | None = None) -> None:
    """Log to stdout (journald keeps it), with the bay and device on every line.

    With ``log_dir``, also to ``<log_dir>/recdock.log``, rotated at 10 MB, 5 kept: the
    station's own log for a Pi whose journal is volatile.
    """
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    fmt = "%(levelname)s [bay %(bay)s %(device)s] %(name)s: %(message)s"
    handler: logging.Handler = logging.StreamHandler(stream=sys.stdout)
    handler.setFormatter(logging.Formatter(stamp + fmt))
    handlers = [handler]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_dir / "recdock.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        rotating.setFormatter(logging.Formatter("%(asctime)s " + fmt))
        handlers.append(rotating)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for h in handlers:
        h.addFilter(BayContextFilter())
        root.addHandler(h)
    root.setLevel(level)
