"""The dock seam, matching, mounting rules, sd_notify and one-transaction bay states.

udev is a hardware seam: UdevDock is tested with a fake pyudev Context and Monitor passed
in explicitly (the real ones need a kernel netlink socket and USB hardware). mount(8) of a
block device is the same kind of seam (this machine has no vfat module): the commands are
recorded by a runner passed in. FUSE mounts of real FAT32 images are real (fusefat).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.catalog import open_catalog
from agent.catalog.bays import set_bay_state
from agent.config import SHIPPED_PROFILES, Config
from agent.recorder.profiles import ProfileSet
from agent.seams import sdnotify
from agent.seams.dock import DockError, DockEvent, Matched, match_event
from agent.seams.dock.simulated import SimulatedDock, send_request
from agent.seams.dock.udev import UdevDock
from agent.seams.indicators.patterns import State
from agent.seams.mount import Mounter, MountError, NotMatchedError
from tests.conftest import needs_fusefat
from tests.fake_pyudev import PORT, FakeContext, FakeDevice, FakeMonitor, usb_disk
from tests.recorders import make_fat_recorder, make_folder_recorder


def config(**kw: Any) -> Config:
    return Config(bays={PORT: 3}, **kw)


def test_udev_dock_starts_the_monitor_before_enumerating_and_deduplicates():
    log: list[str] = []
    present = usb_disk("/devices/x/sda/sda1", "/dev/sda1")
    system_disk = FakeDevice(
        "/devices/mmc/mmcblk0p2",
        {"ID_FS_USAGE": "filesystem", "ID_BUS": "mmc"},
        {},
        "/dev/mmcblk0p2",
    )
    monitor = FakeMonitor(log)
    dock = UdevDock(config(), context=FakeContext([present, system_disk], log), monitor=monitor)
    dock.mounts_file = Path("/nonexistent")
    events: queue.Queue[DockEvent] = queue.Queue()
    dock.start(events.put)
    try:
        assert log[:3] == [
            "filter block",
            "monitor started",
            "list [('ID_FS_USAGE', 'filesystem'), ('subsystem', 'block')]",
        ]
        first = events.get(timeout=2)
        assert (first.kind, first.bay, first.vendor_id, first.product_id, first.serial) == (
            "add",
            3,
            "1209",
            "0001",
            "SIM0001",
        )
        assert first.key == "/devices/x/sda/sda1" and first.devnode == "/dev/sda1"
        # the same device again from the monitor (plugged during the enumeration): dropped
        monitor.events.put(usb_disk("/devices/x/sda/sda1", "/dev/sda1", action="add"))
        # a remove carries no attributes: the key recorded at add time says what left
        monitor.events.put(FakeDevice("/devices/x/sda/sda1", {}, {}, None, "remove"))
        gone = events.get(timeout=2)
        assert (gone.kind, gone.key, gone.bay, gone.serial) == (
            "remove",
            "/devices/x/sda/sda1",
            3,
            "SIM0001",
        )
        assert events.empty()
    finally:
        dock.stop()


def test_udev_dock_unmapped_port_is_reported_without_a_bay(caplog):
    dock = UdevDock(config(), context=FakeContext([], []), monitor=FakeMonitor([]))
    dock.mounts_file = Path("/nonexistent")
    event = dock.handle("add", usb_disk("/devices/y/sdb/sdb1", "/dev/sdb1", id_path="pci-9-usb-9"))
    assert event is not None and event.bay is None and event.id_path == "pci-9-usb-9"
    assert "not in [bays]" in caplog.text and "pci-9-usb-9" in caplog.text


def test_udev_dock_ignores_disks_mounted_elsewhere_and_non_usb(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n")
    dock = UdevDock(config(), context=FakeContext([], []), monitor=FakeMonitor([]))
    dock.mounts_file = mounts
    assert dock.handle("add", usb_disk("/devices/z/sda/sda1", "/dev/sda1")) is None
    no_fs = usb_disk("/devices/z/sdc", "/dev/sdc")
    no_fs.properties.pop("ID_FS_USAGE")
    assert dock.handle("add", no_fs) is None
    assert dock.handle("remove", FakeDevice("/devices/never/added")) is None


def test_match_by_usb_ids_and_by_the_register():
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    sim = DockEvent("add", "k", 1, "1209", "0001", None)
    assert match_event(sim, profiles, set()).profile.name == "simulated"
    stick = DockEvent("add", "k", 1, "0781", "5567", "4C53")
    assert match_event(stick, profiles, set()) is None
    registered = match_event(stick, profiles, {"4C53"})
    assert registered is not None and registered.registered
    assert registered.profile.name in ("generic-msc", "gat947")


# --- mounting: read-write only through a match (rule 5) -------------------------------------


class Recorder:
    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        rc = 1 if cmd[0] in self.fail else 0
        return subprocess.CompletedProcess(cmd, rc, "", "busy" if rc else "")


def SAME(_devnode: str, _devpath: str) -> bool:
    """The device-node check at the seam: these tests have no real block device."""
    return True


def block_event(fs: str = "vfat") -> DockEvent:
    return DockEvent("add", "/devices/x/sda/sda1", 2, "1209", "0001", "S1", "/dev/sda1", PORT, fs)


def test_block_device_mounts_read_only_then_read_write_with_a_match(tmp_path):
    run = Recorder()
    mounter = Mounter(tmp_path / "mnt", run=run, device_check=SAME)
    event = block_event()
    mount = mounter.mount_readonly(event)
    mnt = str(mount.path)  # a mount point of its own per docking, named after the bay
    assert mount.path.parent == tmp_path / "mnt" and mount.path.name.startswith("2-")
    assert run.calls[-1] == [
        "mount",
        "-t",
        "vfat",
        "-o",
        "ro,nosuid,nodev,noexec",
        "/dev/sda1",
        mnt,
    ]
    match = match_event(event, ProfileSet.load([SHIPPED_PROFILES]), set())
    assert match is not None
    mounter.mount_readwrite(mount, match)
    assert run.calls[-1] == ["mount", "-o", "remount,rw,nosuid,nodev,noexec", mnt]
    run.fail = {"umount"}
    mounter.unmount(mount)
    assert run.calls[-2:] == [["umount", mnt], ["umount", "-l", mnt]]  # lazy when busy


def test_read_write_is_refused_without_a_real_match(tmp_path):
    run = Recorder()
    mounter = Mounter(tmp_path / "mnt", run=run, device_check=SAME)
    event = block_event()
    mount = mounter.mount_readonly(event)
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    forged = Matched(event, profiles.get("simulated"), False)  # not made by match_event
    other = match_event(DockEvent("add", "/devices/other", 1, "1209", "0001"), profiles, set())
    for bad in (forged, other, None):
        with pytest.raises(NotMatchedError, match="rule 5"):
            mounter.mount_readwrite(mount, bad)  # type: ignore[arg-type]
        with pytest.raises(NotMatchedError):
            mounter.reconnect(mount, bad)  # type: ignore[arg-type]
    assert not any("rw" in " ".join(c) for c in run.calls)


def test_other_file_systems_are_refused(tmp_path):
    mounter = Mounter(tmp_path / "mnt", run=Recorder(), device_check=SAME)
    with pytest.raises(MountError, match="'ext4' refused"):
        mounter.mount_readonly(block_event("ext4"))


@needs_fusefat
def test_fat_image_mounts_read_only_and_read_write_only_when_matched(tmp_path):
    image = make_fat_recorder(tmp_path / "r.img", "SIMM001", files=1, size=4096)
    event = DockEvent("add", "sim:1", 1, "1209", "0001", None, None, "sim-bay-1", "vfat", image)
    mounter = Mounter(tmp_path / "mnt")
    mount = mounter.mount_readonly(event)
    try:
        assert (mount.path / "DEVICE.JSN").is_file()
        with pytest.raises(OSError):
            (mount.path / "X.TXT").write_text("no")  # read-only
        match = match_event(event, ProfileSet.load([SHIPPED_PROFILES]), set())
        mount = mounter.mount_readwrite(mount, match)  # type: ignore[arg-type]
        (mount.path / "TIME.TXT").write_text("2026-01-01 00:00:00")
        options = next(
            line
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if str(mount.path) in line
        ).split()[3]
        assert {"rw", "nosuid", "nodev", "noexec"} <= set(options.split(","))
    finally:
        mounter.unmount(mount)
    assert not os.path.ismount(mount.path)


def test_folder_is_used_in_place(tmp_path):
    folder = make_folder_recorder(tmp_path / "rec", files=1, size=10)
    event = DockEvent("add", "sim:1", 1, "1209", "0001", None, None, None, "folder", folder)
    mount = Mounter(tmp_path / "mnt", run=Recorder(), device_check=SAME).mount_readonly(event)
    assert mount.path == folder and "not mounted" in mount.describe()


# --- the simulated dock ---------------------------------------------------------------------------


def test_simulated_dock_plug_unplug_over_its_socket(tmp_path):
    home = tmp_path / ("deep-" * 12) / "home"  # longer than a sun_path: still works
    image = make_folder_recorder(tmp_path / "rec", files=1, size=10)
    dock = SimulatedDock(home, {1, 2})
    events: list[DockEvent] = []
    dock.start(events.append)
    try:
        send_request(home, {"op": "plug", "bay": 2, "source": str(image)})
        with pytest.raises(DockError, match="already holds"):
            send_request(home, {"op": "plug", "bay": 2, "source": str(image)})
        with pytest.raises(DockError, match="no bay 7"):
            send_request(home, {"op": "plug", "bay": 7, "source": str(image)})
        with pytest.raises(DockError, match="VID:PID"):
            send_request(home, {"op": "plug", "bay": 1, "source": str(image), "usb_id": "x"})
        send_request(home, {"op": "unplug", "bay": 2})
        with pytest.raises(DockError, match="empty"):
            send_request(home, {"op": "unplug", "bay": 2})
    finally:
        dock.stop()
    assert [(e.kind, e.key, e.bay, e.fs_type, e.vendor_id) for e in events] == [
        ("add", "sim:2", 2, "folder", "1209"),
        ("remove", "sim:2", 2, "folder", "1209"),
    ]
    with pytest.raises(DockError, match="no simulated station is running"):
        send_request(home, {"op": "unplug", "bay": 2})


# --- sd_notify ---------------------------------------------------------------------------


def test_sd_notify_sends_datagrams_to_notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sdnotify.ready("listening")
        assert sock.recv(4096) == b"READY=1\nSTATUS=listening"
        assert sdnotify.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sdnotify.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None  # meant for another process
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.ready() is False  # not under systemd: a no-op


def test_sd_notify_never_hangs_on_a_reader_that_does_not_keep_up(tmp_path, monkeypatch):
    """A notify socket nobody reads fills up (net.unix.max_dgram_qlen): a send gives up
    after SEND_TIMEOUT_S instead of blocking the daemon, its stop included."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setattr(sdnotify, "SEND_TIMEOUT_S", 0.2)
    try:
        limit = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
        sent = [sdnotify.watchdog() for _ in range(limit + 5)]
        assert sent[:limit] == [True] * limit and sent[-1] is False  # dropped, not stuck
        assert sock.recv(4096) == b"WATCHDOG=1"  # the queue moves again once read
        assert sdnotify.stopping()
    finally:
        sock.close()


