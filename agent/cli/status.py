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
    """Bays, docked recorders, their state and LED, last checks, sync backlog, open faults."""
    from agent.catalog import catalog_path
    from agent.station.status import render, snapshot

    if not catalog_path(c.home).exists():
        snap = snapshot(None, c.config, c.home)
    else:
        catalog = c.catalog(create=False)
        try:
            snap = snapshot(catalog, c.config, c.home)
        finally:
            catalog.close()
    if as_json:
        click.echo(json.dumps(snap, indent=2, ensure_ascii=False))
    else:
        click.echo(render(snap))
