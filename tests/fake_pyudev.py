"""Fake pyudev objects: the udev seam, for tests.

:class:`~agent.seams.dock.udev.UdevDock` takes ``context=``/``monitor=``; the real ones need a
kernel netlink socket and USB hardware. These stand in for ``pyudev.Context``,
``pyudev.Monitor`` and ``pyudev.Device`` with just what UdevDock uses of them.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

PORT = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-scsi-0:0:0:0"


@dataclass
class FakeDevice:
    device_path: str
    properties: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, bytes] = field(default_factory=dict)
    device_node: str | None = None
    action: str | None = None
    parent: FakeDevice | None = None

    def find_parent(self, subsystem: str, device_type: str | None = None) -> FakeDevice | None:
        return self.parent


class FakeContext:
    def __init__(self, devices: list[FakeDevice], log: list[str]) -> None:
        self.devices = devices
        self.log = log

    def list_devices(self, **match: str) -> list[FakeDevice]:
        self.log.append(f"list {sorted(match.items())}")
        return [
            d
            for d in self.devices
            if all(d.properties.get(k) == v for k, v in match.items() if k != "subsystem")
        ]


class FakeMonitor:
    """Events put on :attr:`events` are what ``poll`` returns; :attr:`pollers` are the threads
    that ever polled (a stopped dock has none left alive)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.events: queue.Queue[FakeDevice] = queue.Queue()
        self.pollers: set[threading.Thread] = set()

    def filter_by(self, subsystem: str) -> None:
        self.log.append(f"filter {subsystem}")

    def start(self) -> None:
        self.log.append("monitor started")

    def poll(self, timeout: float) -> FakeDevice | None:
        self.pollers.add(threading.current_thread())
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


def usb_disk(
    devpath: str,
    devnode: str,
    *,
    vid: str = "1209",
    pid: str = "0001",
    serial: str | None = "SIM0001",
    id_path: str = PORT,
    fs: str = "vfat",
    action: str | None = None,
) -> FakeDevice:
    """A USB storage partition with a file system, as udev describes one."""
    usb = {"ID_VENDOR_ID": vid, "ID_MODEL_ID": pid}
    if serial is not None:
        usb["ID_SERIAL_SHORT"] = serial
    parent = FakeDevice("/devices/usb1/1-1", usb)
    props = {"ID_FS_USAGE": "filesystem", "ID_BUS": "usb", "ID_FS_TYPE": fs, "ID_PATH": id_path}
    return FakeDevice(devpath, props, {}, devnode, action, parent)
