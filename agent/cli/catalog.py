"""`recdock catalog`: the catalogued recordings, streamed and filtered in SQL.

The first line comes at once and memory stays constant at any catalog size: rows are read a
batch at a time (agent/catalog/recordings.py's ``select``), never all together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import click

from agent.catalog import recordings
from agent.cli.common import Ctx, utc_day_start


@click.command("catalog")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one recording per line.")
@click.option("--device", metavar="SERIAL", help="Only this recorder's recordings.")
@click.option("--officer", metavar="ID", help="Only this officer's recordings.")
@click.option("--unit", help="Only this unit's (department's) recordings.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Only recordings started on or after this day (YYYY-MM-DD, station time; the "
    "offload's day when a recording's start is unknown).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Only recordings started on or before this day (YYYY-MM-DD, station time).",
)
@click.option(
    "--synced/--not-synced",
    default=None,
    help="Only recordings the central store confirmed (or only those it did not yet).",
)
@click.option("--late/--not-late", default=None, help="Only late (or only timely) recordings.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many recordings.")
@click.pass_obj
def catalog(c: Ctx, as_json: bool, **filters: Any) -> None:
    """List catalogued recordings, oldest first (streamed: the first line comes at once)."""
    sel = selection(**filters)
    cat = c.catalog(create=False)
    rows = recordings.select(cat, sel)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False, sort_keys=True))
        return
    print_table(rows, filtered=sel != recordings.Selection())


def selection(
    *,
    device: str | None,
    officer: str | None,
    unit: str | None,
    since: datetime | None,
    until: datetime | None,
    synced: bool | None,
    late: bool | None,
    limit: int | None,
) -> recordings.Selection:
    return recordings.Selection(
        device=device,
        officer=officer,
        unit=unit,
        since=utc_day_start(since) if since else None,
        until=utc_day_start(until + timedelta(days=1)) if until else None,
        synced=synced,
        late=late,
        limit=limit,
    )


def print_table(rows: Iterator[dict[str, Any]], *, filtered: bool) -> None:
    n = 0
    for r in rows:
        if n == 0:
            click.echo(
                f"{'device':<12} {'officer':<10} {'recorded start':<25} {'size':>12}  "
                "sha256        source"
            )
        n += 1
        click.echo(
            f"{r['device_serial'][:12]:<12} {(r['officer_id'] or '-')[:10]:<10} "
            f"{(r['recorded_start'] or '-')[:25]:<25} {r['size']:>12}  {r['sha256'][:12]}  "
            f"{r['source_path']}" + ("  LATE" if r["late"] else "")
        )
    if n == 0:
        click.echo("no recordings match" if filtered else "no recordings catalogued")
    else:
        click.echo(f"{n} recordings")
