"""Failed mounts counted across dockings (table ``mount_failures``), per recorder: by its USB
serial where the dock knows one, else by the USB port (its udev ``ID_PATH``) with the USB ids.
A clean mount deletes the row: the count is of failures in a row (agent/station/mounts.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: failed mounts kept as evidence per recorder (the newest)
KEEP_EVENTS = 20


def failed(catalog: Catalog, recorder: str, identified_by: str, event: dict[str, Any]) -> dict:
    """One more failed mount of ``recorder``; its row after (in_a_row, events...)."""
    at = event["at"]
    with catalog.tx() as conn:
        row = conn.execute(
            "SELECT in_a_row, first_at, events FROM mount_failures WHERE recorder = ?",
            (recorder,),
        ).fetchone()
        events = (json.loads(row[2]) if row else [])[-(KEEP_EVENTS - 1) :] + [event]
        in_a_row, first_at = (row[0] + 1, row[1]) if row else (1, at)
        conn.execute(
            "INSERT INTO mount_failures (recorder, identified_by, in_a_row, first_at, last_at,"
            " events) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(recorder) DO UPDATE SET"
            " identified_by = excluded.identified_by, in_a_row = excluded.in_a_row,"
            " last_at = excluded.last_at, events = excluded.events",
            (recorder, identified_by, in_a_row, first_at, at, json.dumps(events)),
        )
    return {
        "recorder": recorder,
        "identified_by": identified_by,
        "in_a_row": in_a_row,
        "first_at": first_at,
        "last_at": at,
        "events": events,
    }


def mounted(catalog: Catalog, recorder: str) -> bool:
    """``recorder`` mounted cleanly: its count starts again. True when it had failures."""
    with catalog.tx() as conn:
        cur = conn.execute("DELETE FROM mount_failures WHERE recorder = ?", (recorder,))
        return cur.rowcount > 0
