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
  chose it (rule 7).

The dock only reports; matching (:func:`match_event`) decides what a device is,
and only a :class:`Matched` device may ever be mounted read-write (agent/seams/mount/).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from agent.errors import EXIT_UNAVAILABLE, RecdockError
from agent.recorder.profiles import Profile, ProfileSet

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

    Only :func:`match_event` makes one; mounting read-write requires one (rule 5).
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
