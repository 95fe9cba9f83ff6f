"""What the central store lets one station announce and store: the upload limits, and the
ledger of unfinished uploads they are checked against.

A creation is admitted (:meth:`Admission.admitting`) only when, with it:

* its ``Upload-Metadata`` has at most ``metadata_bytes`` bytes and ``metadata_keys`` keys
  (checked by the tus endpoint before anything else: :func:`check_metadata`);
* the station has at most ``open_uploads`` uploads open (created, not yet verified);
* the bytes the station announced and has not sent yet stay within ``unfinished_bytes``;
* the bytes the station stores in this UTC day (receipts of uploads it sent, not those answered
  from its own earlier uploads, plus everything its open uploads announce) stay within
  ``daily_bytes``;
* the data disk keeps ``disk_reserve`` bytes free after every open upload, of every station,
  has received its last byte.

A refusal is a :class:`LimitExceeded` with the HTTP status to answer: 429 with ``Retry-After``
for a station's own backlog (open uploads, unfinished or daily bytes), 413 with ``Retry-After``
while the disk is short, and 413 without it for an upload that can never fit a limit. The check
and the creation run under one lock, so concurrent creations cannot pass it together.

The ledger is in memory, rebuilt from the uploads folder when the store opens, and kept by the
store as uploads are created, written, verified, terminated and expired.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

GiB = 1024**3

DEFAULT_MAX_SIZE = 64 * 1024**3  # the largest upload (--max-size, Tus-Max-Size)
DEFAULT_EXPIRY = 7 * 24 * 3600.0  # seconds an untouched unfinished upload is kept


@dataclass(frozen=True)
class UploadLimits:
    """The limits of the tus endpoint; each has a ``recdock-central`` option (docs/central.md)."""

    metadata_bytes: int = 4096
    metadata_keys: int = 32
    open_uploads: int = 16
    unfinished_bytes: int = 128 * GiB
    daily_bytes: int = 1024 * GiB
    disk_reserve: int = 4 * GiB


class LimitExceeded(Exception):
    """A creation refused by a limit: the status, error code and detail to answer with."""

    def __init__(self, status: int, error: str, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after = retry_after


def check_metadata(header: str | None, limits: UploadLimits) -> None:
    """Refuse an ``Upload-Metadata`` over the size or key limit, before it is decoded."""
    if header is None:
        return
    if len(header) > limits.metadata_bytes:
        raise LimitExceeded(
            431,
            "metadata_too_large",
            f"Upload-Metadata has {len(header)} bytes; at most {limits.metadata_bytes} are taken",
        )
    keys = sum(1 for pair in header.split(",") if pair.strip())
    if keys > limits.metadata_keys:
        raise LimitExceeded(
            400,
            "too_many_keys",
            f"Upload-Metadata has {keys} keys; at most {limits.metadata_keys} are taken",
        )


@dataclass
class _Open:
    station: str
    length: int
    offset: int


def seconds_to_next_utc_day(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


class Admission:
    """The ledger of open uploads and the limits a new one is admitted under."""

    def __init__(
        self,
        limits: UploadLimits,
        data_dir: Path,
        stored_today: Callable[[str, str], int],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``stored_today(station, day)`` is the bytes the station stored on the UTC day
        ``YYYY-MM-DD`` (its receipts, without the de-duplicated ones)."""
        self.limits = limits
        self.data_dir = data_dir
        self._stored_today = stored_today
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()  # the ledger
        self._admit = threading.Lock()  # one creation at a time: check, create, track

    # -- the ledger ---------------------------------------------------------------------------

    def track(self, upload_id: str, station: str, length: int, offset: int) -> None:
        """An upload was created, or its offset recorded."""
        with self._lock:
            self._open[upload_id] = _Open(station, length, offset)

    def reset(self, entries: Iterable[tuple[str, str, int, int]]) -> None:
        """The ledger anew: (upload id, station, length, offset) of every open upload."""
        fresh = {upload_id: _Open(station, n, offset) for upload_id, station, n, offset in entries}
        with self._lock:
            self._open = fresh

    def forget(self, upload_id: str) -> None:
        """An upload was verified, failed, terminated or expired."""
        with self._lock:
            self._open.pop(upload_id, None)

    def _totals(self, station: str) -> tuple[int, int, int, int]:
        """(the station's open uploads, bytes it has still to send, bytes it announced; bytes
        every station has still to send)."""
        count = unsent = announced = unsent_all = 0
        with self._lock:
            for entry in self._open.values():
                left = entry.length - entry.offset
                unsent_all += left
                if entry.station == station:
                    count += 1
                    unsent += left
                    announced += entry.length
        return count, unsent, announced, unsent_all

    # -- admission ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def admitting(
        self,
        station: str,
        length: int,
        ledger: Callable[[], Iterable[tuple[str, str, int, int]]] | None = None,
    ) -> Iterator[None]:
        """Hold the admission while the caller creates the upload (and tracks it); raises
        :class:`LimitExceeded` when a limit refuses it. ``ledger``, when given, is read first
        into the ledger (:meth:`reset`): the open uploads of every worker."""
        with self._admit:
            if ledger is not None:
                self.reset(ledger())
            self._check(station, length)
            yield

    def _check(self, station: str, length: int) -> None:
        limits = self.limits
        count, unsent, announced, unsent_all = self._totals(station)
        if count + 1 > limits.open_uploads:
            raise LimitExceeded(
                429,
                "too_many_uploads",
                f"station {station} has {count} open uploads, the most it may have; finish or "
                "terminate one first",
                retry_after=60,
            )
        self._check_unfinished(station, length, unsent)
        self._check_daily(station, length, announced)
        self._check_disk(length, unsent_all)

    def _check_unfinished(self, station: str, length: int, unsent: int) -> None:
        limit = self.limits.unfinished_bytes
        if length > limit:
            raise LimitExceeded(
                413,
                "too_large",
                f"Upload-Length {length} exceeds the {limit} bytes a station "
                "may have announced and not sent",
            )
        if unsent + length > limit:
            raise LimitExceeded(
                429,
                "unfinished_bytes",
                f"station {station} has {unsent} bytes announced and not sent; with {length} "
                f"more it would pass {limit}; send those first",
                retry_after=60,
            )

    def _check_daily(self, station: str, length: int, announced: int) -> None:
        limit = self.limits.daily_bytes
        if length > limit:
            raise LimitExceeded(
                413,
                "too_large",
                f"Upload-Length {length} exceeds the {limit} bytes a station may store in a day",
            )
        now = self._clock()
        stored = self._stored_today(station, now.strftime("%Y-%m-%d"))
        if stored + announced + length > limit:
            raise LimitExceeded(
                429,
                "daily_bytes",
                f"station {station} stored {stored} bytes today (UTC) and has {announced} "
                f"announced; with {length} more it would pass {limit} bytes a day",
                retry_after=seconds_to_next_utc_day(now),
            )

    def _check_disk(self, length: int, unsent_all: int) -> None:
        free = shutil.disk_usage(self.data_dir).free
        reserve = self.limits.disk_reserve
        if free - unsent_all - length < reserve:
            raise LimitExceeded(
                413,
                "insufficient_storage",
                f"the central store's disk has {free} bytes free and {unsent_all} promised to "
                f"open uploads; {length} more would leave less than its {reserve}-byte reserve",
                retry_after=600,
            )
