"""`recdock verify`: re-hash the store and check the audit log; with --against-central, also
compare the audit chain with the head the central store holds (sync/anchor.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from agent import errors
from agent.cli.common import Ctx


@click.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--against-central",
    is_flag=True,
    help="Also ask the central store for the head of this station's chain it holds and fail "
    "when the local audit log disagrees (needs [upload]: the centre's URL and the token).",
)
@click.pass_obj
def verify(c: Ctx, as_json: bool, against_central: bool) -> None:
    """Re-hash the store and check the audit log; exit 0 only when intact."""
    from agent.store import Store
    from agent.verify import verify as run_verify

    cat = c.catalog(create=False)
    store = Store(c.home / "store", reserve_bytes=c.config.store.reserve_bytes)
    report = run_verify(cat, store, buffer_bytes=c.config.store.buffer_bytes)
    anchored = _against_central(c, cat) if against_central else None
    if anchored is not None:
        report.problems.extend(anchored.problems)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "files_checked": report.files_checked,
                    "bytes_checked": report.bytes_checked,
                    "audit_entries": report.audit_entries,
                    "problems": report.problems,
                    "notes": report.notes,
                    **({"central": _anchor_json(anchored)} if anchored is not None else {}),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for n in report.notes:
            click.echo(f"note: {n}")
        for p in report.problems:
            click.echo(f"PROBLEM: {p}")
        click.echo(
            f"{'intact' if report.ok else 'NOT INTACT'}: {report.files_checked} files "
            f"({report.bytes_checked} bytes) re-hashed, {report.audit_entries} audit entries, "
            f"{len(report.problems)} problems"
        )
        if anchored is not None:
            click.echo(_anchor_line(anchored))
    if report.problems:
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
