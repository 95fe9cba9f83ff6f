"""The fake sensors (chosen explicitly: tests, `recdock run --simulate`): fixed readings, set in
Python or in ``<home>/run/sensors.json`` (``{"temperature_c": 85, "throttled": 65537,
"disk": {"device": "/dev/sda", "passed": false, "detail": "..."}}``), read at every reading."""

from __future__ import annotations

import json
from pathlib import Path

from agent.seams.health.readings import DiskHealth, Reading


class SimulatedSensors:
    def __init__(self, reading: Reading | None = None, *, file: Path | None = None) -> None:
        self.reading = reading or Reading(temperature_c=45.0, throttled=0)
        self.file = file

    def describe(self) -> str:
        where = f" (from {self.file})" if self.file else ""
        return f"sensors: SIMULATED{where}"

    def read(self) -> Reading:
        if self.file is None or not self.file.exists():
            return self.reading
        try:
            doc = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return self.reading
        disk = doc.get("disk")
        return Reading(
            temperature_c=doc.get("temperature_c", self.reading.temperature_c),
            throttled=doc.get("throttled", self.reading.throttled),
            disk=DiskHealth(**disk) if isinstance(disk, dict) else self.reading.disk,
        )
