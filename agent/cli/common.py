"""What every `recdock` command shares: the context (home, config) and the profile choice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from agent import errors

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config
    from agent.recorder.profiles import Profile, ProfileSet


@dataclass
class Ctx:
    """``config`` is read when a command first asks for it (pydantic costs start-up time that
    `recdock status` on a running station does without); a bad file is then the command's
    error, exit 78."""

    home: Path
    config_path: Path | None
    verbose: int

    @cached_property
    def config(self) -> Config:
        from agent.config import load_config

        return load_config(self.config_path)

    def catalog(self, *, create: bool = True, station_id: str | None = None) -> Catalog:
        from agent.catalog import open_catalog

        sid = station_id if station_id is not None else self.config.station_id
        return open_catalog(self.home, sid, create=create)

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
