"""One exception base for recdock, and the exit codes scripts and systemd act on.

Every concrete error says what failed, on which file or device, and what to do.
The CLI prints ``str(error)`` as one line; the log keeps the traceback.
"""

from __future__ import annotations

import errno

#: errno values that mean the recorder itself went away (unplugged, its FUSE process died or
#: its connection aborted).
GONE_ERRNOS = {
    errno.ENOTCONN,
    errno.ENODEV,
    errno.ENXIO,
    errno.ESHUTDOWN,
    errno.ECONNABORTED,
    errno.ENOENT,
}
#: errno values that mean a disk is full.
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

# Exit codes (documented in docs/operations.md). Values follow sysexits.h where one fits.
EXIT_OK = 0
EXIT_FAILED = 1  # some files failed, recorder not ready, verify found problems
EXIT_USAGE = 2  # bad command line (click's own code)
EXIT_UNAVAILABLE = 69  # the recorder went away (yanked) or the source is not there
EXIT_SOFTWARE = 70  # a bug: an unexpected exception
EXIT_CANTCREAT = 73  # the store is full (reserve reached) or not writable
EXIT_IOERR = 74  # catalog or store I/O error
EXIT_NOPERM = 77  # access refused: no valid approval (docs/access.md)
EXIT_CONFIG = 78  # configuration or firmware profile invalid


class RecdockError(Exception):
    """Base of every error recdock raises on purpose."""

    exit_code = EXIT_FAILED
    #: A permanent error is not retried by a retry loop (disk full, permission denied).
    permanent = False


class ConfigError(RecdockError):
    """The configuration or a firmware profile is invalid."""

    exit_code = EXIT_CONFIG
    permanent = True


class ProfileError(ConfigError):
    """A firmware profile is invalid, or no profile matches a recorder."""


class CatalogError(RecdockError):
    """The catalog is missing, unreadable, or does not belong to this store."""

    exit_code = EXIT_IOERR
    permanent = True


class CatalogFullError(CatalogError):
    """The disk under the catalog is full: the catalog is fine, it cannot grow."""

    exit_code = EXIT_CANTCREAT


class StoreError(RecdockError):
    """Writing or reading the station store failed."""

    exit_code = EXIT_IOERR


class StoreFullError(StoreError):
    """The store reached its configured free-space reserve (or the disk is full)."""

    exit_code = EXIT_CANTCREAT
    permanent = True


class RecorderError(RecdockError):
    """Something a recorder presented could not be read or is not acceptable."""


class RecorderGoneError(RecorderError):
    """The recorder disappeared (unplugged, its mount died) during the work."""

    exit_code = EXIT_UNAVAILABLE


class SourceChangedError(RecorderError):
    """A file on the recorder changed while it was being copied."""


class RecorderDamagedError(RecorderError):
    """The recorder's file system contradicts itself: a file cannot be read whole (its
    clusters hold fewer bytes than its directory entry says). Not a change: it stays so."""


class VerifyMismatchError(StoreError):
    """A copy read back from disk does not match the hash taken while copying."""


class IndicatorError(RecdockError):
    """An LED or the buzzer could not be driven, or the GPIO seam could not be set up.

    Raised by constructors and :func:`make_pin_factory` (start-up: the daemon stops with the
    message). *Returned*, not raised, by ``show`` and ``sound``: a dead LED never stops an
    offload.
    """


class FaultStateError(RecdockError):
    """A fault cannot take that step: no such fault, or it is resolved already."""

    exit_code = EXIT_FAILED
    permanent = True


class AccessRefusedError(RecdockError):
    """Footage asked for without a valid approval, or a decision by someone without the role:
    the message says exactly what is missing, and the refusal is logged (docs/access.md)."""

    exit_code = EXIT_NOPERM
    permanent = True


class ExportError(RecdockError):
    """An export could not be made: nothing to export, or a destination that cannot take the
    copy. No bag is left looking valid (docs/export.md)."""


class ExportMismatchError(ExportError):
    """A store file read for an export does not match the catalog (or is missing): the
    export stops, naming the file; `recdock verify` tells the rest."""

    exit_code = EXIT_IOERR


class HoldError(RecdockError):
    """A hold cannot be placed or released: what it names does not exist, or it is released."""

    exit_code = EXIT_FAILED
    permanent = True
