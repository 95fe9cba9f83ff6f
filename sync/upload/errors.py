"""The upload errors: what can go wrong between a station file and the central store.

:class:`UploadError` is the base of every error the tus client raises on purpose; each message
names the file and what to do. The worker (sync/upload/worker.py) turns each kind into a file
outcome, a fault or the end of a pass.

``_UploadGone`` and ``_Retry`` are the client's internal signals, raised and caught inside the
tus client (sync/upload/tus.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UploadError(Exception):
    """An upload failed. The message names the file and what to do."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UploadHashMismatch(UploadError):
    """The server hashed the received file and it does not match: re-send from zero."""

    def __init__(self, message: str, *, path: Path | str | None = None, reason: Any = None):
        super().__init__(message, path=path)
        self.reason = reason


class UploadAuthError(UploadError):
    """401: the station token is missing or unknown to the server."""


class UploadForbidden(UploadError):
    """403: the token's station may not do this (someone else's upload, or another station id)."""


class UploadRejected(UploadError):
    """The server refused the request for good (4xx other than the ones handled)."""

    def __init__(self, message: str, *, path: Path | str | None = None, status: int = 0):
        super().__init__(message, path=path)
        self.status = status


class UploadRetriesExhausted(UploadError):
    """The network or server kept failing after all retries; the upload resumes next time."""


class UploadReceiptTimeout(UploadError):
    """The server did not produce a receipt before the deadline; ask again later."""


class UploadStopped(UploadError):
    """The uploader's ``stop`` was set while it waited (a backoff, or for a receipt)."""


class UploadReceiptInvalid(UploadError):
    """The receipt names another hash or size than the file's: do not count the file as synced."""


class _UploadGone(Exception):
    """Internal: the upload URL is unknown to the server (expired, terminated)."""


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""
