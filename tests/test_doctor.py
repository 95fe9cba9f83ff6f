"""`recdock doctor`: what each line says with its seam present and absent, and the exit code.

The hardware seams are faked here, explicitly, where this machine has no such hardware (a
gpiochip, USB disks, systemd as PID 1); the real seam functions are shown answering for what
is absent. The broker and the central store are real: a Mosquitto on loopback, and the
reference central store served by uvicorn.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from agent.config import Config, GpioConfig
from agent.config.indicators import BayPins, IndicatorsConfig
from agent.config.links import MqttConfig, UploadConfig
from agent.errors import IndicatorError
from agent.seams.clock.simulated import SimulatedClock
from agent.seams.dock import DockError
from agent.station import doctor
from agent.station.doctor import DoctorSeams, Finding, exit_code, render, run_checks
from tests.mosquitto import MOSQUITTO

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None and not os.environ.get("CI"), reason="mosquitto not installed"
)
REPO = Path(__file__).resolve().parent.parent
PORT1 = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1:1.0-scsi-0:0:0:0"
PORT2 = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-scsi-0:0:0:0"


def station_config(**update: object) -> Config:
    """Two bays, each with a port and an LED, a buzzer, the lgpio factory."""
    base = Config(
        bays={PORT1: 1, PORT2: 2},
        indicators=IndicatorsConfig(bays={1: BayPins(led=17), 2: BayPins(led=27)}, buzzer=18),
    )
    return base.model_copy(update=update)


def healthy_seams(tmp_path: Path, **over: object) -> DoctorSeams:
    """Every seam present and answering well (fakes, chosen here)."""
    unit = tmp_path / "recdock.service"
    shutil.copy(REPO / "systemd" / "recdock.service", unit)
    rule = tmp_path / "99-recdock.rules"
    rule.write_text("# the rule\n")
    seams = DoctorSeams(
        gpiochips=lambda: ["/dev/gpiochip0"],
        probe_pins=lambda kind, pins: dict.fromkeys(pins),
        storage_ports=lambda: [],
        clock=SimulatedClock(synchronised=True),
        systemd_booted=lambda: True,
        unit_properties=lambda unit: {
            "ActiveState": "active",
            "UnitFileState": "enabled",
            "WatchdogTimestampMonotonic": str(95 * 10**6),
        },
        probe_broker=lambda config: (True, "accepted"),
        probe_centre=lambda config: (True, "token accepted"),
        unit_file=unit,
        udev_rule=rule,
        monotonic=lambda: 100.0,
    )
    for name, value in over.items():
        setattr(seams, name, value)
    return seams


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / "store").mkdir(parents=True)
    return tmp_path / "home"


def by_topic(findings: list[Finding]) -> dict[str, Finding]:
    return {f.topic: f for f in findings}


# -- the whole report and its exit code ----------------------------------------------------------


def test_everything_present_is_all_ok_and_exit_0(tmp_path: Path, home: Path) -> None:
    findings = run_checks(
        station_config(), tmp_path / "recdock.toml", home, healthy_seams(tmp_path)
    )
    assert [f.topic for f in findings] == [
        "config",
        "gpio",
        "pins",
        "bays",
        "usb",
        "store",
        "clock",
        "signing",
        "mqtt",
        "centre",
        "watchdog",
    ]
    assert [f.topic for f in findings if f.status != "ok"] == ["signing", "mqtt", "centre"]  # off
    assert exit_code(findings) == 0


def test_one_failing_line_makes_exit_1_and_says_what_to_do(tmp_path: Path, home: Path) -> None:
    seams = healthy_seams(tmp_path, clock=SimulatedClock(synchronised=False))
    findings = run_checks(station_config(), tmp_path / "recdock.toml", home, seams)
    assert exit_code(findings) == 1
    clock = by_topic(findings)["clock"]
    assert clock.status == "FAIL" and "not synchronised" in clock.text
    assert "timedatectl" in clock.todo
    text = render(findings)
    assert "FAIL  clock" in text and "do: point systemd-timesyncd" in text


def test_the_cli_exits_0_when_nothing_is_missing(tmp_path: Path, home: Path, monkeypatch) -> None:
    import agent.cli.doctor

    monkeypatch.setattr(agent.cli.doctor, "real_seams", lambda: healthy_seams(tmp_path))
    config = tmp_path / "recdock.toml"
    config.write_text(
        f'[bays]\n"{PORT1}" = 1\n[indicators]\nbuzzer = 18\n[indicators.bays.1]\nled = 17\n'
    )
    args = ["--home", str(home), "--config", str(config), "doctor", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = json.loads(result.stdout)
    assert {line["status"] for line in lines} == {"ok", "off"}
    assert lines[0]["text"].startswith(str(config))


def test_the_cli_on_this_machine_answers_for_what_is_absent(tmp_path: Path, home: Path) -> None:
    """The real seams on a machine without a gpiochip: a line for each, exit 1, no crash."""
    result = CliRunner().invoke(cli, ["--home", str(home), "doctor"])
    assert result.exit_code == 1, result.output
    topics = ("config", "gpio", "bays", "usb", "store", "clock", "signing", "mqtt", "centre")
    for topic in (*topics, "watchdog"):
        assert f"  {topic}" in result.stdout, topic


def test_an_invalid_config_is_exit_78_before_any_check(tmp_path: Path) -> None:
    bad = tmp_path / "recdock.toml"
    bad.write_text("[gpio]\nfactroy = 'lgpio'\n")
    result = CliRunner().invoke(cli, ["--config", str(bad), "doctor"])
    assert result.exit_code == 78, result.output


# -- config --------------------------------------------------------------------------------------


def test_no_config_file_is_a_failure(tmp_path: Path) -> None:
    f = doctor.check_config(Config(), None)
    assert f.status == "FAIL" and "step 4" in f.todo
    f = doctor.check_config(station_config(), tmp_path / "recdock.toml")
    assert f.status == "ok" and "2 bay(s)" in f.text


# -- gpio and pins -------------------------------------------------------------------------------


def test_gpio_without_a_gpiochip(tmp_path: Path) -> None:
    seams = healthy_seams(tmp_path, gpiochips=lambda: [])
    [f] = doctor.check_gpio(station_config(), seams)
    assert f.status == "FAIL" and "no /dev/gpiochip*" in f.text


def test_gpio_with_a_gpiochip_claims_every_configured_pin(tmp_path: Path) -> None:
    asked: list[tuple[str, list[int]]] = []

    def probe(kind: str, pins: list[int]) -> dict[int, str | None]:
        asked.append((kind, pins))
        return dict.fromkeys(pins)

    gpio, pins = doctor.check_gpio(station_config(), healthy_seams(tmp_path, probe_pins=probe))
    assert gpio.status == "ok" and "/dev/gpiochip0" in gpio.text
    assert asked == [("lgpio", [17, 18, 27])]
    assert pins.status == "ok"
    assert "17 (bay 1 led)" in pins.text and "18 (buzzer)" in pins.text


def test_a_busy_pin_is_named_with_what_to_do(tmp_path: Path) -> None:
    def probe(kind: str, pins: list[int]) -> dict[int, str | None]:
        return {p: ("error: 'GPIO busy'" if p == 27 else None) for p in pins}

    _, pins = doctor.check_gpio(station_config(), healthy_seams(tmp_path, probe_pins=probe))
    assert pins.status == "FAIL" and "27 (bay 2 led): error: 'GPIO busy'" in pins.text
    assert "gpioinfo" in pins.todo


def test_pins_held_by_the_running_station_are_as_they_should_be(tmp_path: Path, home: Path) -> None:
    def probe(kind: str, pins: list[int]) -> dict[int, str | None]:
        return dict.fromkeys(pins, "error: 'GPIO busy'")

    (home / "run").mkdir()
    (home / "run" / "station.json").write_text(json.dumps({"pid": os.getpid()}))
    seams = healthy_seams(tmp_path, probe_pins=probe)
    pins = by_topic(run_checks(station_config(), None, home, seams))["pins"]
    assert pins.status == "ok" and f"the station runs (pid {os.getpid()})" in pins.text


def test_a_factory_that_cannot_be_made_is_a_failure(tmp_path: Path) -> None:
    def probe(kind: str, pins: list[int]) -> dict[int, str | None]:
        raise IndicatorError("no GPIO found (lgpio pin factory failed: ...)")

    _, pins = doctor.check_gpio(station_config(), healthy_seams(tmp_path, probe_pins=probe))
    assert pins.status == "FAIL" and "no GPIO found" in pins.text


def test_the_mock_factory_and_no_pins_are_failures(tmp_path: Path) -> None:
    [f] = doctor.check_gpio(
        station_config(gpio=GpioConfig(factory="mock")), healthy_seams(tmp_path)
    )
    assert f.status == "FAIL" and 'factory = "lgpio"' in f.todo
    _, pins = doctor.check_gpio(Config(), healthy_seams(tmp_path))
    assert pins.status == "FAIL" and "no bay LED" in pins.text


def test_the_real_gpio_seam_functions(tmp_path: Path) -> None:
    from agent.seams.indicators.pins import gpiochips, probe_pins

    assert gpiochips(tmp_path) == []
    (tmp_path / "gpiochip0").touch()
    (tmp_path / "gpiochip4").touch()
    assert gpiochips(tmp_path) == [str(tmp_path / "gpiochip0"), str(tmp_path / "gpiochip4")]
    # the mock pins, chosen explicitly: every pin can be claimed
    assert probe_pins("mock", [17, 27]) == {17: None, 27: None}


@pytest.mark.skipif(bool(list(Path("/dev").glob("gpiochip*"))), reason="this machine has GPIO")
def test_the_real_lgpio_factory_without_a_gpiochip_says_so() -> None:
    from agent.seams.indicators.pins import probe_pins

    with pytest.raises(IndicatorError, match="no GPIO found"):
        probe_pins("lgpio", [17])


# -- bays and USB ports --------------------------------------------------------------------------


def test_bays_need_a_port_and_an_led_each(tmp_path: Path) -> None:
    seams = healthy_seams(tmp_path)
    mapping, _ = doctor.check_bays(Config(), seams)
    assert mapping.status == "FAIL" and "[bays] is empty" in mapping.text
    assert "ID_PATH" in mapping.todo
    lopsided = station_config(indicators=IndicatorsConfig(bays={1: BayPins(led=17)}))
    mapping, _ = doctor.check_bays(lopsided, seams)
    assert mapping.status == "FAIL" and "bay 2 has a USB port but no LED" in mapping.text
    mapping, _ = doctor.check_bays(station_config(), seams)
    assert mapping.status == "ok" and "bays [1, 2]" in mapping.text


def test_docked_disks_are_shown_with_their_bay(tmp_path: Path) -> None:
    def ports() -> list[tuple[str, str]]:
        return [(PORT1, "/dev/sda1"), ("pci-0000:00:14.0-usb-0:9:1.0-scsi-0:0:0:0", "/dev/sdb1")]

    _, usb = doctor.check_bays(station_config(), healthy_seams(tmp_path, storage_ports=ports))
    assert usb.status == "FAIL"
    assert "/dev/sdb1 at pci-0000:00:14.0-usb-0:9" in usb.text
    assert "/dev/sda1 -> bay 1" in usb.text
    _, usb = doctor.check_bays(
        station_config(), healthy_seams(tmp_path, storage_ports=lambda: [(PORT2, "/dev/sda1")])
    )
    assert usb.status == "ok" and "/dev/sda1 -> bay 2" in usb.text
    _, usb = doctor.check_bays(station_config(), healthy_seams(tmp_path))
    assert usb.status == "ok" and "no USB disk is docked" in usb.text


def test_usb_without_udev_or_without_the_rule(tmp_path: Path) -> None:
    def no_udev() -> list[tuple[str, str]]:
        raise DockError("no /run/udev/data: udev (systemd-udevd) is not running")

    _, usb = doctor.check_bays(station_config(), healthy_seams(tmp_path, storage_ports=no_udev))
    assert usb.status == "FAIL" and "udev (systemd-udevd) is not running" in usb.text
    seams = healthy_seams(tmp_path, udev_rule=tmp_path / "absent.rules")
    _, usb = doctor.check_bays(station_config(), seams)
    assert usb.status == "FAIL" and "is not installed" in usb.text


def test_the_real_udev_seam_without_sysfs_or_udev(tmp_path: Path) -> None:
    from agent.seams.dock.udev import storage_ports

    with pytest.raises(DockError, match="no USB bus"):
        storage_ports(sys_dir=tmp_path)
    (tmp_path / "bus" / "usb").mkdir(parents=True)
    with pytest.raises(DockError, match="udev"):
        storage_ports(sys_dir=tmp_path, udev_data=tmp_path / "udev-data")


# -- the store -----------------------------------------------------------------------------------


def test_the_store_with_room(home: Path) -> None:
    f = doctor.check_store(Config(), home)
    assert f.status == "ok" and "GiB free above a reserve of 1.0 GiB" in f.text
    assert str(home / "store") in f.text


def test_the_store_at_its_reserve(home: Path) -> None:
    free = os.statvfs(home).f_bavail * os.statvfs(home).f_frsize
    f = doctor.check_store(Config(store={"reserve_bytes": free + 2**30}), home)
    assert f.status == "FAIL" and "offloads stop" in f.text


def test_no_store_folder_says_how_to_make_it(tmp_path: Path) -> None:
    f = doctor.check_store(Config(), tmp_path / "nowhere")
    assert f.status == "FAIL" and "systemd-tmpfiles --create" in f.todo


def test_the_mount_holding_a_path(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw\n"
        "40 22 8:1 / /var/lib/recdock/store rw,relatime shared:2 - ext4 /dev/sda1 rw\n"
        "41 22 0:5 / /var/lib/recdock/store2 rw - tmpfs tmpfs rw\n"
    )
    point, fstype, source = doctor.mount_of(Path("/var/lib/recdock/store/2024"), info)
    assert (point, fstype, source) == ("/var/lib/recdock/store", "ext4", "/dev/sda1")
    assert doctor.mount_of(Path("/var/lib/recdock"), info)[2] == "/dev/mmcblk0p2"


# -- the clock -----------------------------------------------------------------------------------


def test_the_clock_synchronised_or_not() -> None:
    assert doctor.check_clock(SimulatedClock(synchronised=True)).status == "ok"
    f = doctor.check_clock(SimulatedClock(synchronised=False))
    assert f.status == "FAIL" and "recorders' clocks will not be set" in f.text


# -- the systemd unit's watchdog -----------------------------------------------------------------


def test_the_watchdog_of_a_running_station(tmp_path: Path) -> None:
    f = doctor.check_watchdog(healthy_seams(tmp_path))
    assert f.status == "ok" and "WatchdogSec=30" in f.text and "last ping 5 s ago" in f.text


def test_a_station_that_never_pinged_is_a_failure(tmp_path: Path) -> None:
    props = {"ActiveState": "active", "WatchdogTimestampMonotonic": "0"}
    f = doctor.check_watchdog(healthy_seams(tmp_path, unit_properties=lambda unit: props))
    assert f.status == "FAIL" and "has not pinged" in f.text


def test_an_installed_station_not_started_yet(tmp_path: Path) -> None:
    props = {"ActiveState": "inactive", "UnitFileState": "enabled"}
    f = doctor.check_watchdog(healthy_seams(tmp_path, unit_properties=lambda unit: props))
    assert f.status == "ok" and "inactive, enabled" in f.text


def test_the_watchdog_without_systemd_or_without_the_unit(tmp_path: Path) -> None:
    f = doctor.check_watchdog(healthy_seams(tmp_path, systemd_booted=lambda: False))
    assert f.status == "FAIL" and "not PID 1" in f.text and "WatchdogSec=30" in f.text
    f = doctor.check_watchdog(healthy_seams(tmp_path, unit_file=tmp_path / "absent.service"))
    assert f.status == "FAIL" and "is not installed" in f.text
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nType=simple\nExecStart=/bin/true\n")
    f = doctor.check_watchdog(healthy_seams(tmp_path, unit_file=bare))
    assert f.status == "FAIL" and "would not be restarted" in f.text


def test_the_real_systemd_seam_functions(tmp_path: Path) -> None:
    from agent.seams.units import systemd_booted, unit_properties

    assert systemd_booted(tmp_path / "absent") is False
    (tmp_path / "system").mkdir()
    assert systemd_booted(tmp_path / "system") is True
    if not Path("/run/systemd/system").is_dir():  # systemctl without systemd: no answer
        assert unit_properties("recdock.service") == {}


# -- the signing key -----------------------------------------------------------------------------


def test_the_signing_key_absent_unsafe_and_made_by_enrol(home: Path) -> None:
    from agent.config.keys import create_signing_key

    assert doctor.check_signing_key(Config(), home).status == "off"
    config = Config(mqtt=MqttConfig(enabled=True, host="broker.example"))
    f = doctor.check_signing_key(config, home)
    assert f.status == "FAIL" and str(home / "signing-key") in f.text
    assert "recdock enrol" in f.todo and "step 5" in f.todo
    create_signing_key(home / "signing-key")
    f = doctor.check_signing_key(config, home)
    assert f.status == "ok" and "Ed25519" in f.text
    (home / "signing-key").chmod(0o644)  # others may read it: the station refuses it
    f = doctor.check_signing_key(config, home)
    assert f.status == "FAIL" and "signing-key" in f.text


# -- the broker, for real ------------------------------------------------------------------------


@needs_mosquitto
def test_the_broker_off_accepting_and_unreachable(tmp_path: Path) -> None:
    from sync.mqtt.probe import probe_broker
    from tests.mosquitto import Mosquitto, free_port

    f = doctor.check_broker(Config(), probe_broker)
    assert f.status == "off"
    with Mosquitto(tmp_path / "broker") as broker:
        config = Config(mqtt=broker.mqtt_config("st-1"))
        f = doctor.check_broker(config, probe_broker)
        assert f.status == "ok" and "accepted the connection with the client certificate" in f.text
    closed = config.model_copy(
        update={"mqtt": config.mqtt.model_copy(update={"port": free_port()})}
    )
    f = doctor.check_broker(closed, probe_broker)
    assert f.status == "FAIL" and "cannot connect" in f.text and "cert_file" in f.todo


@needs_mosquitto
def test_the_broker_refusing_a_certificate_of_another_ca(tmp_path: Path) -> None:
    """The shipped broker takes only certificates signed by the site's CA."""
    from sync.mqtt.probe import probe_broker
    from tests.mosquitto import Mosquitto, TestPki

    other = TestPki(tmp_path / "other-ca", name="not the site")
    with Mosquitto(tmp_path / "broker") as broker:
        good = broker.mqtt_config("st-1")
        foreign = other.client("st-1")
        tls = good.tls.model_copy(
            update={"cert_file": foreign.cert_file, "key_file": foreign.key_file}
        )
        for mqtt, status in ((good, "ok"), (good.model_copy(update={"tls": tls}), "FAIL")):
            f = doctor.check_broker(Config(mqtt=mqtt), probe_broker)
            assert f.status == status, f
        assert "refused the connection" in f.text and str(foreign.cert_file) in f.text, f
        assert "closed the connection before answering" in f.text, f


