"""The upload errors: what can go wrong between a station file and the central store.

:class:`UploadError` is the base of every error the tus client raises on purpose, and derives
from the project's one base, :class:`agent.errors.RecdockError`: each kind carries the exit code
the command line gives it should one reach it (agent/cli/main.py), and whether retrying can help
(``permanent``). Each message names the file and what to do. The worker (sync/upload/worker.py)
turns each kind into a file outcome, a fault or the end of a pass.

==========================  =========  ===========
error                       exit code  permanent
==========================  =========  ===========
UploadError                 1          no
UploadHashMismatch          1          no (re-send from zero)
UploadAuthError             78         yes (fix the station token)
UploadForbidden             78         yes (fix the station id or its token)
UploadRejected              1          yes
UploadRetriesExhausted      69         no (the centre is unreachable; resume later)
UploadReceiptTimeout        1          no (ask for the receipt again)
UploadStopped               1          no
UploadReceiptInvalid        1          no (re-send)
==========================  =========  ===========

``_UploadGone`` and ``_Retry`` are the client's internal control flow (see the comment above
them), not errors for a caller, so they stay plain exceptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, RecdockError


class UploadError(RecdockError):
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

    exit_code = EXIT_CONFIG
    permanent = True


class UploadForbidden(UploadError):
    """403: the token's station may not do this (someone else's upload, or another station id)."""

    exit_code = EXIT_CONFIG
    permanent = True


class UploadRejected(UploadError):
    """The server refused the request for good (4xx other than the ones handled)."""

    permanent = True

    def __init__(self, message: str, *, path: Path | str | None = None, status: int = 0):
        super().__init__(message, path=path)
        self.status = status


class UploadRetriesExhausted(UploadError):
    """The network or server kept failing after all retries; the upload resumes next time."""

    exit_code = EXIT_UNAVAILABLE


class UploadReceiptTimeout(UploadError):
    """The server did not produce a receipt before the deadline; ask again later."""


class UploadStopped(UploadError):
    """The uploader's ``stop`` was set while it waited (a backoff, or for a receipt)."""


class UploadReceiptInvalid(UploadError):
    """The receipt names another hash or size than the file's: do not count the file as synced."""


# The tus client's control flow, plain exceptions because no caller is meant to see them: raised
# by sync/upload/responses.py and sync/upload/tus.py, caught by upload()'s retry loops (and by
# terminate(), which turns one into an UploadError).


class _UploadGone(Exception):
    """Internal: the upload URL is unknown to the server (expired, terminated)."""


class _Retry(Exception):
    """Internal: a transient failure worth another attempt (``retry_after``: the seconds the
    server asked for, when it did)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
