"""The dock: where recorders arrive and leave, behind one small seam.

Two implementations produce the same :class:`DockEvent` stream:

* :class:`UdevDock` listens to udev through pyudev. The monitor is started
  *before* the devices already present are enumerated, so nothing plugged in
  between is missed; the overlap is de-duplicated by DEVPATH. A ``remove`` event
  carries no attributes any more, so every device is keyed by the DEVPATH recorded
  when it was added. Only USB storage with a file system (``ID_FS_USAGE=filesystem``)
  is reported; the USB ids and serial come from the parent ``usb_device``, the bay
  from the port path (``ID_PATH``) through the config's ``[bays]`` table.
* :class:`SimulatedDock` is fed by ``recdock simulate plug/unplug`` over a Unix
  socket (``<home>/run/dock.sock``). It runs only when ``recdock run --simulate``
  chose it (invariant 7).

The dock only reports; matching (:func:`match_event`) decides what a device is,
and only a :class:`Matched` device may ever be mounted read-write (agent/mount.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.config import Config
from agent.errors import EXIT_UNAVAILABLE, RecdockError
from agent.profiles import Profile, ProfileSet

log = logging.getLogger(__name__)

SIMULATED_USB_ID = ("1209", "0001")  # pid.codes test ids, the `simulated` profile's
SUPPORTED_FS = ("vfat", "exfat")
_USB_ID = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")


class DockError(RecdockError):
    """The dock could not be started, or a simulated plug/unplug was refused."""


class StationNotRunningError(DockError):
    """No simulated station listens at ``<home>/run/dock.sock``."""

    exit_code = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class DockEvent:
    """A recorder (or any USB storage) arrived at, or left, a bay."""

    kind: Literal["add", "remove"]
    key: str  # udev DEVPATH, or "sim:<bay>"
    bay: int | None  # None: the USB port is not in the config's [bays]
    vendor_id: str | None = None
    product_id: str | None = None
    serial: str | None = None  # USB serial (ID_SERIAL_SHORT)
    devnode: str | None = None  # /dev/sdX1 (udev only)
    id_path: str | None = None  # udev ID_PATH of the port
    fs_type: str | None = None  # vfat, exfat, ...; "folder" for a simulated folder
    source: Path | None = None  # simulated: the folder or FAT image

    @property
    def simulated(self) -> bool:
        return self.key.startswith("sim:")

    def label(self) -> str:
        """How logs name the device: USB ids and serial, or the simulated source."""
        ids = f"{self.vendor_id or '?'}:{self.product_id or '?'}"
        serial = f" serial {self.serial}" if self.serial else ""
        where = self.devnode or (str(self.source) if self.source else self.key)
        return f"{ids}{serial} ({where})"


@dataclass(frozen=True)
class Matched:
    """A device a firmware profile (and, where asked, the device register) accepted.

    Only :func:`match_event` makes one; mounting read-write requires one (invariant 5).
    """

    event: DockEvent
    profile: Profile
    registered: bool
    _token: object = field(repr=False, compare=False, default=None)


_MATCH_TOKEN = object()


def is_matched(match: object, event: DockEvent) -> bool:
    """True only for a :class:`Matched` made by :func:`match_event` for this very device."""
    return (
        isinstance(match, Matched)
        and match._token is _MATCH_TOKEN
        and isinstance(match.profile, Profile)
        and match.event.key == event.key
    )


def match_event(
    event: DockEvent, profiles: ProfileSet, registered: Mapping[str, str] | set[str]
) -> Matched | None:
    """The firmware profile for a docked device; None for storage nothing matches (a USB stick).

    A device whose USB serial is in the station's register (``[[devices]]``: serial ->
    profile name) is read with the profile its entry names; any other device is matched by
    its USB ids through the profiles, first match wins.
    """
    if event.kind != "add" or not event.vendor_id or not event.product_id:
        return None
    named = (
        registered.get(event.serial) if isinstance(registered, Mapping) and event.serial else None
    )
    if named:
        profile: Profile | None = profiles.get(named)
    else:
        profile = profiles.match_usb(
            event.vendor_id, event.product_id, event.serial, set(registered)
        )
    if profile is None:
        return None
    return Matched(event, profile, bool(event.serial and event.serial in registered), _MATCH_TOKEN)


class Dock(Protocol):
    def start(self, emit: Callable[[DockEvent], None]) -> None: ...
    def stop(self) -> None: ...
    def describe(self) -> str: ...


# --- udev ---------------------------------------------------------------------------------------


def _prop(device: Any, key: str) -> str | None:
    value = device.properties.get(key)
    return str(value) if value else None


def _attr(device: Any, key: str) -> str | None:
    try:
        value = device.attributes.get(key)
    except Exception:  # noqa: BLE001 - sysfs attributes of a leaving device can fail any way
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip() if value else None


class UdevDock:
    """USB storage as udev reports it (pyudev). ``context``/``monitor`` are the seam tests fake."""

    def __init__(self, config: Config, *, context: Any = None, monitor: Any = None) -> None:
        import pyudev

        self.config = config
        self.context = context if context is not None else pyudev.Context()
        self.monitor = monitor if monitor is not None else pyudev.Monitor.from_netlink(self.context)
        self.monitor.filter_by("block")
        self._known: dict[str, DockEvent] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.mounts_file = Path("/proc/self/mounts")

    def describe(self) -> str:
        return "dock: real (udev, pyudev netlink monitor on the block subsystem)"

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        try:
            self.monitor.start()  # first: a device plugged in during enumeration is not missed
        except OSError as exc:
            raise DockError(
                f"cannot listen to udev ({exc}); the station needs AF_NETLINK "
                "(see systemd/recdock.service), or run `recdock run --simulate`"
            ) from exc
        for device in self.context.list_devices(subsystem="block", ID_FS_USAGE="filesystem"):
            event = self.handle("add", device)
            if event:
                emit(event)
        self._thread = threading.Thread(target=self._loop, args=(emit,), name="udev", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self, emit: Callable[[DockEvent], None]) -> None:
        while not self._stop.is_set():
            try:
                device = self.monitor.poll(timeout=0.5)
            except Exception:
                log.exception("udev monitor failed; retrying")
                self._stop.wait(1)
                continue
            if device is None:
                continue
            try:
                event = self.handle(device.action or "", device)
            except Exception:
                log.exception("udev event for %s could not be handled", device.device_path)
                continue
            if event:
                emit(event)

    def handle(self, action: str, device: Any) -> DockEvent | None:
        """One udev event (or an enumerated device) to a DockEvent, or None to ignore it."""
        key = device.device_path
        if action == "remove":
            with self._lock:
                added = self._known.pop(key, None)
            if added is None:
                return None  # not a device we reported (a disk, a partition table...)
            return DockEvent(
                "remove",
                key,
                added.bay,
                added.vendor_id,
                added.product_id,
                added.serial,
                added.devnode,
                added.id_path,
                added.fs_type,
            )
        if action not in ("add", "change"):
            return None
        if _prop(device, "ID_FS_USAGE") != "filesystem" or _prop(device, "ID_BUS") != "usb":
            return None
        with self._lock:
            if key in self._known:
                return None  # seen in the enumeration and again from the monitor
        devnode = device.device_node
        if devnode and self._mounted_elsewhere(devnode):
            log.info("%s is mounted outside the station (a system disk?): left alone", devnode)
            return None
        usb = device.find_parent("usb", "usb_device")
        vendor = product = serial = None
        if usb is not None:
            vendor = _prop(usb, "ID_VENDOR_ID") or _attr(usb, "idVendor")
            product = _prop(usb, "ID_MODEL_ID") or _attr(usb, "idProduct")
            serial = _prop(usb, "ID_SERIAL_SHORT") or _attr(usb, "serial")
        vendor = vendor or _prop(device, "ID_VENDOR_ID")
        product = product or _prop(device, "ID_MODEL_ID")
        serial = serial or _prop(device, "ID_SERIAL_SHORT")
        id_path = _prop(device, "ID_PATH")
        bay = self.config.bays.get(id_path) if id_path else None
        if bay is None:
            log.error(
                "USB storage %s:%s at port %r (%s) is not in [bays] of the config: add "
                '"%s" = <bay number> so its bay LED lights; handled as an unknown bay',
                vendor,
                product,
                id_path,
                devnode,
                id_path,
            )
        event = DockEvent(
            "add",
            key,
            bay,
            vendor.lower() if vendor else None,
            product.lower() if product else None,
            serial,
            devnode,
            id_path,
            _prop(device, "ID_FS_TYPE"),
        )
        with self._lock:
            self._known[key] = event
        return event

    def _mounted_elsewhere(self, devnode: str) -> bool:
        try:
            text = self.mounts_file.read_text()
        except OSError:
            return False
        mount_dir = str(self.config.station.mount_dir)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == devnode and not parts[1].startswith(mount_dir):
                return True
        return False


# --- simulated ----------------------------------------------------------------------------------


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
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with unix_address(self.path) as address:
            sock.bind(address)
        os.chmod(self.path, 0o600)
        sock.listen(8)
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
