"""`recdock doctor`: what a station needs, and whether this machine has it.

A first-boot check for a Raspberry Pi (docs/deployment.md): one line per need, each ``ok``, or
``FAIL`` with what to do, or ``off`` for a part the configuration switches off (a station works
without a broker or a central store; its outbox and store wait). Nothing here changes the
station: pins are claimed and released at once, the broker sees a connection that publishes
nothing, the central store a request for an upload that does not exist.

Everything that touches hardware or the network comes in through :class:`DoctorSeams`, so the
checks run the same on a Pi, on the emulated platform (scripts/test-arm64: no gpiochip, no
udev, no systemd) and in tests/test_doctor.py with fakes chosen there.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.config import Config
from agent.errors import EXIT_FAILED, EXIT_OK

Status = Literal["ok", "FAIL", "off"]
DEPLOYMENT = "docs/deployment.md"
UNIT = "recdock.service"
UNIT_FILE = Path("/etc/systemd/system/recdock.service")
UDEV_RULE = Path("/etc/udev/rules.d/99-recdock.rules")
GiB = 1024**3


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, its answer and, when not ok, what to do."""

    topic: str
    status: Status
    text: str
    todo: str = ""


@dataclass
class DoctorSeams:
    """Everything the checks ask the machine, each a seam of its own (agent/seams/) or a probe
    of the station's way out (sync/mqtt/probe.py, sync/upload/probe.py)."""

    gpiochips: Callable[[], list[str]]
    probe_pins: Callable[[str, list[int]], dict[int, str | None]]
    storage_ports: Callable[[], list[tuple[str, str]]]
    clock: Any
    systemd_booted: Callable[[], bool]
    unit_properties: Callable[[str], dict[str, str]]
    probe_broker: Callable[[Config], tuple[bool, str]]
    probe_centre: Callable[[Config], tuple[bool, str]]
    unit_file: Path = UNIT_FILE
    udev_rule: Path = UDEV_RULE
    monotonic: Callable[[], float] = field(default=time.monotonic)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing the station needs is missing (every line ``ok`` or ``off``), else 1."""
    return EXIT_FAILED if any(f.status == "FAIL" for f in findings) else EXIT_OK


def render(findings: list[Finding]) -> str:
    width = max((len(f.topic) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{f.status:<4}  {f.topic:<{width}}  {f.text}")
        if f.todo:
            lines.append(f"{'':<4}  {'':<{width}}  do: {f.todo}")
    return "\n".join(lines)


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False)


def run_checks(
    config: Config, config_file: Path | None, home: Path, seams: DoctorSeams
) -> list[Finding]:
    """Every check, in the order a recorder meets what it checks."""
    from agent.station.status import daemon_info

    running = daemon_info(home)
    return [
        check_config(config, config_file),
        *check_gpio(config, seams, running.get("pid") if running["running"] else None),
        *check_bays(config, seams),
        check_store(config, home),
        check_clock(seams.clock),
        check_signing_key(config, home),
        check_broker(config, seams.probe_broker),
        check_centre(config, seams.probe_centre),
        check_watchdog(seams),
    ]


# -- the configuration ---------------------------------------------------------------------------


def check_config(config: Config, config_file: Path | None) -> Finding:
    if config_file is None:
        return Finding(
            "config",
            "FAIL",
            "no configuration file: the embedded default has no bays and no register",
            f"write /etc/recdock/recdock.toml ({DEPLOYMENT}, step 4)",
        )
    bays = len(set(config.bays.values()) | set(config.indicators.bays))
    return Finding(
        "config",
        "ok",
        f"{config_file}: station {config.station_id}, {bays} bay(s), "
        f"{len(config.devices)} registered recorder(s)",
    )


# -- GPIO: the gpiochip and the configured pins --------------------------------------------------


def configured_pins(config: Config) -> dict[int, str]:
    """BCM pin -> what it drives, from ``[indicators]``."""
    pins = {
        pin: f"bay {bay} {role}"
        for bay, bay_pins in sorted(config.indicators.bays.items())
        for role, pin in bay_pins.pins().items()
    }
    if config.indicators.buzzer is not None:
        pins[config.indicators.buzzer] = "buzzer"
    return pins


def check_gpio(config: Config, seams: DoctorSeams, station_pid: int | None = None) -> list[Finding]:
    """The gpiochip, then a claim of each configured pin; a pin a running station holds
    (``station_pid``) is as it should be."""
    from agent.errors import IndicatorError

    kind = config.gpio.factory
    if kind == "mock":
        return [
            Finding(
                "gpio",
                "FAIL",
                '[gpio] factory = "mock": the LEDs and the buzzer drive nothing',
                'set [gpio] factory = "lgpio" on a station',
            )
        ]
    chips = seams.gpiochips()
    if not chips:
        return [
            Finding(
                "gpio",
                "FAIL",
                "no /dev/gpiochip*: no GPIO here (not a Raspberry Pi, or its GPIO driver is "
                "not loaded); the pins are not checked",
                "run the station on a Raspberry Pi 4 or 5 with Raspberry Pi OS Bookworm",
            )
        ]
    found = [Finding("gpio", "ok", f"{', '.join(chips)}; pin factory {kind}")]
    pins = configured_pins(config)
    if not pins:
        return [
            *found,
            Finding(
                "pins",
                "FAIL",
                "no bay LED and no buzzer configured: no bay shows its state",
                f"set [indicators.bays.N] led = <BCM pin> ({DEPLOYMENT}, steps 4 and 5)",
            ),
        ]
    try:
        answers = seams.probe_pins(kind, sorted(pins))
    except IndicatorError as exc:
        return [*found, Finding("pins", "FAIL", str(exc), "see docs/indicators.md")]
    return [*found, _pins_finding(pins, answers, station_pid)]


def _pins_finding(
    pins: dict[int, str], answers: dict[int, str | None], station_pid: int | None
) -> Finding:
    busy = {pin: why for pin, why in answers.items() if why is not None}
    named = ", ".join(f"{pin} ({pins[pin]})" for pin in sorted(pins))
    if not busy:
        return Finding("pins", "ok", f"BCM {named}: each can be claimed")
    if station_pid is not None:
        return Finding("pins", "ok", f"BCM {named}: in use, the station runs (pid {station_pid})")
    why = "; ".join(f"{pin} ({pins[pin]}): {why}" for pin, why in sorted(busy.items()))
    return Finding(
        "pins",
        "FAIL",
        f"BCM {why}",
        "another program holds the pin (`gpioinfo` shows which), or the pin number is wrong",
    )


# -- the USB ports mapped to bays ----------------------------------------------------------------


def check_bays(config: Config, seams: DoctorSeams) -> list[Finding]:
    return [_mapping_finding(config), _ports_finding(config, seams)]


def _mapping_finding(config: Config) -> Finding:
    ported = set(config.bays.values())
    lit = set(config.indicators.bays)
    if not ported:
        return Finding(
            "bays",
            "FAIL",
            "no USB port is mapped to a bay ([bays] is empty): no recorder shows on a bay's LED",
            "dock a recorder in each bay, read its port with `udevadm info -q property -n "
            f"/dev/sda1 | grep ID_PATH=` and add it to [bays] ({DEPLOYMENT}, step 4)",
        )
    problems = [f"bay {n} has a USB port but no LED" for n in sorted(ported - lit)]
    problems += [f"bay {n} has an LED but no USB port" for n in sorted(lit - ported)]
    if problems:
        return Finding(
            "bays", "FAIL", "; ".join(problems), "give every bay both, in [bays] and [indicators]"
        )
    return Finding("bays", "ok", f"{len(ported)} USB port(s) mapped to bays {sorted(ported)}")


def _ports_finding(config: Config, seams: DoctorSeams) -> Finding:
    from agent.seams.dock import DockError

    if not seams.udev_rule.is_file():
        return Finding(
            "usb",
            "FAIL",
            f"{seams.udev_rule} is not installed: other programs may mount a docked recorder",
            f"install systemd/99-recdock.rules there ({DEPLOYMENT}, step 3)",
        )
    try:
        present = seams.storage_ports()
    except DockError as exc:
        return Finding("usb", "FAIL", str(exc), "the station needs udev (systemd-udevd) and /sys")
    if not present:
        return Finding(
            "usb",
            "ok",
            "udev answers; no USB disk is docked now, so no port was seen",
            "",
        )
    unmapped = [f"{node} at {port}" for port, node in present if port not in config.bays]
    seen = ", ".join(
        f"{node} -> bay {config.bays[port]}" for port, node in present if port in config.bays
    )
    if unmapped:
        return Finding(
            "usb",
            "FAIL",
            f"docked in no bay: {'; '.join(unmapped)}" + (f" (mapped: {seen})" if seen else ""),
            "add each port to [bays] (its ID_PATH, as printed)",
        )
    return Finding("usb", "ok", f"udev sees {seen}")


# -- the store disk and its free space -----------------------------------------------------------


def mount_of(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[str, str, str]:
    """(mount point, file system type, source) of the mount holding ``path``."""
    best = ("/", "?", "?")
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return best
    target = str(path)
    for line in lines:
        left, _, right = line.partition(" - ")
        point = left.split()[4].replace("\\040", " ")
        fstype, source = (right.split() + ["?", "?"])[:2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype, source)
    return best


def _xattrs_work(folder: Path) -> bool:
    probe = folder / f".recdock-doctor-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        os.setxattr(probe, "user.recdock.doctor", b"1")
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        probe.unlink(missing_ok=True)


def check_store(config: Config, home: Path) -> Finding:
    store = home / "store"
    if not store.is_dir():
        return Finding(
            "store",
            "FAIL",
            f"{store} does not exist",
            f"systemd-tmpfiles --create /etc/tmpfiles.d/recdock.conf ({DEPLOYMENT}, step 3)",
        )
    point, fstype, source = mount_of(store.resolve())
    st = os.statvfs(store)
    free = st.f_bavail * st.f_frsize
    reserve = config.store.reserve_bytes
    where = f"{store} on {source} ({fstype}, mounted at {point})"
    if free <= reserve:
        return Finding(
            "store",
            "FAIL",
            f"{where}: {free / GiB:.1f} GiB free, at or below the reserve of "
            f"{reserve / GiB:.1f} GiB: offloads stop",
            "give the store a larger disk, or lower store.reserve_bytes",
        )
    try:
        xattrs = _xattrs_work(home)
    except OSError as exc:
        return Finding("store", "FAIL", f"{home} is not writable: {exc}", "run as root")
    note = "" if xattrs else "; no extended attributes (a cut name is not kept after a crash)"
    return Finding(
        "store",
        "ok",
        f"{where}: {free / GiB:.1f} GiB free above a reserve of {reserve / GiB:.1f} GiB{note}",
    )


# -- the clock -----------------------------------------------------------------------------------


def check_clock(clock: Any) -> Finding:
    if clock.synchronised():
        return Finding("clock", "ok", clock.describe())
    return Finding(
        "clock",
        "FAIL",
        f"{clock.describe()}: recorders' clocks will not be set",
        "point systemd-timesyncd at your NTP servers (/etc/systemd/timesyncd.conf, NTP=...) "
        f"and check `timedatectl` ({DEPLOYMENT}, step 1)",
    )


# -- the broker and the central store ------------------------------------------------------------


def check_signing_key(config: Config, home: Path) -> Finding:
    """The key that signs every message: the station does not start its link without it."""
    from agent.config.keys import load_signing_key, signing_key_path
    from agent.errors import ConfigError

    if not config.mqtt.enabled:
        return Finding("signing", "off", "[mqtt] enabled = false: nothing is published")
    path = signing_key_path(config.mqtt, home)
    if not path.exists():
        return Finding(
            "signing",
            "FAIL",
            f"no signing key at {path}: the station would not start its MQTT link",
            f"sudo /opt/recdock/venv/bin/recdock enrol, and enrol the public key it prints at "
            f"the centre ({DEPLOYMENT}, step 5)",
        )
    try:
        load_signing_key(path)
    except ConfigError as exc:
        return Finding("signing", "FAIL", str(exc), f"fix the key as said ({DEPLOYMENT}, step 5)")
    return Finding(
        "signing", "ok", f"{path}: Ed25519, owner only (`recdock enrol` shows its public key)"
    )


def check_broker(config: Config, probe: Callable[[Config], tuple[bool, str]]) -> Finding:
    mqtt = config.mqtt
    if not mqtt.enabled:
        return Finding(
            "mqtt",
            "off",
            "[mqtt] enabled = false: events and faults wait in the outbox; "
            "the centre hears nothing",
        )
    ok, detail = probe(config)
    where = f"{mqtt.host}:{mqtt.port}"
    if ok:
        return Finding("mqtt", "ok", f"{where}: {detail}")
    return Finding(
        "mqtt",
        "FAIL",
        f"{where}: {detail}",
        "check [mqtt] host and port, [mqtt.tls] ca_file, cert_file and key_file (the "
        "station's certificate from the centre's CA), or username and the mqtt-password "
        "credential (docs/mqtt.md)",
    )


def check_centre(config: Config, probe: Callable[[Config], tuple[bool, str]]) -> Finding:
    upload = config.upload
    if not upload.enabled:
        return Finding(
            "centre",
            "off",
            "[upload] enabled = false: recordings stay only in the station's store",
        )
    ok, detail = probe(config)
    if ok:
        return Finding("centre", "ok", f"{upload.endpoint}: {detail}")
    return Finding(
        "centre",
        "FAIL",
        f"{upload.endpoint}: {detail}",
        "check [upload] endpoint and ca_file, and the token (or the upload-token credential)",
    )


# -- the systemd unit's watchdog -----------------------------------------------------------------


def unit_file_settings(path: Path) -> dict[str, str]:
    """``Key=value`` settings of a unit file's ``[Service]`` section (last one wins)."""
    settings: dict[str, str] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def check_watchdog(seams: DoctorSeams) -> Finding:
    if not seams.unit_file.is_file():
        return Finding(
            "watchdog",
            "FAIL",
            f"{seams.unit_file} is not installed",
            f"install systemd/recdock.service there ({DEPLOYMENT}, step 3)",
        )
    settings = unit_file_settings(seams.unit_file)
    watchdog = settings.get("WatchdogSec", "")
    if settings.get("Type") != "notify" or watchdog in ("", "0", "infinity"):
        return Finding(
            "watchdog",
            "FAIL",
            f"{seams.unit_file}: Type={settings.get('Type', '?')}, WatchdogSec={watchdog or '?'}: "
            "a hung station would not be restarted",
            "install the unit from systemd/recdock.service (Type=notify, WatchdogSec=30)",
        )
    if not seams.systemd_booted():
        return Finding(
            "watchdog",
            "FAIL",
            f"{seams.unit_file} has WatchdogSec={watchdog}, but systemd is not running here "
            "(not PID 1): the unit and its watchdog cannot run",
            "run the station on a system booted with systemd (Raspberry Pi OS is)",
        )
    return _live_watchdog(seams, watchdog)


def _live_watchdog(seams: DoctorSeams, watchdog: str) -> Finding:
    props = seams.unit_properties(UNIT)
    state = props.get("ActiveState", "unknown")
    configured = f"WatchdogSec={watchdog}"
    if state != "active":
        return Finding(
            "watchdog",
            "ok",
            f"{UNIT} installed ({configured}), {state}, {props.get('UnitFileState', '?')}",
            "" if state == "inactive" else "see `systemctl status recdock`",
        )
    last = int(props.get("WatchdogTimestampMonotonic", "0") or 0)
    if last == 0:
        return Finding(
            "watchdog",
            "FAIL",
            f"{UNIT} is active ({configured}) but has not pinged its watchdog",
            "see `journalctl -u recdock`",
        )
    ago = seams.monotonic() - last / 1e6
    return Finding("watchdog", "ok", f"{UNIT} active ({configured}), last ping {ago:.0f} s ago")
