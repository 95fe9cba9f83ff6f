"""The station's own status: audited, and the retained ``recdock/<station>/status`` topic.

No table of its own: an audit entry and an outbox message, in one transaction (rule 3).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from agent.catalog import audit, outbox
from sync.wire import topics

if TYPE_CHECKING:
    from agent.catalog import Catalog


def set_station_status(catalog: Catalog, state: str, data: dict[str, Any]) -> None:
    """The retained station status ("online", "stopped"), audited, in one transaction."""
    with catalog.tx() as conn:
        entry = audit.append(catalog, f"station.{state}", catalog.station_id, data)
        outbox.enqueue(
            conn,
            topics.status(catalog.station_id),
            {"station": catalog.station_id, "state": state, "at": entry.at, **data},
            event_id=f"{catalog.station_id}:status:{uuid.uuid4().hex}",
            retain=True,
        )