# --- one bay state change, one transaction (rule 3) ---------------------------------


def test_bay_state_row_audit_and_retained_topic_commit_together(tmp_path):
    catalog = open_catalog(tmp_path / "home", "st-1")
    set_bay_state(catalog, 2, State.NOT_READY, device_serial="S1", reason="battery 20 % < 80 %")
    row = catalog.query("SELECT * FROM bays WHERE bay = 2")[0]
    assert (row["state"], row["reason"]) == ("not_ready", "battery 20 % < 80 %")
    audit = catalog.query("SELECT * FROM audit WHERE kind = 'bay.state'")
    assert json.loads(audit[-1]["data"])["state"] == "not_ready"
    retained = catalog.query("SELECT * FROM outbox WHERE topic = 'recdock/st-1/bay/2'")
    assert len(retained) == 1 and retained[0]["retain"] == 1
    assert json.loads(retained[0]["payload"])["audit_seq"] == audit[-1]["seq"]

    # a failure inside the transaction leaves none of the three behind
    class Boom(Exception):
        pass

    calls = {"n": 0}

    def failing(*args: Any) -> Any:
        calls["n"] += 1
        raise Boom

    with pytest.MonkeyPatch.context() as m:
        m.setattr("agent.catalog.audit.append", failing)
        with pytest.raises(Boom):
            set_bay_state(catalog, 2, State.READY, device_serial="S1")
    assert calls["n"] == 1
    assert catalog.query("SELECT state FROM bays WHERE bay = 2")[0]["state"] == "not_ready"
    assert len(catalog.query("SELECT * FROM outbox WHERE topic = 'recdock/st-1/bay/2'")) == 1


