"""The real readers: the thermal zone in sysfs, the firmware's throttled flags
(``/sys/devices/platform/soc/soc:firmware/get_throttled``, else ``vcgencmd get_throttled``),
and ``smartctl -H -j`` on the disk under the store (where smartctl sees it: not an SD card)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from agent.seams.health.readings import DiskHealth, Reading

log = logging.getLogger(__name__)

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


class SystemSensors:
    """Reads what this machine offers; each reader that fails or is missing gives None."""

    def __init__(
        self,
        *,
        store: Path | None = None,
        thermal: Path = THERMAL,
        throttled: Path = THROTTLED,
        run: Runner = _run,
    ) -> None:
        self.store = store
        self.thermal = thermal
        self.throttled = throttled
        self.run = run

    def describe(self) -> str:
        return f"sensors: system ({self.thermal}, {self.throttled} or vcgencmd, smartctl)"

    def read(self) -> Reading:
        return Reading(self.temperature(), self.throttled_flags(), self.disk())

    def temperature(self) -> float | None:
        try:
            return int(self.thermal.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            return None

    def throttled_flags(self) -> int | None:
        try:
            return int(self.throttled.read_text().strip(), 16)
        except (OSError, ValueError):
            pass
        if shutil.which("vcgencmd") is None:
            return None
        done = self.run(["vcgencmd", "get_throttled"])  # "throttled=0x50000"
        try:
            return int(done.stdout.strip().split("=", 1)[1], 16)
        except (IndexError, ValueError):
            return None

    def disk(self) -> DiskHealth | None:
        if self.store is None or shutil.which("smartctl", path="/usr/sbin:/sbin:/usr/bin") is None:
            return None
        device = self._disk_of(self.store)
        if device is None:
            return None
        done = self.run(["smartctl", "-H", "-j", device])
        return parse_smart(device, done.stdout)

    def _disk_of(self, path: Path) -> str | None:
        """The whole disk under ``path`` (findmnt, then lsblk's parent kernel name)."""
        source = self.run(["findmnt", "-n", "-o", "SOURCE", "--target", str(path)]).stdout.strip()
        if not source.startswith("/dev/"):
            return None
        parent = self.run(["lsblk", "-n", "-o", "PKNAME", source]).stdout.strip()
        return f"/dev/{parent}" if parent else source


def parse_smart(device: str, output: str) -> DiskHealth | None:
    """smartctl's JSON: ``smart_status.passed``; None when smartctl could not tell."""
    try:
        doc = json.loads(output)
    except ValueError:
        return None
    status = doc.get("smart_status") if isinstance(doc, dict) else None
    if not isinstance(status, dict) or not isinstance(status.get("passed"), bool):
        return None
    model = doc.get("model_name") or doc.get("device", {}).get("name") or device
    verdict = "PASSED" if status["passed"] else "FAILED"
    return DiskHealth(device, status["passed"], f"{model}: SMART overall-health {verdict}")
