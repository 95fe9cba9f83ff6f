"""`recdock verify`: check the store and the audit log, a part of them, or only the chain;
with --against-central, also compare the audit chain with the head the central store holds
(sync/anchor.py).

Problems and notes are printed as they are found; on a terminal a progress bar (tqdm, loaded
only here) shows the audit log's entries and the store's bytes on stderr. ``--json`` prints
one report at the end, its problems read back from the check's scratch database, so memory
stays the same however many there are.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from agent import errors
from agent.cli.common import Ctx, utc_day_start

if TYPE_CHECKING:
    from agent.verify import Progress, Scope, VerifyReport

DAY = click.DateTime(["%Y-%m-%d"])


@click.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, at the end.")
@click.option(
    "--session",
    metavar="ID",
    help="Check only this session: its files, manifest, record and audit entries (the "
    "audit chain is always checked whole).",
)
@click.option("--device", metavar="SERIAL", help="Check only the sessions of this recorder.")
@click.option(
    "--since",
    type=DAY,
    help="Check only sessions started on or after this day (YYYY-MM-DD, station time).",
)
@click.option(
    "--until",
    type=DAY,
    help="Check only sessions started on or before this day (YYYY-MM-DD, station time).",
)
@click.option(
    "--chain-only",
    is_flag=True,
    help="Check only the audit log's hash chain and the head kept by earlier checks; "
    "no store file is read.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted full check where it stopped (its position is kept in "
    "<home>/run/verify-full.db); sessions already checked are not re-hashed.",
)
@click.option(
    "--against-central",
    is_flag=True,
    help="Also ask the central store for the head of this station's chain it holds and fail "
    "when the local audit log disagrees (needs [upload]: the centre's URL and the token).",
)
@click.pass_obj
def verify(c: Ctx, as_json: bool, resume: bool, against_central: bool, **chosen: Any) -> None:
    """Re-hash the store and check the audit log; exit 0 only when intact."""
    from agent.store import Store
    from agent.verify import verify as run_verify

    scope = _scope(**chosen)
    if resume and (scope.partial or scope.chain_only):
        raise click.UsageError("--resume continues a full check: give it no other choice")
    if scope.chain_only and scope.partial:
        raise click.UsageError("--chain-only checks no session: drop --session/--device/--since")
    cat = c.catalog(create=False)
    store = Store(c.home / "store", reserve_bytes=c.config.store.reserve_bytes)
    progress, say = _terminal()
    report = run_verify(
        cat,
        store,
        buffer_bytes=c.config.store.buffer_bytes,
        scope=scope,
        resume=resume,
        on_finding=None if as_json else say,
        progress=progress,
    )
    anchored = _against_central(c, cat) if against_central else None
    if anchored is not None and not as_json:
        for problem in anchored.problems:
            click.echo(f"PROBLEM: {problem}")
    if as_json:
        _print_json(report, None if anchored is None else _anchor_json(anchored))
    else:
        click.echo(_summary(report))
        if anchored is not None:
            click.echo(_anchor_line(anchored))
    if not report.ok or (anchored is not None and anchored.problems):
        sys.exit(errors.EXIT_FAILED)


def _against_central(c: Ctx, catalog: Any) -> Any:
    from sync.anchor import check_against_central

    return check_against_central(c.config, catalog)


def _anchor_json(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "local_head": {"seq": report.local_seq, "hash": report.local_hash},
        "central": report.central,
        "problems": report.problems,
    }


def _anchor_line(report: Any) -> str:
    if report.central is None:
        return "central store: holds nothing of this station yet"
    state = "agrees" if report.ok else "DISAGREES"
    return (
        f"central store: {state}; its head is entry {report.central['head_seq']}, "
        f"the local log ends at entry {report.local_seq}"
    )


def _scope(
    *,
    session: str | None,
    device: str | None,
    since: datetime | None,
    until: datetime | None,
    chain_only: bool,
) -> Scope:
    from agent.verify import Scope

    return Scope(
        session=session,
        device=device,
        since=utc_day_start(since) if since else None,
        until=utc_day_start(until + timedelta(days=1)) if until else None,
        chain_only=chain_only,
    )


def _terminal() -> tuple[Progress, Any]:
    """tqdm's bars on stderr when it is a terminal (disabled otherwise), and a printer that
    keeps them whole."""
    from tqdm import tqdm

    from agent.verify import PROBLEM

    try:
        columns, lines = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        columns, lines = 0, 0

    def progress(what: str, total: int, unit: str) -> Any:
        in_bytes = unit == "B"
        return tqdm(
            total=total,
            desc=what,
            unit=unit,
            unit_scale=in_bytes,
            unit_divisor=1024 if in_bytes else 1000,
            file=sys.stderr,
            disable=None,  # not a terminal: no bar
            dynamic_ncols=columns > 0,
            ncols=None if columns > 0 else 80,
            nrows=lines or 24,  # a terminal that says 0 lines (a serial console) still shows it
        )

    def say(level: str, text: str) -> None:
        tqdm.write(f"PROBLEM: {text}" if level == PROBLEM else f"note: {text}", file=sys.stdout)

    return progress, say


def _summary(report: VerifyReport) -> str:
    scope = "" if report.scope == "full" else f" ({report.scope})"
    resumed = " (resumed)" if report.resumed else ""
    return (
        f"{'intact' if report.ok else 'NOT INTACT'}: {report.files_checked} files "
        f"({report.bytes_checked} bytes) re-hashed, {report.files_purged} purged (absent as "
        f"expected), {report.audit_entries} audit entries, "
        f"{report.problem_count} problems{scope}{resumed}"
    )


def _print_json(report: VerifyReport, central: dict[str, Any] | None = None) -> None:
    """The report as one JSON object; its lists read back a finding at a time."""
    from agent.catalog.crosscheck import read_findings
    from agent.verify import NOTE, PROBLEM

    head = {
        "ok": report.ok and (central is None or not central["problems"]),
        "scope": report.scope,
        "resumed": report.resumed,
        "files_checked": report.files_checked,
        "files_purged": report.files_purged,
        "bytes_checked": report.bytes_checked,
        "audit_entries": report.audit_entries,
    }
    out = sys.stdout
    out.write(json.dumps(head, indent=2, ensure_ascii=False)[:-2])
    for key, level in (("problems", PROBLEM), ("notes", NOTE)):
        out.write(f',\n  "{key}": [')
        texts = (t for lvl, t in read_findings(report.state_path) if lvl == level)
        for i, text in enumerate(texts):
            out.write(("," if i else "") + "\n    " + json.dumps(text, ensure_ascii=False))
        out.write("\n  ]")
    if central is not None:
        out.write(',\n  "central": ' + json.dumps(central, ensure_ascii=False))
    out.write("\n}\n")