# -- the central store, for real -----------------------------------------------------------------


def test_the_centre_off_accepting_and_refusing(tmp_path: Path) -> None:
    from central.app import create_app
    from sync.upload.probe import probe_endpoint
    from tests.central_server import TOKEN_A, TOKENS, serve_app

    assert doctor.check_centre(Config(), probe_endpoint).status == "off"
    with serve_app(create_app(tmp_path / "central", TOKENS)) as url:
        for token, status in ((TOKEN_A, "ok"), ("not-the-token-0123456789", "FAIL")):
            upload = UploadConfig(
                enabled=True, endpoint=f"{url}/files/", token=token, insecure_lab=True
            )
            f = doctor.check_centre(Config(upload=upload), probe_endpoint)
            assert f.status == status, f
        assert "refused the token (401)" in f.text
        not_tus = UploadConfig(
            enabled=True, endpoint=f"{url}/nothing/", token=TOKEN_A, insecure_lab=True
        )
        f = doctor.check_centre(Config(upload=not_tus), probe_endpoint)
        assert f.status == "FAIL" and "not a tus 1.0.0 endpoint" in f.text
    f = doctor.check_centre(Config(upload=upload), probe_endpoint)  # the server is gone
    assert f.status == "FAIL" and "cannot reach it" in f.text
