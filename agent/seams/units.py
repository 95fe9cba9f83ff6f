"""systemd as the station's supervisor: is it running, and what does it say about a unit.

Beside :mod:`agent.seams.sdnotify` (what the station tells systemd), for `recdock doctor`
(what systemd knows about the station).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SYSTEMCTL_TIMEOUT_S = 10.0
UNIT_PROPERTIES = ("ActiveState", "UnitFileState", "WatchdogUSec", "WatchdogTimestampMonotonic")


def systemd_booted(run_dir: Path = Path("/run/systemd/system")) -> bool:
    """Whether systemd is the init system here (sd_booted(3): ``/run/systemd/system`` exists)."""
    return run_dir.is_dir()


def unit_properties(unit: str) -> dict[str, str]:
    """What ``systemctl show`` says of ``unit`` (:data:`UNIT_PROPERTIES`); empty when systemctl
    is missing or does not answer."""
    exe = shutil.which("systemctl")
    if exe is None:
        return {}
    try:
        done = subprocess.run(
            [exe, "show", unit, *(f"--property={p}" for p in UNIT_PROPERTIES)],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
