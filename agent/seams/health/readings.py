"""What the station's sensors read (agent/seams/health/): data only."""

from __future__ import annotations

from dataclasses import dataclass

#: get_throttled bits (Raspberry Pi firmware): under-voltage now, and since boot
UNDER_VOLTAGE_NOW = 1 << 0
THROTTLED_NOW = 1 << 2
UNDER_VOLTAGE_SINCE_BOOT = 1 << 16


@dataclass(frozen=True)
class DiskHealth:
    device: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Reading:
    temperature_c: float | None = None
    throttled: int | None = None
    disk: DiskHealth | None = None
