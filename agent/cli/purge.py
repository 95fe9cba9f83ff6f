"""`recdock purge`: one purge pass by hand, as the daemon runs it (docs/retention.md).

It purges only what the centre's receipt confirmed, whose retention ran out (or, below the
low-disk threshold, what the centre confirmed, oldest first) and no hold covers; never with a
catalog that is new, missing or not the store's own. ``--dry-run`` says what it would purge.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from agent.cli.common import Ctx
from agent.cli.faults import local_user


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Say what would be purged; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was purged as JSON.")
@click.pass_obj
def purge_command(c: Ctx, dry_run: bool, as_json: bool) -> None:
    """Purge confirmed recordings past their retention that no hold covers."""
    from agent.station.retention import purge
    from agent.store import Store

    catalog = c.catalog(create=False)
    store = Store(c.home / "store", reserve_bytes=c.config.store.reserve_bytes)
    report = purge(
        catalog, store, c.config, now=datetime.now(UTC), by=local_user(), dry_run=dry_run
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    verb = "would purge" if dry_run else "purged"
    for r in report.purged:
        click.echo(f"{verb} {r['store_path']}  {r['size']} bytes  ({r['purge_reason']})")
    click.echo(f"{verb} {len(report.purged)} file(s), {report.bytes} bytes")
    if report.finished:
        click.echo(f"finished {report.finished} purge(s) an interrupted pass left")
    if report.unpurgeable:
        click.echo(f"the store stays below its low-disk threshold: {report.unpurgeable}")
