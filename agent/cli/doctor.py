"""`recdock doctor`: a first-boot check of what the station needs (agent/station/doctor.py).

The real seams are chosen here: the gpiochip and the lgpio pins, udev, the system clock,
systemd, and probes of the configured broker and central store. Exit 0 when nothing the
station needs is missing, 1 when a line says FAIL (78 for an invalid configuration, before
any check runs).
"""

from __future__ import annotations

import sys
from typing import Any

import click


def real_seams() -> Any:
    from agent.seams.clock import make_clock
    from agent.seams.dock.udev import storage_ports
    from agent.seams.indicators.pins import gpiochips, probe_pins
    from agent.seams.units import systemd_booted, unit_properties
    from agent.station.doctor import DoctorSeams
    from sync.mqtt.probe import probe_broker
    from sync.upload.probe import probe_endpoint

    return DoctorSeams(
        gpiochips=gpiochips,
        probe_pins=probe_pins,
        storage_ports=storage_ports,
        clock=make_clock("system"),
        systemd_booted=systemd_booted,
        unit_properties=unit_properties,
        probe_broker=probe_broker,
        probe_centre=probe_endpoint,
    )


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def doctor_command(c: Any, as_json: bool) -> None:
    """Check what the station needs on this machine: the gpiochip and the configured pins, the
    USB ports mapped to bays, the store disk and its free space, the clock's NTP
    synchronisation, the signing key, the broker and the central store with the credentials
    given, and the systemd unit's watchdog. Each line says ok (or off), or FAIL and what to
    do; exit 0 when nothing is missing, 1 otherwise, 78 when the configuration is invalid."""
    from agent.config import config_file
    from agent.station.doctor import as_json as findings_json
    from agent.station.doctor import exit_code, render, run_checks

    explicit = click.get_current_context().find_root().params.get("config_path")
    findings = run_checks(c.config, config_file(explicit), c.home, real_seams())
    click.echo(findings_json(findings) if as_json else render(findings))
    sys.exit(exit_code(findings))
