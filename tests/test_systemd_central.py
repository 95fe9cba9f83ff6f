"""systemd/recdock-central.service: the central store's unit verifies, runs as its own user with
its secrets as credentials and a private umask, and keeps its exposure at 3.0 or below, as
tests/test_systemd.py checks the station's unit (issue 9); recdock-central@.service, one worker
of several, is the same unit but for its command line."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from central.command import main
from tests.recorders import BIN

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "recdock-central.service"
SYSUSERS = ROOT / "systemd" / "recdock-central.sysusers"
INSTALLED = "/opt/recdock/venv/bin/recdock-central"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def service_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    """Every Key=value of the [Service] section (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / "recdock-central.service"
    copy.write_text(text.replace(INSTALLED, str(BIN / "recdock-central")))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "recdock-central.service" not in done.stderr, done.stderr


@needs_analyze
def test_security_exposure_is_at_most_3_and_what_the_doc_records() -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(
        r"Overall exposure level for recdock-central\.service: (\d+\.\d)", done.stdout
    )
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 3.0
    doc = (ROOT / "docs" / "central.md").read_text()
    assert f"exposure level {found.group(1)}" in doc, (
        f"docs/central.md must record the current exposure {found.group(1)}"
    )


def test_runs_as_its_own_user_with_credentials_and_a_private_umask() -> None:
    s = service_settings()
    assert s["User"] == ["recdock-central"] and s["Group"] == ["recdock-central"]
    assert s["UMask"] == ["0077"]
    assert s["StateDirectory"] == ["recdock-central"] and s["StateDirectoryMode"] == ["0700"]
    credentials = {value.split(":", 1)[0] for value in s["LoadCredential"]}
    assert {"central-tokens", "central-api-tokens"} <= credentials
    assert all(":/etc/recdock-central/" in value for value in s["LoadCredential"])
    assert s["CapabilityBoundingSet"] == [""] and s["NoNewPrivileges"] == ["yes"]


def test_its_command_line_is_one_recdock_central_takes() -> None:
    (exec_start,) = service_settings()["ExecStart"]
    program, *args = shlex.split(exec_start)
    assert program == INSTALLED
    ctx = main.make_context("recdock-central", list(args))
    assert ctx.params["tokens_file"] is None  # from $CREDENTIALS_DIRECTORY, not a file it reads
    assert ctx.params["api_docs"] is False
    assert ctx.params["host"] == "127.0.0.1"  # TLS in front, in a proxy
    assert str(ctx.params["data_dir"]) == "/var/lib/recdock-central"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_makes_the_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("recdock-central:"))
    uid = int(entry.split(":")[2])
    assert 0 < uid < 1000  # a system user, never root


# -- one worker of several: recdock-central@.service ------------------------------------------

WORKER_UNIT = ROOT / "systemd" / "recdock-central@.service"


def test_the_worker_unit_is_the_single_unit_but_for_its_command_line() -> None:
    single, worker = service_settings(), service_settings(WORKER_UNIT)
    assert worker.pop("EnvironmentFile") == ["-/etc/recdock-central/workers.env"]
    assert {k: v for k, v in worker.items() if k != "ExecStart"} == {
        k: v for k, v in single.items() if k != "ExecStart"
    }


def test_a_worker_instance_takes_its_port_client_id_and_group_from_its_name() -> None:
    (exec_start,) = service_settings(WORKER_UNIT)["ExecStart"]
    program, *args = shlex.split(exec_start.replace("%i", "8081"))
    assert program == INSTALLED and args[-1] == "$RECDOCK_CENTRAL_MQTT"
    ctx = main.make_context("recdock-central", args[:-1])  # the environment file's, unset here
    assert ctx.params["port"] == 8081
    assert ctx.params["mqtt_client_id"] == "recdock-central-8081"
    assert ctx.params["worker_group"] == "centre"
    assert str(ctx.params["data_dir"]) == "/var/lib/recdock-central"  # shared by every worker


@needs_analyze
def test_a_worker_instance_verifies_with_the_same_exposure(tmp_path: Path) -> None:
    text = WORKER_UNIT.read_text().replace(INSTALLED, str(BIN / "recdock-central"))
    instance = tmp_path / "recdock-central@8081.service"
    instance.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "recdock-central@" not in done.stderr, done.stderr
    exposure = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(instance)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", exposure.stdout)
    assert found and float(found.group(1)) <= 3.0, exposure.stdout + exposure.stderr
