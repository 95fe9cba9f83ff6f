"""Where the station looks for its configuration, its data and the shipped firmware profiles."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/recdock/recdock.toml")
DEFAULT_HOME = Path("/var/lib/recdock")
SHIPPED_PROFILES = Path(__file__).resolve().parent.parent.parent / "firmware_profiles"
