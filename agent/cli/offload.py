"""`recdock offload SOURCE`: offload one mounted recorder by hand."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import errors
from agent.cli.common import Ctx, pick_profile

if TYPE_CHECKING:
    from agent.offload import OffloadReport
from agent.errors import RecdockError
from agent.seams.signals import SignalRelay


@click.command("offload")
@click.argument("source", type=click.Path(path_type=Path, file_okay=False))
@click.option("--profile", "profile_name", help="Firmware profile to read the recorder with.")
@click.option(
    "--keep-source", is_flag=True, help="Leave every recording on the recorder after the copy."
)
@click.option("--serial", help="Device serial, for profiles that take it from USB (generic-msc).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def offload(
    c: Ctx,
    source: Path,
    profile_name: str | None,
    keep_source: bool,
    serial: str | None,
    as_json: bool,
) -> None:
    """Offload one mounted recorder (a folder) into the store.

    Exit 0 only when every media file on the recorder is verified in the store.
    """
    from agent.offload import Offloader

    stop = threading.Event()
    if not c.verbose:
        # one line per problem: what the report below prints is not logged again
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: not getattr(r, "recdock_reported", False))
    profile = pick_profile(c, source, profile_name)
    catalog = c.catalog()
    bar = None
    progress = None
    if sys.stdout.isatty() and not as_json:
        from agent.recorder.media import list_media

        media, _ = list_media(source, profile)
        total = sum(m.size for m in media)
        bar = click.progressbar(length=total, label="offloading", show_pos=False, width=30)
        bar.__enter__()
        progress = bar.update
    # SIGTERM (systemd stop, kill) is a clean stop: the file in flight is abandoned
    # (its temp file removed), what is verified is catalogued, the session ends. Set from
    # a relay thread, never in the handler itself (agent/seams/signals.py)
    relay = SignalRelay(stop.set, [signal.SIGTERM])
    try:
        report = Offloader(
            c.config,
            c.home,
            catalog,
            keep_source=True if keep_source else None,
            progress=progress,
            stop=stop,
        ).run(source, profile, serial=serial)
    finally:
        relay.close()
        if bar is not None:
            bar.__exit__(None, None, None)
    _print(report, as_json)
    for line in report.failures:
        click.echo(f"recdock: {line}", err=True)
    if not report.ok:
        # the error that stopped the offload decides: 73 store full, 69 recorder gone, 74 I/O
        stopped_by = report.exception
        code = stopped_by.exit_code if isinstance(stopped_by, RecdockError) else None
        sys.exit(code or errors.EXIT_FAILED)


def _print(report: OffloadReport, as_json: bool) -> None:
    d = report.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"session {report.session_id}: device {report.device_serial}: "
            f"{d['stored']} stored, {d['already']} already in the store, {d['failed']} failed, "
            f"{d['removed']} removed from the recorder"
            + (f" (kept: {report.source_kept_reason})" if report.source_kept_reason else "")
        )
        for late in d["late"]:
            click.echo(f"late: {late['source_path']}: {late['age_hours']} hours old at docking")
