"""Firmware profiles: how one recorder model presents itself, as data.

A profile is a TOML file in a profiles folder (``firmware_profiles/`` ships the
reference ones). Profiles are read in order and the first one that matches a
recorder wins, like udiskie's rules. A new model is a new file, not new code;
docs/firmware-profiles.md explains every key.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.config.toml import load_model, read_toml
from agent.errors import ProfileError

HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsbId(Strict):
    vendor_id: str = Field(description="USB idVendor, 4 hex digits")
    product_id: str = Field(description="USB idProduct, 4 hex digits")

    @field_validator("vendor_id", "product_id")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not HEX4.match(v):
            raise ValueError("4 hexadecimal digits, like '1d6b'")
        return v.lower()


class Match(Strict):
    usb: list[UsbId] = Field(default_factory=list, description="USB ids of this model")
    marker_file: str | None = Field(
        default=None,
        description="A file at the storage root whose presence identifies the model "
        "(used for the simulated dock and for `recdock offload` without --profile).",
    )
    simulation_only: bool = Field(
        default=False,
        description="Only the simulated dock (`recdock run --simulate`) matches this profile: "
        "on a real dock it never matches, whatever USB ids a device presents (rule 7).",
    )
    any_usb: bool = Field(
        default=False,
        description="Match any USB mass-storage device (use with registered_only = true).",
    )
    registered_only: bool = Field(
        default=False,
        description="Match only devices whose USB serial is registered in the station config.",
    )

    @model_validator(mode="after")
    def _any_needs_register(self) -> Match:
        if self.any_usb and not self.registered_only:
            raise ValueError("any_usb = true needs registered_only = true (rule 5)")
        return self


class Identity(Strict):
    source: Literal["status_file", "usb_serial", "file_name"] = Field(
        description="Where the device serial comes from."
    )


class Status(Strict):
    file: str | None = Field(default=None, description="Status file at the storage root")
    format: Literal["json", "keyvalue"] = Field(default="json")
    serial: str | None = None
    officer: str | None = None
    unit: str | None = None
    model: str | None = None
    firmware: str | None = None
    battery: str | None = Field(default=None, description="Key of the battery level, percent")
    charging: str | None = Field(default=None, description="Key of the charging flag")
    charge_minutes_to_full: str | None = Field(
        default=None, description="Key of the device's own estimate of minutes to full charge"
    )
    clock: str | None = Field(
        default=None,
        description="Key of the device clock as written by the device when it was docked",
    )
    clock_format: str = Field(
        default="iso8601", description="'iso8601' or a strptime pattern for the clock value"
    )


class Media(Strict):
    globs: list[str] = Field(
        min_length=1,
        description="Glob patterns (relative to the storage root, case-insensitive, ** allowed) "
        "of the media files",
    )
    bitrate_mbps: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=8.0, description="Recording bitrate, for the free-space-for-a-shift check"
    )
    important_globs: list[str] = Field(
        default_factory=list,
        description="Glob patterns (relative to the storage root, case-insensitive, ** allowed) "
        "of the files the recorder itself marks important (a name prefix or suffix, or a "
        "folder); each such file is held at offload (reason 'marked_on_recorder')",
    )
    max_depth: Annotated[int, Field(ge=1, le=64)] = Field(
        default=16,
        description="Deepest folder nesting whose media are copied; a recording deeper is "
        "listed, left on the recorder and reported (the recorder is not ready, a fault opens)",
    )


class Clock(Strict):
    set_method: Literal["time_file", "none"] = Field(
        default="none", description="How the station sets the device clock"
    )
    time_file: str | None = Field(default=None, description="File the device reads its time from")
    time_format: str = Field(default="%Y-%m-%d %H:%M:%S")
    timezone: str = Field(
        default="+08:00", description="UTC offset the device clock and file names are in"
    )

    @model_validator(mode="after")
    def _file_needed(self) -> Clock:
        if self.set_method == "time_file" and not self.time_file:
            raise ValueError("set_method = 'time_file' needs time_file")
        return self


class Recording(Strict):
    name_pattern: str | None = Field(
        default=None,
        description="Regular expression matched against the file name; named groups: start "
        "(required), and optionally device, officer, seq",
    )
    start_format: str = Field(default="%Y%m%d%H%M%S", description="strptime pattern of 'start'")

    @field_validator("name_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if "start" not in rx.groupindex:
            raise ValueError("needs a named group 'start', like (?P<start>\\d{14})")
        return v


class Battery(Strict):
    charge_pct_per_minute: Annotated[float, Field(gt=0, le=100)] | None = Field(
        default=None, description="Typical charging speed, for 'ready in about N minutes'"
    )


class Storage(Strict):
    capacity_bytes: Annotated[int, Field(gt=0, le=2**50)] | None = Field(
        default=None,
        description="The storage the model ships with, in bytes, as its label states it (a "
        "'64 GB' card: 64000000000). A recorder whose file system is smaller (less "
        "[faults] capacity_tolerance_percent) opens a 'storage.capacity' fault: a counterfeit "
        "or failing card. Leave it out when the model is sold with cards of several sizes.",
    )


class Profile(Strict):
    name: str = Field(description="Profile name, as in --profile and the catalog")
    description: str = Field(default="")
    based_on: str = Field(default="", description="What the layout is based on")
    match: Match = Field(default_factory=Match)
    identity: Identity
    status: Status = Field(default_factory=Status)
    media: Media
    clock: Clock = Field(default_factory=Clock)
    recording: Recording = Field(default_factory=Recording)
    battery: Battery = Field(default_factory=Battery)
    storage: Storage = Field(default_factory=Storage)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("lower-case letters, digits, '.', '_', '-'")
        return v

    @model_validator(mode="after")
    def _cross(self) -> Profile:
        if self.identity.source == "status_file" and not (self.status.file and self.status.serial):
            raise ValueError("identity.source = 'status_file' needs status.file and status.serial")
        if self.identity.source == "file_name":
            rx = self.recording.name_pattern
            if not rx or "device" not in re.compile(rx).groupindex:
                raise ValueError(
                    "identity.source = 'file_name' needs recording.name_pattern "
                    "with a named group 'device'"
                )
        return self

    # -- helpers --------------------------------------------------------------------

    def tz(self) -> timezone:
        return parse_utc_offset(self.clock.timezone)

    def start_from_name(self, name: str) -> datetime | None:
        """The recording's start time from its file name, or None."""
        if not self.recording.name_pattern:
            return None
        m = re.search(self.recording.name_pattern, name)
        if not m:
            return None
        try:
            naive = datetime.strptime(m.group("start"), self.recording.start_format)
        except ValueError:
            return None
        return naive.replace(tzinfo=self.tz())

    def name_fields(self, name: str) -> dict[str, str]:
        if not self.recording.name_pattern:
            return {}
        m = re.search(self.recording.name_pattern, name)
        return {k: v for k, v in (m.groupdict() if m else {}).items() if v is not None}


