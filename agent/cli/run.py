"""`recdock run`: the station daemon, on real hardware or, with --simulate, on its fakes.

The seams are chosen here, explicitly, and passed into the station (rule 7,
docs/architecture.md): the udev dock, gpiozero's lgpio pins and the system clock; or, with
``--simulate``, the simulated dock, mock pins recorded to ``<home>/run/pins.jsonl`` and a
simulated, synchronised clock. The station logs at start-up which seam is which.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import errors
from agent.cli.common import Ctx

if TYPE_CHECKING:
    from agent.config import Config
    from agent.recorder.profiles import ProfileSet

log = logging.getLogger("recdock.station")


@dataclass
class Seams:
    """The station's hardware seams, chosen for this run."""

    config: Config
    profiles: ProfileSet
    dock: Any
    pin_factory: Any
    clock: Any
    mount_dir: Path
    apply_firmware: Any = None


def simulated_seams(config: Config, home: Path, profiles: ProfileSet) -> Seams:
    """The embedded default: the simulated dock, mock pins, a synchronised simulated clock.

    With no ``[indicators.bays]``, four bays with single LEDs and a buzzer, on mock pins only.
    """
    from agent.config import StationConfig
    from agent.config.indicators import BayPins, IndicatorsConfig
    from agent.recorder.simulated import apply_firmware
    from agent.seams.clock import make_clock
    from agent.seams.dock.simulated import SimulatedDock
    from agent.seams.indicators.mock import recording_pin_factory

    log.warning("SIMULATION (--simulate): simulated dock, mock GPIO, simulated clock")
    if not config.indicators.bays:
        four = {n: BayPins(led=pin) for n, pin in ((1, 17), (2, 27), (3, 22), (4, 23))}
        config = config.model_copy(update={"indicators": IndicatorsConfig(bays=four, buzzer=18)})
        log.info(
            "simulation: no [indicators.bays] configured: four simulated bays "
            "(mock LEDs on BCM 17, 27, 22, 23; mock buzzer on BCM 18)"
        )
    mount_dir = config.station.mount_dir
    if mount_dir == StationConfig().mount_dir:
        mount_dir = home / "run" / "mnt"
        log.info("simulation: mounting virtual recorders under %s", mount_dir)
    pins = home / "run" / "pins.jsonl"
    pins.unlink(missing_ok=True)
    bays = set(config.bays.values()) | set(config.indicators.bays)
    return Seams(
        config=config,
        profiles=profiles,
        dock=SimulatedDock(home, bays),
        pin_factory=recording_pin_factory(pins),
        clock=make_clock("simulated", synchronised=True),
        mount_dir=mount_dir,
        apply_firmware=apply_firmware,
    )


def real_seams(config: Config, profiles: ProfileSet) -> Seams:
    """udev, the configured GPIO pin factory, the system clock; no simulation-only profile."""
    from agent.errors import IndicatorError
    from agent.seams.clock import make_clock
    from agent.seams.dock.udev import UdevDock
    from agent.seams.indicators.pins import make_pin_factory

    try:
        factory = make_pin_factory(config.gpio.factory)
    except IndicatorError as exc:
        raise errors.ConfigError(str(exc)) from exc
    return Seams(
        config=config,
        profiles=profiles.for_real_dock(),
        dock=UdevDock(config),
        pin_factory=factory,
        clock=make_clock("system"),
        mount_dir=config.station.mount_dir,
    )


def station_sensors(simulate: bool, home: Path):  # -> agent.seams.health.Sensors
    """The station's own readings: simulated ones (<home>/run/sensors.json) with --simulate."""
    from agent.seams.health import make_sensors

    if simulate:
        return make_sensors("simulated", file=home / "run" / "sensors.json")
    return make_sensors("system", store=home / "store")


@click.command("run")
@click.option(
    "--simulate",
    is_flag=True,
    help="Use the simulated dock (recdock simulate plug/unplug), mock GPIO pins recorded to "
    "<home>/run/pins.jsonl, and a simulated NTP-synchronised clock. Never chosen silently.",
)
@click.pass_obj
def run_command(c: Ctx, simulate: bool) -> None:
    """Run the station daemon: detect, offload, check and show the verdict at each bay."""
    from agent.config import config_fingerprint
    from agent.errors import IndicatorError
    from agent.seams.indicators.devices import Indicators
    from agent.seams.mount import Mounter
    from agent.station.daemon import Station, install_signal_handlers
    from agent.station.logs import setup_station_logging
    from sync.services import configured_services

    fingerprint = config_fingerprint(c.config_path)  # before reading it: status compares
    home: Path = c.home.resolve()  # mount points and the socket must not depend on the cwd
    home.mkdir(parents=True, exist_ok=True)
    setup_station_logging(logging.DEBUG if c.verbose > 1 else logging.INFO, home / "logs")
    seams = (
        simulated_seams(c.config, home, c.profiles())
        if simulate
        else real_seams(c.config, c.profiles())
    )
    try:
        indicators = Indicators(seams.config.indicators, seams.pin_factory)
    except IndicatorError as exc:
        raise errors.ConfigError(str(exc)) from exc
    station = Station(
        seams.config,
        home,
        dock=seams.dock,
        indicators=indicators,
        clock=seams.clock,
        profiles=seams.profiles,
        mounter=Mounter(seams.mount_dir),
        simulate=simulate,
        apply_firmware=seams.apply_firmware,
        services=configured_services(seams.config, home, seams.clock),
        config_fingerprint=fingerprint,
        sensors=station_sensors(simulate, home),
    )
    with install_signal_handlers(station):
        code = station.run()
    sys.exit(code)
