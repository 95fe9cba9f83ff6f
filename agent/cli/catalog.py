"""`recdock catalog`: the catalogued recordings."""

from __future__ import annotations

import json

import click

from agent.catalog import recordings
from agent.cli.common import Ctx


@click.command("catalog")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one recording per line.")
@click.pass_obj
def catalog(c: Ctx, as_json: bool) -> None:
    """List catalogued recordings."""
    cat = c.catalog(create=False)
    rows = recordings.listing(cat)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False, sort_keys=True))
        return
    if not rows:
        click.echo("no recordings catalogued")
        return
    click.echo(
        f"{'device':<12} {'officer':<10} {'recorded start':<25} {'size':>12}  sha256        source"
    )
    for r in rows:
        click.echo(
            f"{r['device_serial'][:12]:<12} {(r['officer_id'] or '-')[:10]:<10} "
            f"{(r['recorded_start'] or '-')[:25]:<25} {r['size']:>12}  {r['sha256'][:12]}  "
            f"{r['source_path']}" + ("  LATE" if r["late"] else "")
        )
    click.echo(f"{len(rows)} recordings")
