"""`recdock faults`: faults and their age against the 24-hour repair limit."""

from __future__ import annotations

import json

import click

from agent.cli.common import Ctx


@click.command("faults")
@click.option("--json", "as_json", is_flag=True, help="Print the faults as JSON.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved faults.")
@click.pass_obj
def faults(c: Ctx, as_json: bool, include_resolved: bool) -> None:
    """Faults and their age against the 24-hour repair limit."""
    from agent.catalog.faults import list_faults

    rows = [f.as_dict() for f in list_faults(c.catalog(), include_resolved=include_resolved)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no open faults")
        return
    for f in rows:
        state = "resolved" if f["resolved_at"] else ("OVERDUE" if f["overdue"] else "open")
        click.echo(
            f"{state:<8} {f['age_hours']:>7.1f} h  {f['kind']:<10} {f['subject']:<16} {f['detail']}"
        )
