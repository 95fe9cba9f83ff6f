"""The station's commands: `recdock run`, `recdock status`, `recdock simulate plug/unplug`.

Registered on the main group at the bottom of agent/cli.py.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from agent import errors
from agent.config import StationConfig
from agent.indicators import BayPins, IndicatorsConfig

log = logging.getLogger("recdock.station")

#: The station's embedded default under --simulate when no bays are configured:
#: four bays with single LEDs and a buzzer, on mock pins only.
SIMULATED_INDICATORS = IndicatorsConfig(
    bays={n: BayPins(led=pin) for n, pin in ((1, 17), (2, 27), (3, 22), (4, 23))}, buzzer=18
)


@click.command()
@click.option(
    "--simulate",
    is_flag=True,
    help="Use the simulated dock (recdock simulate plug/unplug), mock GPIO pins recorded to "
    "<home>/run/pins.jsonl, and a simulated NTP-synchronised clock. Never chosen silently.",
)
@click.pass_obj
def run_command(c: Any, simulate: bool) -> None:
    """Run the station daemon: detect, offload, check and show the verdict at each bay."""
    from agent.daemon import (
        Station,
        install_signal_handlers,
        recording_pin_factory,
        setup_station_logging,
    )
    from agent.indicators import IndicatorError, Indicators, make_pin_factory
    from agent.mount import Mounter
    from agent.services import configured_services

    config = c.config
    home: Path = c.home.resolve()  # mount points and the socket must not depend on the cwd
    home.mkdir(parents=True, exist_ok=True)
    setup_station_logging(logging.DEBUG if c.verbose > 1 else logging.INFO, home / "logs")
    profiles = c.profiles()
    mount_dir = config.station.mount_dir
    apply_firmware = None
    if simulate:
        from agent.clock import make_clock
        from agent.dock import SimulatedDock
        from agent.simulate import apply_firmware

        log.warning("SIMULATION (--simulate): simulated dock, mock GPIO, simulated clock")
        if not config.indicators.bays:
            config = config.model_copy(update={"indicators": SIMULATED_INDICATORS})
            log.info(
                "simulation: no [indicators.bays] configured: four simulated bays "
                "(mock LEDs on BCM 17, 27, 22, 23; mock buzzer on BCM 18)"
            )
        if mount_dir == StationConfig().mount_dir:
            mount_dir = home / "run" / "mnt"
            log.info("simulation: mounting virtual recorders under %s", mount_dir)
        pins = home / "run" / "pins.jsonl"
        pins.unlink(missing_ok=True)
        factory = recording_pin_factory(pins)
        clock = make_clock("simulated", synchronised=True)
        bays = set(config.bays.values()) | set(config.indicators.bays)
        dock: Any = SimulatedDock(home, bays)
    else:
        from agent.clock import make_clock
        from agent.dock import UdevDock

        try:
            factory = make_pin_factory(config.gpio.factory)
        except IndicatorError as exc:
            raise errors.ConfigError(str(exc)) from exc
        clock = make_clock("system")
        dock = UdevDock(config)
        profiles = profiles.for_real_dock()
    try:
        indicators = Indicators(config.indicators, factory)
    except IndicatorError as exc:
        raise errors.ConfigError(str(exc)) from exc
    station = Station(
        config,
        home,
        dock=dock,
        indicators=indicators,
        clock=clock,
        profiles=profiles,
        mounter=Mounter(mount_dir),
        simulate=simulate,
        apply_firmware=apply_firmware,
        services=configured_services(config, home),
    )
    with install_signal_handlers(station):
        code = station.run()
    sys.exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status_command(c: Any, as_json: bool) -> None:
    """Bays, docked recorders, their state and LED, last checks, sync backlog, open faults."""
    from agent.status import render, snapshot

    catalog = c.catalog(create=False)
    try:
        snap = snapshot(catalog, c.config, c.home)
    finally:
        catalog.close()
    if as_json:
        click.echo(json.dumps(snap, indent=2, ensure_ascii=False))
    else:
        click.echo(render(snap))


@click.command()
@click.argument("bay", type=click.IntRange(1, 64))
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--usb-id",
    default="1209:0001",
    show_default=True,
    help="USB VID:PID the virtual device presents (1209:0001 is the simulated recorder; "
    "anything else, e.g. 0781:5567, is a USB stick unless registered).",
)
@click.option("--serial", default=None, help="USB serial the virtual device presents.")
@click.pass_obj
def plug_command(c: Any, bay: int, source: Path, usb_id: str, serial: str | None) -> None:
    """Dock SOURCE (a recorder folder or FAT32 image) into BAY of a running simulated station."""
    from agent.dock import parse_usb_id, send_request

    parse_usb_id(usb_id)
    answer = send_request(
        c.home,
        {
            "op": "plug",
            "bay": bay,
            "source": str(source.resolve()),
            "usb_id": usb_id,
            "serial": serial,
        },
    )
    click.echo(answer.get("message", "plugged"))


@click.command()
@click.argument("bay", type=click.IntRange(1, 64))
@click.pass_obj
def unplug_command(c: Any, bay: int) -> None:
    """Pull the virtual recorder out of BAY of a running simulated station."""
    from agent.dock import send_request

    answer = send_request(c.home, {"op": "unplug", "bay": bay})
    click.echo(answer.get("message", "unplugged"))
