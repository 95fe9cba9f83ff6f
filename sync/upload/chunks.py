"""The body of one tus PATCH, and the token bucket that paces it.

:class:`ChunkBody` streams a slice of a file through two reused buffers (memory stays bounded
whatever the file size) and counts the bytes handed to the socket; :class:`TokenBucket` holds
them to the upload's bandwidth limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator

from agent.store.io import prefetch_chunks
from sync.upload.errors import UploadError


class TokenBucket:
    """A token bucket over bytes: ``consume(n)`` blocks until ``n`` bytes may go out."""

    def __init__(self, rate: int, burst: int | None = None, *, clock=time.monotonic, sleep=None):
        if rate <= 0:
            raise ValueError("bandwidth limit must be a positive number of bytes per second")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(rate // 4, 16 * 1024))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep or time.sleep
        self._last = clock()
        self._lock = threading.Lock()

    def consume(self, n: int) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n  # may go negative: the debt is paid by sleeping
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class ChunkBody:
    """The body of one PATCH: ``length`` bytes of the file ``fd`` from its current position.

    Iterable with a length (so ``requests`` sends a ``Content-Length`` and no chunked encoding).
    A helper thread reads the next piece into one of two reused buffers while the socket sends
    the other (``agent.store.io.prefetch_chunks``); counts the bytes handed to the socket.
    """

    def __init__(self, fd: int, name: str, length: int, bufs, counter: list[int], bucket):
        self._fd = fd
        self._name = name
        self._length = length
        self._bufs = bufs
        self._counter = counter
        self._bucket = bucket
        self._chunks: Generator[memoryview] | None = None

    def __len__(self) -> int:
        return self._length

    def close(self) -> None:
        """Stop the read-ahead thread now, wherever the request left the iteration.

        A send that failed mid-body leaves the iterator in the failed frame, alive as long
        as its exception is (a log record, a debugger); its thread would go on using the file
        and the buffers the next PATCH uses."""
        if self._chunks is not None:
            self._chunks.close()

    def __iter__(self) -> Iterator[memoryview]:
        left = self._length
        self._chunks = prefetch_chunks(self._fd, *self._bufs, limit=self._length)
        for view in self._chunks:
            n = len(view)
            if self._bucket is not None:
                self._bucket.consume(n)
            self._counter[0] += n
            left -= n
            yield view
        if left > 0:
            raise UploadError(f"{self._name}: file shrank while uploading", path=self._name)
