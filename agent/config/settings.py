"""The station's configuration model: one TOML file, validated strictly (pydantic).

An unknown or mistyped key stops the program with the file, the key and what was
expected (``extra="forbid"`` on every model). Every setting has a default, so the
station runs on its embedded default with no file at all. docs/configuration.md
lists every setting; ``tests/test_config.py`` checks that list against this module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.config.access import AccessConfig
from agent.config.anchor import AnchorConfig
from agent.config.faults import FaultsConfig
from agent.config.indicators import IndicatorsConfig
from agent.config.links import MqttConfig, UploadConfig
from agent.config.paths import SHIPPED_PROFILES
from agent.config.retention import RetentionConfig

MiB = 1024 * 1024
GiB = 1024 * MiB


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(Strict):
    reserve_bytes: Annotated[int, Field(ge=0)] = Field(
        default=1 * GiB,
        description="Free space the store never goes below; an offload stops before crossing it.",
    )
    sm3: bool = Field(
        default=False, description="Also fingerprint every file with SM3 (GB/T 32905)."
    )
    buffer_bytes: Annotated[int, Field(ge=64 * 1024, le=64 * MiB, multiple_of=64 * 1024)] = Field(
        default=4 * MiB,
        description=(
            "Size of each of the six reused copy buffers (memory is bounded by them); "
            "a multiple of 64 KiB, so O_DIRECT can use it."
        ),
    )
    commit_every_files: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description="Catalog rows committed together (each file is fsynced on its own)."
    )
    commit_every_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=2.0, description="Longest time a verified copy waits for its catalog commit."
    )


class OffloadConfig(Strict):
    keep_source: bool = Field(
        default=False,
        description="Never remove recordings from recorders, even once verified in the store.",
    )
    late_after_hours: Annotated[float, Field(gt=0)] = Field(
        default=24.0, description="A recording older than this at docking is reported late."
    )


class ProfilesConfig(Strict):
    dirs: list[Path] = Field(
        default_factory=lambda: [SHIPPED_PROFILES],
        description="Folders of firmware profile TOML files, read in order; the first match wins.",
    )


class GpioConfig(Strict):
    factory: Literal["lgpio", "mock"] = Field(
        default="lgpio",
        description="gpiozero pin factory: 'lgpio' on a Raspberry Pi 4/5, 'mock' for no "
        "hardware. Never chosen silently: `recdock run --simulate` sets 'mock' explicitly.",
    )


class DeviceEntry(Strict):
    serial: str = Field(min_length=1, max_length=64, description="USB serial of the recorder")
    profile: str = Field(description="Firmware profile the device is read with")
    officer: str | None = Field(default=None, description="Officer the device is issued to")
    unit: str | None = Field(default=None, description="Unit / department (科室)")


class ChecksConfig(Strict):
    min_battery_pct: Annotated[float, Field(ge=0, le=100)] = Field(
        default=80.0, description="Battery level a recorder needs to be ready for a shift"
    )
    shift_hours: Annotated[float, Field(gt=0, le=48)] = Field(
        default=10.0, description="Recording time a shift needs (free space = hours x bitrate)"
    )
    clock_tolerance_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=2.0, description="Largest device clock offset, after setting, that passes"
    )
    approved_firmware: list[str] = Field(
        default_factory=list,
        description="Firmware versions allowed in service; empty: any version passes",
    )
    set_clock: bool = Field(
        default=True, description="Set a recorder's clock when the station clock is synchronised"
    )


class StationConfig(Strict):
    max_concurrent_offloads: Annotated[int, Field(ge=1, le=16)] = Field(
        default=2, description="Bays that offload at the same time"
    )
    mount_dir: Path = Field(
        default=Path("/run/recdock/mnt"), description="Where the daemon mounts recorders"
    )


STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Config(Strict):
    station_id: str = Field(
        default="station-01",
        description="This station's id: in topics, session records and uploads.",
    )
    store: StoreConfig = Field(default_factory=StoreConfig)
    offload: OffloadConfig = Field(default_factory=OffloadConfig)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    station: StationConfig = Field(default_factory=StationConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    indicators: IndicatorsConfig = Field(default_factory=IndicatorsConfig)
    bays: dict[str, Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=dict,
        description="USB port path (udev ID_PATH) -> bay number, so the right LED lights",
    )
    devices: list[DeviceEntry] = Field(
        default_factory=list, description="Register of recorders, by USB serial ([[devices]])"
    )
    mqtt: MqttConfig = Field(
        default_factory=MqttConfig, description="Link to the MQTT broker ([mqtt], docs/mqtt.md)"
    )
    upload: UploadConfig = Field(
        default_factory=UploadConfig, description="Uploads to the central store ([upload])"
    )
    anchor: AnchorConfig = Field(
        default_factory=AnchorConfig,
        description="The audit chain compared with the centre's ([anchor], sync/anchor.py)",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="How long recordings are kept, and purging ([retention], docs/retention.md)",
    )
    faults: FaultsConfig = Field(
        default_factory=FaultsConfig,
        description="The fault rules' thresholds and the lifecycle's times ([faults], "
        "docs/faults.md)",
    )
    access: AccessConfig = Field(
        default_factory=AccessConfig,
        description="Who approves access to footage, and the unit export labels name "
        "([access], docs/access.md)",
    )

    @model_validator(mode="after")
    def _cross(self) -> Config:
        numbers = list(self.bays.values())
        dup = {n for n in numbers if numbers.count(n) > 1}
        if dup:
            raise ValueError(f"bays: bay number(s) {sorted(dup)} given to more than one port")
        serials = [d.serial for d in self.devices]
        dup_s = {x for x in serials if serials.count(x) > 1}
        if dup_s:
            raise ValueError(f"devices: serial(s) {sorted(dup_s)} registered twice")
        return self

    def registered(self) -> dict[str, DeviceEntry]:
        return {d.serial: d for d in self.devices}

    @field_validator("station_id")
    @classmethod
    def _station_id(cls, v: str) -> str:
        if not STATION_ID.match(v):
            raise ValueError("letters, digits, '.', '_' and '-', at most 64, starting alphanumeric")
        return v
