"""`recdock access`: ask for access to footage, approve or refuse it, list the requests and the
access log (rule clauses 13, 34, 35; docs/access.md). Every change is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from agent.cli.common import Ctx


@click.group("access")
def access_group() -> None:
    """Access requests: who asks for which recordings, who approved, until when."""


@access_group.command("request")
@click.option("--hold", "hold_id", default=None, help="Ask for the recordings a hold covers.")
@click.option(
    "--case",
    "case",
    default=None,
    help="Ask for the recordings every hold of this case number covers.",
)
@click.option(
    "--recording",
    "recording_ids",
    type=int,
    multiple=True,
    help="Ask for one recording by its catalog id (repeat for more).",
)
@click.option("--purpose", required=True, help="Why the footage is needed (required).")
@click.option("--case-name", default=None, help="The case's name (default: the hold's).")
@click.option("--case-number", default=None, help="The case's number (default: the hold's).")
@click.option(
    "--for",
    "on_behalf_of",
    default=None,
    help="The party asking to read or copy, when not the requester (clause 34).",
)
@click.pass_obj
def request_command(
    c: Ctx,
    hold_id: str | None,
    case: str | None,
    recording_ids: tuple[int, ...],
    purpose: str,
    case_name: str | None,
    case_number: str | None,
    on_behalf_of: str | None,
) -> None:
    """Ask for access to a hold's, a case's or named recordings; prints the request's id."""
    from agent.access.people import current_user
    from agent.catalog import access, holds, recordings

    if sum(x is not None and x != () for x in (hold_id, case, recording_ids)) != 1:
        raise click.UsageError("give exactly one of --hold, --case or --recording")
    if not purpose.strip():
        raise click.BadParameter("say why", param_hint="--purpose")
    catalog = c.catalog(create=False)
    row: dict[str, Any] = {
        "requested_by": current_user(),
        "purpose": purpose,
        "on_behalf_of": on_behalf_of,
    }
    if hold_id is not None:
        hold = holds.get(catalog, hold_id)
        if hold is None:
            raise click.BadParameter(f"no hold {hold_id}", param_hint="--hold")
        ids = [r["id"] for r in holds.recordings_held_by(catalog, hold_id)]
        row.update(
            scope="hold",
            hold_id=hold_id,
            case_name=hold["case_name"],
            case_number=hold["case_number"],
        )
    elif case is not None:
        found = holds.by_case(catalog, case)
        if not found:
            raise click.BadParameter(f"no hold names case {case}", param_hint="--case")
        ids = [r["id"] for h in found for r in holds.recordings_held_by(catalog, h["id"])]
        row.update(scope="case", case_name=found[0]["case_name"], case_number=case)
    else:
        ids = [r["id"] for r in recordings.by_ids(catalog, list(recording_ids))]
        unknown = sorted(set(recording_ids) - set(ids))
        if unknown:
            raise click.BadParameter(f"no recording {unknown}", param_hint="--recording")
        row.update(scope="recordings")
    row["case_name"] = case_name or row.get("case_name")
    row["case_number"] = case_number or row.get("case_number")
    request_id = access.request(catalog, row, ids)
    click.echo(
        f"{request_id}: asked by {row['requested_by']} for {len(set(ids))} recording(s); "
        f"an approver runs `recdock access approve {request_id} --days N`"
    )


def _decide(c: Ctx, request_id: str, decision: str, until: str | None, note: str | None) -> None:
    from agent.access.approval import decision_problems
    from agent.access.people import current_user
    from agent.catalog import access, access_log
    from agent.errors import AccessRefusedError

    catalog = c.catalog(create=False)
    req = access.get(catalog, request_id)
    if req is None:
        raise click.BadParameter(f"no access request {request_id}", param_hint="REQUEST_ID")
    if req["decision"] is not None:
        raise click.UsageError(
            f"{request_id} was {req['decision']} already by "
            f"{req['decided_by']} at {req['decided_at']}"
        )
    who = current_user()
    why = decision_problems(c.config, req, who)
    if why:
        access_log.record(
            catalog,
            "approve.refused",
            by=who,
            request_id=request_id,
            what={"decision": decision},
            reason="; ".join(why),
        )
        raise AccessRefusedError(f"{request_id}: " + "\n".join(why))
    done = access.decide(
        catalog, request_id, decision=decision, by=who, valid_until=until, note=note
    )
    tail = f" until {done['valid_until']}" if decision == "approved" else ""
    click.echo(f"{request_id}: {decision} by {who} at {done['decided_at']}{tail}")


@access_group.command("approve")
@click.argument("request_id")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="How long the approval runs, in days (at most [access] max_valid_days).",
)
@click.option("--note", default=None, help="Conditions or remarks, kept with the decision.")
@click.pass_obj
def approve(c: Ctx, request_id: str, days: int | None, note: str | None) -> None:
    """Approve access request REQUEST_ID (an approver, not its requester)."""
    limit = c.config.access.max_valid_days
    if days is not None and days > limit:
        raise click.BadParameter(f"at most {limit} ([access] max_valid_days)", param_hint="--days")
    until = datetime.now(UTC) + timedelta(days=days or limit)
    _decide(c, request_id, "approved", until.isoformat(timespec="seconds"), note)


@access_group.command("refuse")
@click.argument("request_id")
@click.option("--note", required=True, help="Why it is refused (required).")
@click.pass_obj
def refuse(c: Ctx, request_id: str, note: str) -> None:
    """Refuse access request REQUEST_ID (an approver, not its requester)."""
    _decide(c, request_id, "refused", None, note)


@access_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the requests as JSON.")
@click.pass_obj
def list_command(c: Ctx, as_json: bool) -> None:
    """Every access request, newest first, with its decision."""
    from agent.catalog import access

    rows = access.listing(c.catalog(create=False))
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        state = r["decision"] or "pending"
        if r["decision"] == "approved":
            state += f" by {r['decided_by']} until {r['valid_until']}"
        click.echo(
            f"{r['id']}  {r['requested_at'][:19]}  {r['requested_by']:<12} "
            f"{r['case_number'] or '-'}  {r['recordings']} rec.  {state}"
        )


@access_group.command("log")
@click.option("--json", "as_json", is_flag=True, help="Print the log as JSON.")
@click.option("--request", "request_id", default=None, help="Only this access request's rows.")
@click.pass_obj
def log_command(c: Ctx, as_json: bool, request_id: str | None) -> None:
    """The access log: every export, refused export and refused decision, oldest first."""
    from agent.catalog import access_log

    rows = access_log.entries(c.catalog(create=False), request_id=request_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        reason = f"  {r['reason']}" if r["reason"] else ""
        click.echo(
            f"{r['at'][:19]}  {r['action']:<16} {r['by']:<12} {r['request_id'] or '-'}{reason}"
        )
