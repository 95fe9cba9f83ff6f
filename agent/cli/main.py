"""The `recdock` command line: the group, its error handling, and every command registered.

A user sees one clear line per problem, not a traceback; the log keeps the traceback (``-vv``
shows it). Exit codes are in agent/errors.py and docs/operations.md.

Start-up is kept short (`recdock status` on a Pi): this module and the command modules import
only click and the standard library at the top; each command imports what it uses when it runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from agent import errors
from agent.cli.common import Ctx
from agent.errors import RecdockError

log = logging.getLogger("recdock")


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


#: Every command: its name, and where it lives (module, object). A command's module is
#: imported only when that command runs or when help lists them all.
COMMANDS = {
    "offload": ("agent.cli.offload", "offload"),
    "check": ("agent.cli.check", "check_command"),
    "catalog": ("agent.cli.catalog", "catalog"),
    "verify": ("agent.cli.verify", "verify"),
    "enrol": ("agent.cli.enrol", "enrol"),
    "faults": ("agent.cli.faults", "faults"),
    "hold": ("agent.cli.hold", "hold"),
    "purge": ("agent.cli.purge", "purge_command"),
    "status": ("agent.cli.status", "status_command"),
    "run": ("agent.cli.run", "run_command"),
    "sync": ("agent.cli.sync", "sync_command"),
    "simulate": ("agent.cli.simulate", "simulate"),
    "doctor": ("agent.cli.doctor", "doctor_command"),
    "access": ("agent.cli.access", "access_group"),
    "export": ("agent.cli.export", "export_command"),
    "report": ("agent.cli.report", "report_command"),
}


class RecdockGroup(click.Group):
    """Turns RecdockError into one clear line and its exit code, and any other exception (a
    bug) into one line and exit 70; -vv logs the traceback. Loads each command's module
    when the command is used (click's lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, name = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)

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
    from agent.config import resolve_home

    setup_logging(verbose)
    ctx.obj = Ctx(resolve_home(home), config_path, verbose)


def main() -> None:
    cli(prog_name="recdock")


if __name__ == "__main__":
    main()
