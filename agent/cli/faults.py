"""`recdock faults`: faults and their age against the 24-hour repair limit; `ack` and `resolve`
move one along its lifecycle (docs/faults.md), each recorded in the audit log with who and when."""

from __future__ import annotations

import getpass
import json

import click

from agent.cli.common import Ctx


def local_user() -> str:
    """Who runs the command: the local user name (recorded with the step in the audit log)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.group("faults", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the faults as JSON.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved faults.")
@click.pass_context
def faults(ctx: click.Context, as_json: bool, include_resolved: bool) -> None:
    """Faults and their age against the 24-hour repair limit (no subcommand: list them)."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.catalog.faults import list_faults

    c: Ctx = ctx.obj
    after = c.config.faults.unreported_after_hours
    listed = list_faults(c.catalog(), include_resolved=include_resolved)
    rows = [{**f.as_dict(), "unreported": f.unreported(after)} for f in listed]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no open faults")
        return
    for f in rows:
        state = f["state"] + (" OVERDUE" if f["overdue"] else "")
        state += " UNREPORTED" if f["unreported"] else ""
        click.echo(
            f"{f['id']}  {state:<14} {f['age_hours']:>7.1f} h  {f['kind']:<10} "
            f"{f['subject']:<16} {f['detail']}"
        )


@faults.command("ack")
@click.argument("fault_id")
@click.option("--note", default="", help="Why, or what is being done about it (kept in the log).")
@click.pass_obj
def ack(c: Ctx, fault_id: str, note: str) -> None:
    """Acknowledge fault FAULT_ID: a person has taken it on."""
    from agent.catalog.faults import acknowledge

    catalog = c.catalog(create=False)
    with catalog.tx() as conn:
        fault = acknowledge(catalog, conn, fault_id, by=local_user(), note=note)
    click.echo(f"{fault.id}: acknowledged by {fault.acknowledged_by} at {fault.acknowledged_at}")


@faults.command("resolve")
@click.argument("fault_id")
@click.option(
    "--note", required=True, help="What was done: the repair, or why it needs none (required)."
)
@click.pass_obj
def resolve(c: Ctx, fault_id: str, note: str) -> None:
    """Resolve fault FAULT_ID with a note saying what was done."""
    from agent.catalog.faults import resolve as resolve_fault

    if not note.strip():
        raise click.BadParameter("say what was done", param_hint="--note")
    catalog = c.catalog(create=False)
    with catalog.tx() as conn:
        fault = resolve_fault(catalog, conn, fault_id, by=local_user(), note=note)
    click.echo(f"{fault.id}: resolved by {fault.resolved_by} at {fault.resolved_at}")
