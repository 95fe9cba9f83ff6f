"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``.

The protocol is a few ``KEY=value`` lines sent as one datagram to the Unix socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). With no
``$NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``) every call is a
no-op that returns False. ``$WATCHDOG_USEC`` (with ``$WATCHDOG_PID``, when set,
naming this process) says how often systemd expects ``WATCHDOG=1``.

A send never blocks the caller for long: a datagram socket whose reader does not keep up
(its queue holds ``net.unix.max_dgram_qlen`` messages, 10 by default) would otherwise hang the
daemon, its stop included. After :data:`SEND_TIMEOUT_S` the message is dropped and logged.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``, ``"STATUS=..."``) to systemd; False if not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
    except TimeoutError:
        log.warning(
            "sd_notify to %s: not read within %.0f s; %s dropped",
            os.environ.get("NOTIFY_SOCKET"),
            SEND_TIMEOUT_S,
            lines[0],
        )
        return False
    except OSError:
        log.exception("sd_notify to %s failed", os.environ.get("NOTIFY_SOCKET"))
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def stopping(text: str = "") -> bool:
    return notify("STOPPING=1", *([f"STATUS={text}"] if text else []))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.error("WATCHDOG_USEC=%r is not a number: watchdog pings disabled", usec)
        return None
    return value / 1e6 / 2 if value > 0 else None
