"""``recdock-central export --access REQUEST_ID DEST1 DEST2``: the centre's two labelled BagIt
copies of an approved access request's recordings (docs/export.md), for recordings already
purged at the station. Exit codes: 0 written, 2 usage, 74 stopped part-way (nothing kept),
77 refused (no valid approval, or an object the centre does not hold; logged)."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from central.options import database_option

EXIT_FAILED = 74
EXIT_REFUSED = 77


def person() -> str:
    """The OS user running the command, or under sudo the user behind it (``SUDO_USER``,
    believed only when running as root)."""
    sudo = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    return sudo or getpass.getuser()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The centre's data folder (as recdock-central --data): its objects and receipts.",
)
@database_option
@click.option(
    "--access",
    "request_id",
    required=True,
    help="The approved access request (AC-…) whose recordings are exported.",
)
@click.argument("dest1", type=click.Path(path_type=Path))
@click.argument("dest2", type=click.Path(path_type=Path))
def export(data_dir: Path, database: str | None, request_id: str, dest1: Path, dest2: Path):
    """Write two labelled BagIt copies of an approved access request's recordings from the
    centre's objects into DEST1 and DEST2 (two existing folders, ideally two disks); refused
    (exit 77, logged) without a valid approval."""
    from central.access_export import ExportFailed, ExportRefused, Order
    from central.access_export import export as run
    from central.catalog import CentralCatalog

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    catalog = CentralCatalog(database or data_dir / "central-catalog.db")
    order = Order(request_id, (dest1, dest2), person(), datetime.now(UTC))
    try:
        bags = run(catalog, data_dir, order)
    except ExportRefused as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    except (ExportFailed, OSError) as exc:
        click.echo(f"recdock-central: export stopped, no copy kept: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        catalog.close()
    for bag in bags:
        click.echo(str(bag))
