"""The `recdock` command line: the group, its error handling, and every command registered.

A user sees one clear line per problem, not a traceback; the log keeps the traceback (``-vv``
shows it). Exit codes are in agent/errors.py and docs/operations.md.

Start-up is kept short (`recdock status` on a Pi): this module and the command modules import
only click and the standard library at the top; each command imports what it uses when it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from agent import errors
from agent.cli.catalog import catalog
from agent.cli.check import check_command
from agent.cli.common import Ctx
from agent.cli.faults import faults
from agent.cli.offload import offload
from agent.cli.run import run_command
from agent.cli.simulate import simulate
from agent.cli.status import status_command
from agent.cli.sync import sync_command
from agent.cli.verify import verify
from agent.errors import RecdockError

log = logging.getLogger("recdock")


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class RecdockGroup(click.Group):
    """Turns RecdockError into one clear line and its exit code, and any other exception (a
    bug) into one line and exit 70; -vv logs the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RecdockError as exc:
            log.debug("error", exc_info=True)
            for line in str(exc).splitlines():
                click.echo(f"recdock: {line}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # the reader closed the pipe early (`recdock catalog --json | head -1`): end
            # quietly with 0, like coreutils (click alone would exit 1); stdout goes to
            # /dev/null so the flush at exit fails no more
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(errors.EXIT_OK)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: usage errors, --help, Ctrl-C at a prompt
        except Exception as exc:
            log.debug("unexpected error", exc_info=True)
            click.echo(
                f"recdock: unexpected error (a bug): {type(exc).__name__}: {exc}; run it again "
                "with -vv for the traceback and report it",
                err=True,
            )
            ctx.exit(errors.EXIT_SOFTWARE)


@click.group(cls=RecdockGroup)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Data folder: catalog, store, logs (default $RECDOCK_HOME or /var/lib/recdock).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration (default $RECDOCK_CONFIG, /etc/recdock/recdock.toml, "
    "else the embedded default).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, config_path: Path | None, verbose: int) -> None:
    """recdock: the station software for docking body-worn recorders."""
    from agent.config import load_config, resolve_home

    setup_logging(verbose)
    try:
        config = load_config(config_path)
    except RecdockError as exc:
        for line in str(exc).splitlines():
            click.echo(f"recdock: {line}", err=True)
        ctx.exit(exc.exit_code)
    ctx.obj = Ctx(resolve_home(home), config, verbose)


for command in (
    offload,
    check_command,
    catalog,
    verify,
    faults,
    status_command,
    run_command,
    sync_command,
    simulate,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="recdock")


if __name__ == "__main__":
    main()
