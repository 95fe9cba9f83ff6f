"""The station's own hardware readings: temperature, the firmware's throttled flags
(under-voltage), the store disk's SMART health. The real readers (:mod:`.system`: sysfs, the
Raspberry Pi firmware's ``get_throttled``, ``smartctl``) and the fake (:mod:`.simulated`) are
chosen explicitly, never as a fallback (rule 7, docs/architecture.md). A reading the hardware
does not offer is None: the rules that need it say nothing."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from agent.seams.health.readings import (
    THROTTLED_NOW,
    UNDER_VOLTAGE_NOW,
    UNDER_VOLTAGE_SINCE_BOOT,
    DiskHealth,
    Reading,
)

__all__ = [
    "THROTTLED_NOW",
    "UNDER_VOLTAGE_NOW",
    "UNDER_VOLTAGE_SINCE_BOOT",
    "DiskHealth",
    "Reading",
    "Sensors",
    "make_sensors",
]


class Sensors(Protocol):
    def read(self) -> Reading: ...

    def describe(self) -> str: ...


def make_sensors(kind: Literal["system", "simulated"], **kw: Any) -> Sensors:
    """The station's sensors of the given kind; there is no default and no fallback."""
    if kind == "system":
        from agent.seams.health.system import SystemSensors

        return SystemSensors(**kw)
    if kind == "simulated":
        from agent.seams.health.simulated import SimulatedSensors

        return SimulatedSensors(**kw)
    raise ValueError(f"unknown sensors kind {kind!r}: 'system' or 'simulated'")
