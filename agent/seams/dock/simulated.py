"""The simulated dock: virtual bays fed by ``recdock simulate plug/unplug`` over a Unix socket.

The fake of the dock seam. It runs only when ``recdock run --simulate`` chose it (rule 7,
docs/architecture.md); tests/test_dock_contract.py runs one suite against it and the udev dock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.seams.dock import _USB_ID, SIMULATED_USB_ID, DockError, DockEvent, StationNotRunningError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits sun_path (108 bytes) even under a deep home folder."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def socket_path(home: Path) -> Path:
    return home / "run" / "dock.sock"


def parse_usb_id(text: str) -> tuple[str, str]:
    m = _USB_ID.match(text.strip())
    if not m:
        raise DockError(f"--usb-id {text!r}: expected VID:PID in hexadecimal, like 0781:5567")
    return m.group(1).lower(), m.group(2).lower()


def image_fs_type(path: Path) -> str | None:
    """'vfat' when the image starts with a FAT boot sector, else None."""
    try:
        with path.open("rb") as fh:
            boot = fh.read(512)
    except OSError:
        return None
    if len(boot) == 512 and boot[510:512] == b"\x55\xaa":
        if boot[82:87] == b"FAT32" or boot[54:59] in (b"FAT12", b"FAT16"):
            return "vfat"
    return None


class SimulatedDock:
    """Virtual bays fed over ``<home>/run/dock.sock`` by ``recdock simulate plug/unplug``.

    Requests are JSON lines: ``{"op": "plug", "bay": 2, "source": "/abs/rec.img",
    "usb_id": "1209:0001", "serial": null}`` and ``{"op": "unplug", "bay": 2}``; the
    answer is one JSON line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
    """

    def __init__(self, home: Path, bays: set[int]) -> None:
        self.path = socket_path(home)
        self.bays = bays
        self._plugged: dict[int, DockEvent] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        return f"dock: SIMULATED (chosen with --simulate): plug/unplug through {self.path}"

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        # bound and listening under a temporary name, then renamed: a client that sees
        # dock.sock can connect (bind alone makes the file; connect is refused until listen)
        ready = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with unix_address(ready) as address:
            sock.bind(address)
        os.chmod(ready, 0o600)
        sock.listen(8)
        os.rename(ready, self.path)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, args=(emit,), name="simulated-dock", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self, emit: Callable[[DockEvent], None]) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("simulated dock: accept failed")
                continue
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.makefile("rb").readline(64 * 1024)
                    req = json.loads(line or b"{}")
                    if not isinstance(req, dict):
                        raise DockError("a request is a JSON object")
                    answer = self.request(req, emit)
                except (ValueError, OSError, DockError) as exc:
                    answer = {"ok": False, "error": str(exc)}
                except Exception as exc:  # never let one request end the dock
                    log.exception("simulated dock: request failed")
                    answer = {"ok": False, "error": f"internal error: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    def request(self, req: dict[str, Any], emit: Callable[[DockEvent], None]) -> dict[str, Any]:
        op, bay = req.get("op"), req.get("bay")
        if not isinstance(bay, int) or isinstance(bay, bool):
            raise DockError("a bay number is needed")
        if bay not in self.bays:
            known = ", ".join(str(b) for b in sorted(self.bays)) or "none"
            raise DockError(f"no bay {bay} at this station (bays: {known}; see [indicators.bays])")
        key = f"sim:{bay}"
        if op == "plug":
            source = Path(str(req.get("source") or ""))
            if not source.is_absolute() or not source.exists():
                raise DockError(f"{source}: no such folder or image (give an absolute path)")
            vid, pid = parse_usb_id(str(req.get("usb_id") or ":".join(SIMULATED_USB_ID)))
            fs = "folder" if source.is_dir() else image_fs_type(source)
            serial = req.get("serial") or None
            event = DockEvent("add", key, bay, vid, pid, serial, None, f"sim-bay-{bay}", fs, source)
            with self._lock:
                if bay in self._plugged:
                    raise DockError(
                        f"bay {bay} already holds {self._plugged[bay].source}: unplug it first"
                    )
                self._plugged[bay] = event
            emit(event)
            return {"ok": True, "message": f"plugged {source} into bay {bay}"}
        if op == "unplug":
            with self._lock:
                added = self._plugged.pop(bay, None)
            if added is None:
                raise DockError(f"bay {bay} is empty")
            emit(
                DockEvent(
                    "remove",
                    key,
                    bay,
                    added.vendor_id,
                    added.product_id,
                    added.serial,
                    None,
                    added.id_path,
                    added.fs_type,
                    added.source,
                )
            )
            return {"ok": True, "message": f"unplugged bay {bay}"}
        raise DockError(f"unknown operation {op!r} (plug or unplug)")


def send_request(home: Path, request: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one request to a running simulated station; raises DockError with what to do."""
    path = socket_path(home)
    if not path.exists():
        raise StationNotRunningError(
            f"no simulated station is running with home {home} (no {path}): start "
            f"`recdock --home {home} run --simulate` first"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            with unix_address(path) as address:
                sock.connect(address)
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = sock.makefile("rb").readline(64 * 1024)
        except OSError as exc:
            raise StationNotRunningError(
                f"no simulated station answers at {path} ({exc.strerror or exc}); "
                f"is `recdock --home {home} run --simulate` running?"
            ) from exc
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise DockError(f"{path}: unreadable answer from the station") from exc
    if not answer.get("ok"):
        raise DockError(str(answer.get("error") or "refused"))
    return answer
