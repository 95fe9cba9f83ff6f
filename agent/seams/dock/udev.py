"""The real dock: USB storage as udev reports it, through pyudev.

The monitor is started *before* the devices already present are enumerated, so nothing plugged
in between is missed; the overlap is de-duplicated by DEVPATH. A ``remove`` event carries no
attributes any more, so every device is keyed by the DEVPATH recorded when it was added. Only USB
storage with a file system (``ID_FS_USAGE=filesystem``) is reported; the USB ids and serial come
from the parent ``usb_device``, the bay from the port path (``ID_PATH``) through ``[bays]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.seams.dock import DockError, DockEvent

log = logging.getLogger(__name__)


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


def _usb_ids(device: Any) -> tuple[str | None, str | None, str | None]:
    """Vendor id, product id and serial, from the parent ``usb_device`` where there is one."""
    usb = device.find_parent("usb", "usb_device")
    vendor = product = serial = None
    if usb is not None:
        vendor = _prop(usb, "ID_VENDOR_ID") or _attr(usb, "idVendor")
        product = _prop(usb, "ID_MODEL_ID") or _attr(usb, "idProduct")
        serial = _prop(usb, "ID_SERIAL_SHORT") or _attr(usb, "serial")
    vendor = vendor or _prop(device, "ID_VENDOR_ID")
    product = product or _prop(device, "ID_MODEL_ID")
    serial = serial or _prop(device, "ID_SERIAL_SHORT")
    return vendor, product, serial


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
            return replace(added, kind="remove")
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
        vendor, product, serial = _usb_ids(device)
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


def storage_ports(
    sys_dir: Path = Path("/sys"), udev_data: Path = Path("/run/udev/data")
) -> list[tuple[str, str]]:
    """(USB port path ``ID_PATH``, device node) of each USB disk with a file system that udev
    knows now, as the dock would see it (for `recdock doctor`).

    Raises :class:`DockError` when udev cannot be asked: no sysfs, or no udev database.
    """
    if not (sys_dir / "bus" / "usb").is_dir():
        raise DockError(f"no {sys_dir / 'bus' / 'usb'}: the kernel shows no USB bus here")
    if not udev_data.is_dir():
        raise DockError(f"no {udev_data}: udev (systemd-udevd) is not running")
    import pyudev

    found = []
    context = pyudev.Context()
    for device in context.list_devices(subsystem="block", ID_FS_USAGE="filesystem"):
        if _prop(device, "ID_BUS") != "usb":
            continue
        found.append((_prop(device, "ID_PATH") or "?", device.device_node or device.device_path))
    return sorted(found)
