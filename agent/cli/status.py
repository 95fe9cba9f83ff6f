"""`recdock status`: what the station shows, read from the catalog (also while it runs).

On a home where the station never ran (no catalog yet) it says so and exits 0: a new
administrator's first command must not fail. It creates nothing there.
"""

from __future__ import annotations

import json
from typing import Any

import click


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status_command(c: Any, as_json: bool) -> None:
    """Bays, docked recorders, their state and LED, last checks, sync backlog, the links to
    the broker and the central store, open faults."""
    from agent.catalog import catalog_path
    from agent.config import config_fingerprint
    from agent.station.status import StationView, daemon_info, render, snapshot

    # a running daemon says what it read; the configuration is loaded only when that is not
    # the file given here as it is now (start-up time on a Pi: docs/performance.md)
    view = StationView.from_daemon(daemon_info(c.home), config_fingerprint(c.config_path))
    if view is None:
        view = StationView.of(c.config)
    if not catalog_path(c.home).exists():
        snap = snapshot(None, view, c.home)
    else:
        catalog = c.catalog(create=False, station_id=view.station_id)
        try:
            snap = snapshot(catalog, view, c.home)
        finally:
            catalog.close()
    if as_json:
        click.echo(json.dumps(snap, indent=2, ensure_ascii=False))
    else:
        click.echo(render(snap))
