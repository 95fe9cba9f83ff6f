"""`recdock export`: two labelled BagIt copies of a hold's or a case's recordings, under an
approved access request (rule clauses 12, 13, 34; docs/export.md)."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.common import Ctx


@click.command("export")
@click.option("--hold", "hold_id", default=None, help="Export the recordings this hold covers.")
@click.option(
    "--case",
    "case_number",
    default=None,
    help="Export the recordings every hold of this case number covers.",
)
@click.option(
    "--access",
    "request_id",
    required=True,
    help="The approved access request the export is made under (required).",
)
@click.argument("dest1", type=click.Path(path_type=Path, file_okay=False))
@click.argument("dest2", type=click.Path(path_type=Path, file_okay=False))
@click.pass_obj
def export_command(
    c: Ctx, hold_id: str | None, case_number: str | None, request_id: str, dest1: Path, dest2: Path
) -> None:
    """Write two independent, labelled copies (BagIt bags) into DEST1 and DEST2; refused, and
    logged, without a valid approval."""
    from agent.access.export import Order, export
    from agent.access.people import current_user

    if (hold_id is None) == (case_number is None):
        raise click.UsageError("give exactly one of --hold or --case")
    order = Order(request_id, (dest1, dest2), hold_id, case_number, current_user())
    done = export(c.catalog(create=False), c.config, c.home / "store", order)
    for path in done.bags:
        click.echo(f"{path}: written and validated (Payload-Oxum {done.payload_oxum})")
    for r in done.only_at_centre:
        click.echo(
            f"recording {r['id']} ({r['source_path']}) is only at the centre: it was "
            "purged here; export it at the centre"
        )
