"""`recdock check SOURCE`: the pre-shift checks on one mounted recorder, by hand.

Registered in agent/cli/main.py. Prints every check with its value and threshold and
exits 0 only when the recorder is ready (1 when it is not). The result is stored
in the catalog like a check at a bay (checks row, audit entry, health message).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import errors

if TYPE_CHECKING:
    from agent.checks import CheckReport
    from agent.cli.common import Ctx

SIM_CLOCK_CHOICES = ("synchronised", "unsynchronised")


@click.command("check")
@click.argument("source", type=click.Path(path_type=Path, file_okay=False))
@click.option("--profile", "profile_name", help="Firmware profile to read the recorder with.")
@click.option("--serial", help="Device serial, for profiles that take it from USB (generic-msc).")
@click.option(
    "--read-only",
    is_flag=True,
    help="Never write to the recorder: the clock offset is measured but not set.",
)
@click.option(
    "--simulated-station-clock",
    "simulated_clock",
    type=click.Choice(SIM_CLOCK_CHOICES),
    default=None,
    help="TESTING ONLY: use a simulated station clock that claims to be synchronised or "
    "unsynchronised, instead of the real, NTP-checked system clock. Never on a real station: "
    "a 'synchronised' simulated clock sets recorder clocks from an unchecked time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def check_command(
    c: Ctx,
    source: Path,
    profile_name: str | None,
    serial: str | None,
    read_only: bool,
    simulated_clock: str | None,
    as_json: bool,
) -> None:
    """Pre-shift checks on one mounted recorder (battery, storage, clock, firmware, offload).

    Prints every check with its value and threshold. When the station clock is
    NTP-synchronised and SOURCE is writable, a recorder clock beyond the tolerance is
    set (re-dock the recorder to confirm it). Exit 0 only when the recorder is ready.
    """
    from agent.checks import record_checks, run_checks
    from agent.cli.common import pick_profile
    from agent.recorder.status import RecorderInfo
    from agent.seams.clock import make_clock

    if not source.is_dir():
        raise errors.RecorderGoneError(f"{source}: no such folder (is the recorder mounted?)")
    profile = pick_profile(c, source, profile_name)
    if simulated_clock is None:
        clock = make_clock("system")
    else:
        clock = make_clock("simulated", synchronised=simulated_clock == "synchronised")
        click.echo(f"recdock: using a {clock.describe()}", err=True)
    catalog = c.catalog()
    info = RecorderInfo(serial=serial, profile=profile.name) if serial else None
    writable = not read_only and os.access(source, os.W_OK)
    report = run_checks(
        source, profile, c.config, clock=clock, info=info, writable=writable, catalog=catalog
    )
    if report.device_serial:
        record_checks(
            catalog, report, device_serial=report.device_serial, session_id=None, bay=None
        )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(report, source)
    if not report.ready:
        sys.exit(errors.EXIT_FAILED)


def print_report(report: CheckReport, source: Path) -> None:
    click.echo(f"recorder {report.device_serial or '(serial unknown)'} at {source}")
    click.echo(f"station clock: {report.station_clock}")
    w_value = max(len(r.value) for r in report.results)
    w_thr = max(len(r.threshold) for r in report.results)
    for r in report.results:
        line = f"{r.name:<9} {r.state:<8} {r.value:<{w_value}}  {r.threshold:<{w_thr}}"
        click.echo(f"{line}  {r.detail}".rstrip())
    for x in report.late:
        age = f"{x['age_hours']:.1f} hours" if x["age_hours"] is not None else "unknown age"
        click.echo(f"late: {x['source_path']}: {age} old at docking")
    if report.ready:
        click.echo("READY")
    else:
        click.echo("NOT READY: " + "; ".join(report.reasons))
