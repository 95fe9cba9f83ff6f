"""The station's health report: what the centre shows of a station beside its availability.

One dictionary, measured now from the catalog, the store's file system and the clock seam:
the store's free and total bytes; the outbox (events waiting for the broker) and the uploads
(recordings waiting for the central receipt), each with its count and the age of its oldest
item; whether the station clock is NTP-synchronised; recdock's version; the bays and how many
hold a recorder. sync/mqtt/health.py signs and publishes it on ``recdock/<station>/health``
(docs/mqtt.md, schema ``sync/wire/schemas/health.json``). Reading only: nothing here writes.

Ages are durations on the station's clock (seconds at ``at``): a receiver adds the time since
it received the report, so a station clock that is off does not make a backlog look old.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog import bays, outbox, recordings
from agent.seams.indicators.patterns import State

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config
    from agent.seams.clock import StationClock


def software_version() -> str:
    """recdock's installed version, or ``unknown`` when it runs from a tree not installed."""
    try:
        return metadata.version("recdock")
    except metadata.PackageNotFoundError:
        return "unknown"


def _age_s(since: str | None, now: datetime) -> float | None:
    if since is None:
        return None
    then = datetime.fromisoformat(since)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return round(max(0.0, (now - then).total_seconds()), 1)


def store_space(home: Path) -> dict[str, int]:
    """Free and total bytes of the store's file system (the home's, before the store exists)."""
    store = home / "store"
    usage = shutil.disk_usage(store if store.exists() else home)
    return {"free_bytes": int(usage.free), "total_bytes": int(usage.total)}


def _events(catalog: Catalog, now: datetime) -> dict[str, Any]:
    oldest = outbox.oldest_created_at(catalog.conn)
    return {
        "count": outbox.backlog(catalog.conn),
        "oldest_at": oldest,
        "oldest_age_s": _age_s(oldest, now),
    }


def _uploads(catalog: Catalog, config: Config, now: datetime) -> dict[str, Any]:
    count, size = recordings.unsynced_totals(catalog)
    row = recordings.oldest_unsynced(catalog) if count else None
    oldest = row["offloaded_at"] if row else None
    return {
        "enabled": config.upload.enabled,
        "count": count,
        "bytes": size,
        "oldest_at": oldest,
        "oldest_age_s": _age_s(oldest, now),
    }


def _bays(catalog: Catalog, config: Config) -> dict[str, Any]:
    shown = bays.states(catalog)
    numbers = sorted(set(config.bays.values()) | set(config.indicators.bays) | set(shown))
    states = {str(n): shown.get(n, State.IDLE.value) for n in numbers}
    in_use = sum(state != State.IDLE.value for state in states.values())
    return {"total": len(numbers), "in_use": in_use, "states": states}


def station_report(
    catalog: Catalog,
    config: Config,
    home: Path,
    clock: StationClock,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The health report as the schema has it, without its signature."""
    now = now or datetime.now(UTC)
    return {
        "station": config.station_id,
        "at": now.isoformat(timespec="milliseconds"),
        "version": software_version(),
        "interval_s": config.mqtt.health_interval_s,
        "store": store_space(home),
        "events": _events(catalog, now),
        "uploads": _uploads(catalog, config, now),
        "clock": {"synchronised": bool(clock.synchronised()), "source": clock.describe()[:200]},
        "bays": _bays(catalog, config),
    }
