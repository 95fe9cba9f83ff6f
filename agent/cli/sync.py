"""`recdock sync`: upload recordings without a central receipt to the central store."""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from agent import errors
from agent.cli.common import Ctx
from agent.seams.signals import SignalRelay


@click.command("sync")
@click.option(
    "--once",
    is_flag=True,
    help="Run one upload pass, print what happened and exit: 0 when nothing failed, "
    "69 when the central store is unreachable, 1 when a file failed or has no receipt.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: print the pass as JSON.")
@click.pass_obj
def sync_command(c: Ctx, once: bool, as_json: bool) -> None:
    """Upload recordings without a central receipt to the central store ([upload]).

    Late recordings go first; uploads resume where they stopped. Without --once,
    keep uploading until SIGTERM or Ctrl-C (the station daemon runs the same worker).
    """
    from sync.upload.worker import UploadWorker

    if not c.config.upload.enabled:
        raise errors.ConfigError(
            "uploads are off: set [upload] enabled = true and endpoint = the central store's "
            "tus URL in the configuration"
        )
    stop = threading.Event()
    worker = UploadWorker(c.config, c.home, stop=stop, catalog=c.catalog(create=False))
    # SIGTERM sets stop from a relay thread: the worker waits in stop.wait() on this thread,
    # and a handler setting it there could deadlock (agent/seams/signals.py)
    with SignalRelay(stop.set, [signal.SIGTERM]):
        if not once:
            try:
                worker.run_forever()
            except KeyboardInterrupt:
                stop.set()
            return
        summary = worker.run_once()
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    elif not summary["window_open"]:
        click.echo(
            f"outside the allowed upload hours ({c.config.upload.allowed_hours}): nothing "
            f"sent; the window opens in {summary['opens_in_s'] / 60:.0f} min; "
            f"{summary['remaining']} recordings wait"
        )
    else:
        for f in summary["files"]:
            if f["status"] != "synced":
                click.echo(f"{f['status']}: {f['store_path']}: {f['detail']}")
        click.echo(
            f"{summary['synced']} synced, {summary['unconfirmed']} without a receipt, "
            f"{summary['rejected']} rejected, {summary['failed']} failed, "
            f"{summary['set_aside']} set aside (open upload fault); "
            f"{summary['remaining']} not yet synced"
        )
    if summary["error"]:
        click.echo(f"recdock: {summary['error']}", err=True)
        sys.exit(errors.EXIT_UNAVAILABLE)
    if summary["failed"] or summary["rejected"] or summary["unconfirmed"]:
        sys.exit(errors.EXIT_FAILED)
