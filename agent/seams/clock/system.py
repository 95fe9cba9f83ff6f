"""The real station clock: the system clock, synchronised when the kernel says so.

"Synchronised" is decided the way systemd-timedated (and so ``timedatectl``) decides it:
``adjtimex(2)`` with ``modes = 0`` (read only) and the kernel's maximum error below 16 s. The
``STA_UNSYNC`` status bit is reported but not trusted on its own: chrony without ``rtcsync``
leaves it set on a synchronised clock, and the kernel sets it when the maximum error reaches 16 s
(systemd pull request #13245). Where adjtimex is refused (``ProtectClock=yes`` in a systemd unit
makes even a read-only call fail with EPERM, systemd issue #26413) it asks ``timedatectl show -p
NTPSynchronized --value``; when neither answers, the clock counts as not synchronised.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import shutil
import subprocess
from datetime import UTC, datetime

log = logging.getLogger(__name__)

#: systemd's NTP_SYNCED threshold: the kernel caps maxerror at NTP_PHASE_LIMIT (16 s)
MAX_ERROR_US = 16_000_000
STA_UNSYNC = 0x0040
TIMEDATECTL_TIMEOUT_S = 5.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (Linux, glibc), as adjtimex(2) documents it."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


class AdjtimexUnavailable(OSError):
    """adjtimex(2) cannot be called here (not Linux, no libc symbol, or refused)."""


def read_adjtimex() -> tuple[int, int]:
    """(maxerror in microseconds, status bits) from a read-only adjtimex(2) call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError) as exc:
        raise AdjtimexUnavailable(errno.ENOSYS, f"adjtimex not available ({exc})") from exc
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int
    tx = _Timex()  # modes = 0: read only, needs no privilege
    if fn(ctypes.byref(tx)) < 0:
        err = ctypes.get_errno()
        raise AdjtimexUnavailable(err, f"adjtimex refused: {errno.errorcode.get(err, err)}")
    return int(tx.maxerror), int(tx.status)


class SystemClock:
    """The station's real clock (see the module docstring for how 'synchronised' is decided)."""

    def __init__(self) -> None:
        self._last = "not asked yet"

    def now(self) -> datetime:
        return datetime.now(UTC)

    def synchronised(self) -> bool:
        try:
            maxerror, status = read_adjtimex()
        except AdjtimexUnavailable as exc:
            log.info("station clock: %s; asking timedatectl", exc)
            return self._timedatectl(str(exc))
        synced = maxerror < MAX_ERROR_US
        unsync = "set" if status & STA_UNSYNC else "clear"
        self._last = (
            f"adjtimex: maximum error {maxerror / 1e6:.3f} s ({'<' if synced else '>='} 16 s), "
            f"STA_UNSYNC {unsync}: {'synchronised' if synced else 'not synchronised'}"
        )
        return synced

    def _timedatectl(self, why: str) -> bool:
        exe = shutil.which("timedatectl")
        if exe is None:
            self._last = f"{why}; timedatectl not found: treated as not synchronised"
            return False
        try:
            out = subprocess.run(
                [exe, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=TIMEDATECTL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._last = f"{why}; timedatectl failed ({exc}): treated as not synchronised"
            return False
        value = out.stdout.strip()
        if out.returncode != 0 or value not in ("yes", "no"):
            first = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[0]
            self._last = f"{why}; timedatectl: {first}: treated as not synchronised"
            return False
        self._last = f"timedatectl NTPSynchronized={value}"
        return value == "yes"

    def describe(self) -> str:
        return f"system clock ({self._last})"
