"""`recdock hold`: keep footage past its retention (rule clause 12, docs/retention.md).

``add`` places a hold on one recording, a session, or a recorder or an officer over a time
range; ``release`` lifts one with a reason; ``list`` shows them with how many recordings each
covers. Each change is audited (``hold.placed`` / ``hold.released``) in the transaction that
makes it, so it travels to the centre as a signed event (rule 3, docs/architecture.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from agent.cli.common import Ctx
from agent.cli.faults import local_user
from agent.errors import HoldError

if TYPE_CHECKING:
    from agent.catalog import Catalog

#: Kept in step with agent.catalog.holds.REASONS (tests/test_hold_cli.py checks it): the
#: catalog is not imported before a command runs.
REASONS = ("complaint", "obstruction", "major_case", "marked_on_recorder", "other")
TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


@click.group("hold")
def hold() -> None:
    """Holds: what keeps recordings past their retention (never purged while held)."""


@hold.command("add")
@click.option("--recording", metavar="ID|PATH", help="Hold one recording: its id or store path.")
@click.option("--session", metavar="ID", help="Hold every recording of one session (docking).")
@click.option("--device", metavar="SERIAL", help="Hold a recorder's recordings (over --from/--to).")
@click.option("--officer", metavar="ID", help="Hold an officer's recordings (over --from/--to).")
@click.option(
    "--from",
    "from_at",
    type=click.DateTime(TIME_FORMATS),
    help="With --device/--officer: recordings started at or after this (station time).",
)
@click.option(
    "--to",
    "to_at",
    type=click.DateTime(TIME_FORMATS),
    help="With --device/--officer: recordings started before this (station time; none: open).",
)
@click.option(
    "--reason",
    required=True,
    type=click.Choice(REASONS),
    help="Why (rule clause 12): complaint expected, obstruction or assault, major or "
    "sensitive case, marked on the recorder, or other (with --text).",
)
@click.option("--text", default=None, help="The reason in words (required with --reason other).")
@click.option("--case-name", default=None, help="The case or enforcement activity's name.")
@click.option("--case-number", default=None, help="The case number.")
@click.option("--by", default=None, help="Who places the hold (default: the local user).")
@click.option("--json", "as_json", is_flag=True, help="Print the hold placed as JSON.")
@click.pass_obj
def add(c: Ctx, as_json: bool, **opts: Any) -> None:
    """Place a hold on a recording, a session, or a recorder or officer over a time range."""
    from agent.catalog import holds

    catalog = c.catalog(create=False)
    row = hold_row(c, catalog, opts)
    hold_id = holds.place(catalog, row)
    placed = holds.get(catalog, hold_id) or {}
    count = len(holds.recordings_held_by(catalog, hold_id))
    if as_json:
        click.echo(json.dumps({**placed, "recordings": count}, ensure_ascii=False, indent=2))
        return
    click.echo(f"{hold_id}: hold placed ({placed['scope']}, {placed['reason']}), covers {count}")


def hold_row(c: Ctx, catalog: Catalog, opts: dict[str, Any]) -> dict[str, Any]:
    """The hold the options describe, after checking that what it names exists."""
    targets = {k: opts[k] for k in ("recording", "session", "device", "officer") if opts[k]}
    if len(targets) != 1:
        raise click.UsageError("name exactly one of --recording, --session, --device, --officer")
    ((scope, value),) = targets.items()
    if (opts["from_at"] or opts["to_at"]) and scope not in ("device", "officer"):
        raise click.UsageError("--from/--to go with --device or --officer")
    if opts["reason"] == "other" and not (opts["text"] or "").strip():
        raise click.BadParameter("say why in --text", param_hint="--reason other")
    row: dict[str, Any] = {
        "scope": scope,
        "reason": opts["reason"],
        "reason_text": opts["text"],
        "case_name": opts["case_name"],
        "case_number": opts["case_number"],
        "placed_by": opts["by"] or local_user(),
        "from_at": utc(opts["from_at"]),
        "to_at": utc(opts["to_at"]),
    }
    row.update(target(c, catalog, scope, value))
    return row


def target(c: Ctx, catalog: Catalog, scope: str, value: str) -> dict[str, Any]:
    """The hold's column for what it names; :class:`HoldError` when that does not exist."""
    from agent.catalog import recordings, sessions

    if scope == "recording":
        row = recordings.by_id(catalog, int(value)) if value.isdigit() else None
        row = row or recordings.by_store_path(catalog, value)
        if row is None:
            raise HoldError(f"no recording {value!r} in the catalog (see `recdock catalog`)")
        return {"recording_id": row["id"]}
    if scope == "session":
        if sessions.get(catalog, value) is None:
            raise HoldError(f"no session {value!r} in the catalog (see `recdock catalog --json`)")
        return {"session_id": value}
    column = "device_serial" if scope == "device" else "officer_id"
    registered = {d.serial if scope == "device" else d.officer for d in c.config.devices}
    if value not in registered and not recordings.knows(catalog, column, value):
        raise HoldError(
            f"no {scope} {value!r}: no recording of it in the catalog and not registered in "
            "[[devices]]; check the spelling"
        )
    return {column: value}


def utc(moment: datetime | None) -> str | None:
    """A station-time moment from the command line, in UTC as the catalog keeps times."""
    if moment is None:
        return None
    return moment.astimezone().astimezone(UTC).isoformat(timespec="seconds")


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold is no longer needed (required).")
@click.option("--by", default=None, help="Who releases it (default: the local user).")
@click.pass_obj
def release(c: Ctx, hold_id: str, reason: str, by: str | None) -> None:
    """Release hold HOLD_ID: its recordings follow their retention again."""
    from agent.catalog import holds

    if not reason.strip():
        raise click.BadParameter("say why", param_hint="--reason")
    catalog = c.catalog(create=False)
    if not holds.lift(catalog, hold_id, by=by or local_user(), reason=reason):
        found = holds.get(catalog, hold_id)
        why = "no such hold" if found is None else f"released already at {found['released_at']}"
        raise HoldError(f"hold {hold_id}: {why} (see `recdock hold list --all`)")
    click.echo(f"{hold_id}: released")


@hold.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the holds as JSON.")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@click.pass_obj
def list_holds(c: Ctx, as_json: bool, include_released: bool) -> None:
    """The holds, newest first, with how many recordings each covers."""
    from agent.catalog import holds

    catalog = c.catalog(create=False)
    rows = [
        {**h, "recordings": len(holds.recordings_held_by(catalog, h["id"]))}
        for h in holds.listing(catalog, released=include_released)
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no holds")
    for h in rows:
        what = h["recording_id"] or h["session_id"] or h["device_serial"] or h["officer_id"]
        state = f"released {h['released_at']}" if h["released_at"] else "active"
        case = " ".join(x for x in (h["case_number"], h["case_name"]) if x)
        click.echo(
            f"{h['id']}  {state:<8} {h['scope']:<9} {what!s:<20} {h['reason']:<18} "
            f"{h['recordings']:>5} recordings  {h['origin']}/{h['placed_by']}  {case}"
        )
