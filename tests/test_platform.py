"""The platform under test is the one asked for, and nothing of the host is in it.

scripts/test-arm64 runs the smoke set inside an arm64 root file system under qemu-user, with
recdock installed as docs/deployment.md says, and tells these tests what to expect:
``RECDOCK_EXPECT_MACHINE=aarch64`` and ``RECDOCK_EXPECT_PREFIX=/opt/recdock/venv``. Without
them (the host suite) they are skipped: the host suite claims no platform.
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from pathlib import Path

import pytest

MACHINE = os.environ.get("RECDOCK_EXPECT_MACHINE")
PREFIX = os.environ.get("RECDOCK_EXPECT_PREFIX")
pytestmark = pytest.mark.skipif(
    not MACHINE, reason="RECDOCK_EXPECT_MACHINE is set by scripts/test-arm64 only"
)

#: ELF e_machine values (elf(5)) by the name platform.machine() gives
ELF_MACHINES = {"aarch64": 183, "x86_64": 62, "armv7l": 40}


def elf_machine(path: str | os.PathLike[str]) -> int:
    """The e_machine field of an ELF file: what CPU it is built for (read, not asked)."""
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path}: not an ELF file"
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def test_the_interpreter_reports_the_machine_asked_for() -> None:
    assert platform.machine() == MACHINE
    assert os.uname().machine == MACHINE


def test_the_interpreter_is_built_for_that_machine() -> None:
    assert elf_machine(os.path.realpath(sys.executable)) == ELF_MACHINES[MACHINE]


def test_every_loaded_extension_module_is_built_for_that_machine() -> None:
    import sqlite3  # noqa: F401

    import pydantic_core  # noqa: F401 - the native wheel every command loads

    loaded = {
        m.__file__
        for m in list(sys.modules.values())
        if (getattr(m, "__file__", "") or "").endswith(".so")
    }
    assert any("pydantic_core" in path for path in loaded), sorted(loaded)
    wrong = [p for p in sorted(loaded) if elf_machine(p) != ELF_MACHINES[MACHINE]]
    assert wrong == []


def test_recdock_is_the_installed_one_and_nothing_comes_from_elsewhere() -> None:
    import agent

    if PREFIX:
        assert sys.prefix == PREFIX
    site = Path(sysconfig.get_paths()["purelib"])
    assert Path(agent.__file__).is_relative_to(site), agent.__file__
    tests = Path(__file__).resolve().parent.parent
    roots = [Path(sys.prefix), Path(sys.base_prefix), tests]
    strays = [p for p in sys.path if p and not any(Path(p).is_relative_to(r) for r in roots)]
    assert strays == [], strays