def test_a_registered_device_is_read_with_the_profile_its_entry_names() -> None:
    """[[devices]] serial -> profile: not the first any_usb profile in file order."""
    from agent.config import SHIPPED_PROFILES
    from agent.recorder.profiles import ProfileSet
    from agent.seams.dock import DockEvent, match_event

    profiles = ProfileSet.load([SHIPPED_PROFILES])
    event = DockEvent("add", "/devices/x/sdb1", 1, "0781", "5567", "SER123", "/dev/sdb1")
    match = match_event(event, profiles, {"SER123": "generic-msc"})
    assert match is not None and match.profile.name == "generic-msc"
    match = match_event(event, profiles, {"SER123": "gat947"})
    assert match is not None and match.profile.name == "gat947"
    unregistered = DockEvent("add", "/devices/x/sdc1", 2, "0781", "5567", "OTHER", "/dev/sdc1")
    assert match_event(unregistered, profiles, {"SER123": "generic-msc"}) is None


def test_a_device_node_now_naming_other_storage_is_not_mounted(tmp_path):
    """A recorder pulled and a stick given its /dev name: the DEVPATH check refuses it."""
    import os

    from agent.seams.mount import MountError, same_device

    vda = next((d for d in ("/dev/vda", "/dev/sda", "/dev/nvme0n1") if os.path.exists(d)), None)
    if vda is None:
        pytest.skip("no block device on this machine to check the sysfs path of")
    st = os.stat(vda)
    real = os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    devpath = real.removeprefix("/sys")
    assert same_device(vda, devpath)
    assert not same_device(vda, devpath + "-other")
    assert not same_device(str(tmp_path / "missing"), devpath)
    run = Recorder()
    mounter = Mounter(tmp_path / "mnt", run=run)  # the real check
    event = DockEvent("add", devpath + "-other", 2, "0781", "5567", "S1", vda, PORT, "vfat")
    with pytest.raises(MountError, match="no longer the device"):
        mounter.mount_readonly(event)
    assert not any(c and c[0] == "mount" for c in run.calls)
