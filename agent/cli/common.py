"""What every `recdock` command shares: the context (home, config) and the profile choice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent import errors

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config
    from agent.recorder.profiles import Profile, ProfileSet


@dataclass
class Ctx:
    home: Path
    config: Config
    verbose: int

    def catalog(self, *, create: bool = True) -> Catalog:
        from agent.catalog import open_catalog

        return open_catalog(self.home, self.config.station_id, create=create)

    def profiles(self) -> ProfileSet:
        from agent.recorder.profiles import ProfileSet

        return ProfileSet.load(self.config.profiles.dirs)


def pick_profile(c: Ctx, source: Path, name: str | None) -> Profile:
    profiles = c.profiles()
    if name:
        return profiles.get(name)
    found = profiles.match_root(source)
    if found is None:
        raise errors.ProfileError(
            f"{source}: no firmware profile recognises this recorder (no marker file); "
            "pass --profile NAME (see firmware_profiles/)"
        )
    return found


def utc_day_start(day: datetime) -> str:
    """The UTC moment (SQLite's ``YYYY-MM-DD HH:MM:SS``) the station's local ``day`` starts."""
    midnight = datetime(day.year, day.month, day.day).astimezone()  # naive: local time
    return midnight.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