def parse_utc_offset(text: str) -> timezone:
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if not m:
        raise ProfileError(f"timezone {text!r}: expected an offset like '+08:00'")
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return timezone(-delta if m.group(1) == "-" else delta)


def load_profile(path: Path) -> Profile:
    data = read_toml(path, ProfileError)
    profile = load_model(Profile, data, path, ProfileError)
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: {profile.name!r} must equal the file name {path.stem!r}")
    return profile


class ProfileSet:
    """The ordered list of profiles a station knows; first match wins."""

    def __init__(self, profiles: list[Profile]):
        self.profiles = profiles

    @classmethod
    def load(cls, dirs: list[Path]) -> ProfileSet:
        profiles: list[Profile] = []
        seen: dict[str, Path] = {}
        for d in dirs:
            if not d.is_dir():
                raise ProfileError(f"{d}: firmware profile folder not found (profiles.dirs)")
            for path in sorted(d.glob("*.toml")):
                profile = load_profile(path)
                if profile.name in seen:
                    raise ProfileError(
                        f"{path}: profile {profile.name!r} is also defined in {seen[profile.name]}"
                    )
                seen[profile.name] = path
                profiles.append(profile)
        return cls(profiles)

    def for_real_dock(self) -> ProfileSet:
        """The profiles a real (udev) dock may match: none that is for simulation only."""
        return ProfileSet([p for p in self.profiles if not p.match.simulation_only])

    def get(self, name: str) -> Profile:
        for p in self.profiles:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.profiles) or "none"
        raise ProfileError(f"no firmware profile named {name!r} (known: {known})")

    def match_usb(
        self, vendor_id: str, product_id: str, serial: str | None, registered: set[str]
    ) -> Profile | None:
        vid, pid = vendor_id.lower(), product_id.lower()
        for p in self.profiles:
            ids_match = any(u.vendor_id == vid and u.product_id == pid for u in p.match.usb)
            if not (ids_match or p.match.any_usb):
                continue
            if p.match.registered_only and (serial is None or serial not in registered):
                continue
            return p
        return None

    def match_root(self, root: Path) -> Profile | None:
        """The first profile whose marker file is at the root of mounted storage."""
        for p in self.profiles:
            marker = p.match.marker_file
            if marker and (root / marker).is_file() and not (root / marker).is_symlink():
                return p
        return None
