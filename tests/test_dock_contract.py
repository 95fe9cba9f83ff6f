"""The dock's contract: one suite, run against the udev dock and the simulated dock.

Every test here is written once against :class:`agent.seams.dock.Dock` (``start(emit)``,
``stop()``, ``describe()``) and the :class:`~agent.seams.dock.DockEvent` stream it emits, and
runs against

* ``real``: :class:`~agent.seams.dock.udev.UdevDock`, its pyudev ``Context``/``Monitor`` faked
  at its own seam (tests/fake_pyudev.py): this machine has no USB hardware and no netlink
  socket for udev. A device arrives as a udev ``add`` of a USB partition with a vfat file
  system at the port the config's ``[bays]`` maps to the bay;
* ``fake``: :class:`~agent.seams.dock.simulated.SimulatedDock`, fed through its Unix socket by
  :func:`~agent.seams.dock.simulated.send_request`, as ``recdock simulate plug|unplug`` feeds
  it, with a real FAT32 recorder image as the source.

The contract:

* A device arriving is one ``add``: its bay (from the port, or the bay asked for), its USB ids
  in lower-case hex, its USB serial (None when it has none), its file system type, and where
  its file system is found (a device node, or a simulated source: exactly one of them).
  ``event.simulated`` is true for the simulated dock's events only.
* A device leaving is one ``remove`` that repeats its ``add`` field by field, the same key
  above all; only the kind differs. A device never reported leaves without an event, and a
  device announced twice is reported once. Devices in different bays have different keys.
* A device present when the dock starts is reported exactly once, like any other. Only the
  udev dock can have one: it starts its monitor, then enumerates, so a device seen both ways
  is still one ``add``. The simulated dock cannot: nothing listens before ``start()``, so a
  plug is refused with :class:`~agent.seams.dock.StationNotRunningError` (never silently lost)
  and the dock starts empty.
* ``stop()`` ends emission: once it returns no event is emitted, whatever arrives (the udev
  dock has no thread left polling its monitor; the simulated dock's socket is gone, so a plug
  is refused). It may be called again, and before ``start()``.
* ``describe()`` is one line, ``dock: ...``, that says SIMULATED for the simulated dock and
  ``real`` for the udev dock (rule 7: a fake is never silent).

Events come from the dock's own thread, so tests wait for them with deadlines. To see that
something was *not* reported, a test docks a marker device afterwards and waits for it: both
docks emit in order from one thread, so anything reported before the marker is in by then.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from agent.config import Config
from agent.seams.dock import DockError, DockEvent, StationNotRunningError
from agent.seams.dock.simulated import SimulatedDock, send_request
from agent.seams.dock.udev import UdevDock
from tests.fake_pyudev import FakeContext, FakeDevice, FakeMonitor, usb_disk
from tests.recorders import make_fat_recorder, wait_for

BAYS = (1, 2, 3)
RECORDER = {"usb_id": "1209:0001", "serial": "SIM0001"}


class Events:
    """What the dock emitted, in order (emit may be called from the dock's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[DockEvent] = []

    def __call__(self, event: DockEvent) -> None:
        with self._lock:
            self._events.append(event)

    def all(self) -> list[DockEvent]:
        with self._lock:
            return list(self._events)

    def wait(self, n: int) -> list[DockEvent]:
        """The first ``n`` events, once they are in (deadline: 10 s)."""
        wait_for(lambda: len(self.all()) >= n, what=f"{n} dock event(s); got {self.all()}")
        return self.all()[:n]


class DockUnderTest(Protocol):
    kind: str
    dock: UdevDock | SimulatedDock
    events: Events

    def dock_before_start(self, bay: int) -> bool:
        """Put a recorder into ``bay`` before start(); False if this dock cannot have one."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def plug(self, bay: int, *, usb_id: str, serial: str | None) -> None:
        """A recorder arrives in ``bay``."""
        ...

    def plug_again(self, bay: int) -> None:
        """The recorder in ``bay`` is announced once more (udev: seen by the monitor too)."""
        ...

    def unplug(self, bay: int) -> None:
        """The recorder in ``bay`` leaves."""
        ...

    def unplug_unknown(self) -> None:
        """Something the dock never reported leaves."""
        ...

    def plug_into_stopped(self, bay: int) -> None:
        """A recorder arrives after stop(); returns once it can no longer be reported."""
        ...


# -- the real dock: UdevDock on fake pyudev -----------------------------------------------------


def port(bay: int) -> str:
    return f"platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.{bay}:1.0-scsi-0:0:0:0"


def devpath(bay: int) -> str:
    letter = "abcdefgh"[bay]
    return f"/devices/platform/usb1/1-1.{bay}/host{bay}/block/sd{letter}/sd{letter}1"


class RealDock:
    kind = "real"

    def __init__(self, tmp_path: Path) -> None:
        self.present: list[FakeDevice] = []
        self.monitor = FakeMonitor([])
        config = Config(bays={port(bay): bay for bay in BAYS})
        self.dock = UdevDock(config, context=FakeContext(self.present, []), monitor=self.monitor)
        mounts = tmp_path / "mounts"
        mounts.write_text("")  # none of the test's device nodes is mounted elsewhere
        self.dock.mounts_file = mounts
        self.events = Events()
        self._devices: dict[int, FakeDevice] = {}

    def _device(self, bay: int, usb_id: str, serial: str | None, action: str | None) -> FakeDevice:
        vid, pid = usb_id.split(":")
        device = usb_disk(
            devpath(bay),
            f"/dev/sd{'abcdefgh'[bay]}1",
            vid=vid,
            pid=pid,
            serial=serial,
            id_path=port(bay),
            fs="vfat",
            action=action,
        )
        self._devices[bay] = device
        return device

    def dock_before_start(self, bay: int) -> bool:
        self.present.append(self._device(bay, RECORDER["usb_id"], RECORDER["serial"], None))
        return True

    def start(self) -> None:
        self.dock.start(self.events)

    def stop(self) -> None:
        self.dock.stop()

    def plug(self, bay: int, *, usb_id: str, serial: str | None) -> None:
        self.monitor.events.put(self._device(bay, usb_id, serial, "add"))

    def plug_again(self, bay: int) -> None:
        self.monitor.events.put(dataclasses.replace(self._devices[bay], action="add"))

    def unplug(self, bay: int) -> None:
        # a remove carries no attributes any more: only its DEVPATH says what left
        self.monitor.events.put(FakeDevice(devpath(bay), action="remove"))

    def unplug_unknown(self) -> None:
        self.monitor.events.put(FakeDevice("/devices/platform/usb9/never/sdz1", action="remove"))

    def plug_into_stopped(self, bay: int) -> None:
        self.plug(bay, **RECORDER)
        # nothing is left that could take it from the monitor and report it
        assert not any(t.is_alive() for t in self.monitor.pollers), "a poller outlived stop()"
        assert self.monitor.events.qsize() == 1


# -- the fake dock: SimulatedDock over its socket --------------------------------------------


class FakeDock:
    kind = "fake"

    def __init__(self, tmp_path: Path, image: Path) -> None:
        self.home = tmp_path / "home"
        self.image = image
        self.dock = SimulatedDock(self.home, set(BAYS))
        self.events = Events()

    def _plug(self, bay: int, usb_id: str, serial: str | None) -> None:
        request = {"op": "plug", "bay": bay, "source": str(self.image), "usb_id": usb_id}
        send_request(self.home, {**request, "serial": serial})

    def dock_before_start(self, bay: int) -> bool:
        with pytest.raises(StationNotRunningError):
            self._plug(bay, **RECORDER)
        return False

    def start(self) -> None:
        self.dock.start(self.events)

    def stop(self) -> None:
        self.dock.stop()

    def plug(self, bay: int, *, usb_id: str, serial: str | None) -> None:
        self._plug(bay, usb_id, serial)

    def plug_again(self, bay: int) -> None:
        with pytest.raises(DockError, match="already holds"):
            self._plug(bay, **RECORDER)

    def unplug(self, bay: int) -> None:
        send_request(self.home, {"op": "unplug", "bay": bay})

    def unplug_unknown(self) -> None:
        with pytest.raises(DockError, match="empty"):
            send_request(self.home, {"op": "unplug", "bay": BAYS[-1]})

    def plug_into_stopped(self, bay: int) -> None:
        with pytest.raises(StationNotRunningError):
            self._plug(bay, **RECORDER)


@pytest.fixture(scope="module")
def fat_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recorder")
    return make_fat_recorder(folder / "recorder.img", "SIM0001", files=1, size=4096)


@pytest.fixture(params=["real", "fake"])
def station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DockUnderTest]:
    if request.param == "real":
        under_test: DockUnderTest = RealDock(tmp_path)
    else:
        under_test = FakeDock(tmp_path, request.getfixturevalue("fat_image"))
    try:
        yield under_test
    finally:
        under_test.stop()


@pytest.fixture
def started(station: DockUnderTest) -> DockUnderTest:
    station.start()
    return station


def fields(event: DockEvent) -> dict[str, object]:
    return dataclasses.asdict(event)


# -- arriving ----------------------------------------------------------------------------------


def test_a_device_arriving_is_one_add_with_its_bay_usb_ids_serial_and_file_system(
    started: DockUnderTest,
) -> None:
    started.plug(2, usb_id="ABCD:EF01", serial="REC42")
    [event] = started.events.wait(1)
    assert event.kind == "add" and event.key
    assert event.bay == 2
    assert (event.vendor_id, event.product_id) == ("abcd", "ef01"), "lower-case hex"
    assert event.serial == "REC42"
    assert event.fs_type == "vfat"
    assert event.simulated is (started.kind == "fake")


def test_an_add_says_where_the_file_system_is_a_device_node_or_a_simulated_source(
    started: DockUnderTest,
) -> None:
    started.plug(1, **RECORDER)
    [event] = started.events.wait(1)
    assert (event.devnode is None) != (event.source is None), fields(event)
    where = event.source if started.kind == "fake" else event.devnode
    assert where is not None and Path(where).is_absolute()


def test_a_device_without_a_usb_serial_is_reported_with_no_serial(started: DockUnderTest) -> None:
    started.plug(3, usb_id="1209:0001", serial=None)
    [event] = started.events.wait(1)
    assert event.kind == "add" and event.serial is None


# -- leaving ---------------------------------------------------------------------------------


def test_a_device_leaving_is_one_remove_repeating_its_add_with_the_same_key(
    started: DockUnderTest,
) -> None:
    started.plug(2, usb_id="abcd:ef01", serial="REC42")
    started.unplug(2)
    added, removed = started.events.wait(2)
    assert removed.kind == "remove" and removed.key == added.key
    assert removed == dataclasses.replace(added, kind="remove"), (fields(added), fields(removed))


def test_devices_in_different_bays_have_different_keys_and_leave_by_them(
    started: DockUnderTest,
) -> None:
    started.plug(1, **RECORDER)
    started.plug(2, **RECORDER)  # the same model and serial: only the bay tells them apart
    started.unplug(1)
    started.unplug(2)
    one, two, gone_one, gone_two = started.events.wait(4)
    assert [e.kind for e in (one, two, gone_one, gone_two)] == ["add", "add", "remove", "remove"]
    assert one.key != two.key
    assert (gone_one.key, gone_one.bay) == (one.key, 1)
    assert (gone_two.key, gone_two.bay) == (two.key, 2)


def test_a_device_leaving_that_was_never_reported_emits_nothing(started: DockUnderTest) -> None:
    started.unplug_unknown()
    started.plug(1, **RECORDER)  # the marker: reported after anything the unplug caused
    [event] = started.events.wait(1)
    assert (event.kind, event.bay) == ("add", 1)
    assert len(started.events.all()) == 1


def test_a_device_announced_twice_is_reported_once(started: DockUnderTest) -> None:
    started.plug(1, **RECORDER)
    started.events.wait(1)
    started.plug_again(1)
    started.plug(2, **RECORDER)  # the marker
    events = started.events.wait(2)
    assert [(e.kind, e.bay) for e in events] == [("add", 1), ("add", 2)]
    assert len(started.events.all()) == 2


# -- starting with a device already docked -------------------------------------------------------


@pytest.mark.parametrize("also_announced", [False, True], ids=["enumerated", "also-monitored"])
def test_a_device_present_when_the_dock_starts_is_reported_exactly_once(
    station: DockUnderTest, also_announced: bool
) -> None:
    docked = station.dock_before_start(1)
    station.start()
    if not docked:
        station.plug(1, **RECORDER)  # the simulated dock starts empty: only now can it arrive
    elif also_announced:
        station.plug_again(1)  # the monitor saw it arrive while the dock enumerated
    station.plug(2, **RECORDER)  # the marker
    first, marker = station.events.wait(2)
    assert (first.kind, first.bay, first.serial) == ("add", 1, RECORDER["serial"])
    assert (marker.kind, marker.bay) == ("add", 2)
    assert len(station.events.all()) == 2
    station.unplug(1)
    [*_, removed] = station.events.wait(3)
    assert (removed.kind, removed.key) == ("remove", first.key)


# -- stopping --------------------------------------------------------------------------------


def test_once_stop_returns_nothing_more_is_emitted(started: DockUnderTest) -> None:
    started.plug(1, **RECORDER)
    before = started.events.wait(1)
    started.stop()
    started.plug_into_stopped(2)
    assert started.events.all() == before


def test_stop_may_be_called_again(started: DockUnderTest) -> None:
    started.stop()
    started.stop()
    started.plug_into_stopped(1)
    assert started.events.all() == []


def test_stop_before_start_is_harmless(station: DockUnderTest) -> None:
    station.stop()
    station.stop()
    assert station.events.all() == []


# -- saying what it is (rule 7) -----------------------------------------------------------------


def test_describe_is_one_line_saying_whether_the_dock_is_real_or_simulated(
    station: DockUnderTest,
) -> None:
    lines = [station.dock.describe()]
    station.start()
    lines.append(station.dock.describe())
    for line in lines:
        assert line.startswith("dock: ") and "\n" not in line, repr(line)
        if station.kind == "fake":
            assert "SIMULATED" in line, f"a simulated dock must say so: {line!r}"
        else:
            assert "real" in line and "simulated" not in line.lower(), line
