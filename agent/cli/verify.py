"""`recdock verify`: re-hash the store and check the audit log."""

from __future__ import annotations

import json
import sys

import click

from agent import errors
from agent.cli.common import Ctx


@click.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(c: Ctx, as_json: bool) -> None:
    """Re-hash the store and check the audit log; exit 0 only when intact."""
    from agent.store import Store
    from agent.verify import verify as run_verify

    cat = c.catalog(create=False)
    store = Store(c.home / "store", reserve_bytes=c.config.store.reserve_bytes)
    report = run_verify(cat, store, buffer_bytes=c.config.store.buffer_bytes)
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
    if not report.ok:
        sys.exit(errors.EXIT_FAILED)
