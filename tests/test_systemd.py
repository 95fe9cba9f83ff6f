"""systemd/: the unit verifies, its hardening keeps what the station needs, tmpfiles and udev rule.

`systemd-analyze verify` needs the ExecStart binary to exist, so it checks a copy of the
unit whose ExecStart is this checkout's venv `recdock` (everything else unchanged).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.recorders import BIN

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "recdock.service"
RULES = ROOT / "systemd" / "99-recdock.rules"
TMPFILES = ROOT / "systemd" / "recdock.conf"
INSTALLED = "/opt/recdock/venv/bin/recdock"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def unit_settings() -> dict[str, list[str]]:
    """Every Key=value of the [Service] section (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / "recdock.service"
    copy.write_text(text.replace(INSTALLED, str(BIN / "recdock")))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "recdock.service" not in done.stderr, done.stderr  # no warnings about our unit


@needs_analyze
def test_security_exposure_is_what_the_deployment_doc_records() -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for recdock\.service: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    doc = (ROOT / "docs" / "deployment.md").read_text()
    assert f"exposure level {found.group(1)}" in doc, (
        f"docs/deployment.md must record the current exposure {found.group(1)}"
    )
    assert float(found.group(1)) <= 3.0


def test_unit_is_notify_with_watchdog_and_keeps_what_the_station_needs() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] == ["30"]
    assert s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == [f"{INSTALLED} --home /var/lib/recdock run"]
    assert "PrivateDevices" not in s  # block devices and /dev/gpiochip* must stay reachable
    families = " ".join(s["RestrictAddressFamilies"]).split()
    assert {"AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    allowed = " ".join(s["DeviceAllow"])
    assert "block-sd rw" in allowed and "char-gpiochip rw" in allowed
    assert s["CapabilityBoundingSet"] == ["CAP_SYS_ADMIN"]  # mount(8), nothing more
    assert "@mount" in " ".join(s["SystemCallFilter"])
    assert s["StateDirectory"] == ["recdock"] and s["RuntimeDirectory"] == ["recdock"]


def test_udev_rule_keeps_automounters_away_and_never_mounts() -> None:
    rules = [
        line for line in RULES.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert not any("RUN" in line for line in rules)  # the daemon mounts, never udev
    assert 'ENV{UDISKS_IGNORE}="1"' in rules
    assert 'ENV{ID_BUS}!="usb", GOTO="recdock_end"' in rules
    assert rules[-1] == 'LABEL="recdock_end"'


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="no systemd-tmpfiles")
def test_tmpfiles_create_the_folders(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", "-"],
        input=TMPFILES.read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modes = {
        "var/lib/recdock": 0o750,
        "var/lib/recdock/store": 0o750,
        "etc/recdock": 0o755,
        "run/recdock/mnt": 0o700,
    }
    for rel, mode in modes.items():
        assert (tmp_path / rel).is_dir()
        assert (tmp_path / rel).stat().st_mode & 0o777 == mode, rel


def test_unit_ships_its_credentials_commented_with_the_names_the_station_reads(
    tmp_path: Path,
) -> None:
    """The secrets go in as systemd credentials (LoadCredential=), named as the code reads them;
    the unit carries the lines, commented, rather than leaving them to a doc."""
    from agent.config.keys import SIGNING_KEY_CREDENTIAL
    from agent.config.links import MQTT_PASSWORD_CREDENTIAL, UPLOAD_TOKEN_CREDENTIAL

    commented = re.findall(r"^#LoadCredential=([\w-]+):(\S+)$", UNIT.read_text(), re.M)
    names = {name for name, _ in commented}
    assert {SIGNING_KEY_CREDENTIAL, UPLOAD_TOKEN_CREDENTIAL, MQTT_PASSWORD_CREDENTIAL} <= names
    assert all(source.startswith("/etc/recdock/") for _, source in commented)
    assert "LoadCredential" not in unit_settings(), "shipped commented: the operator chooses"
    if shutil.which("systemd-analyze") is None:
        return
    uncommented = UNIT.read_text().replace("#LoadCredential=", "LoadCredential=")
    copy = tmp_path / "recdock.service"
    copy.write_text(uncommented.replace(INSTALLED, str(BIN / "recdock")))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "recdock.service" not in done.stderr, done.stderr
