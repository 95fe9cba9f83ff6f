"""The station clock seam: the real system clock (adjtimex, timedatectl) and the simulated one."""

from __future__ import annotations

import ctypes
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

import agent.seams.clock.system as clockmod
from agent.seams.clock import make_clock
from agent.seams.clock.simulated import SimulatedClock
from agent.seams.clock.system import (
    MAX_ERROR_US,
    AdjtimexUnavailable,
    SystemClock,
    read_adjtimex,
)


def test_system_clock_answers_on_this_machine_without_raising() -> None:
    c = SystemClock()
    synced = c.synchronised()
    assert isinstance(synced, bool)
    text = c.describe()
    assert text.startswith("system clock (")
    assert "adjtimex" in text or "timedatectl" in text  # says which source decided


def test_system_clock_now_is_aware_utc_and_real() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == UTC.utcoffset(None)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5


def test_struct_timex_has_the_kernel_size() -> None:
    # glibc's struct timex: 208 bytes where long is 8 bytes, 128 where it is 4
    expected = 208 if ctypes.sizeof(ctypes.c_long) == 8 else 128
    assert ctypes.sizeof(clockmod._Timex) == expected


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="adjtimex(2) is Linux")
def test_adjtimex_reads_the_kernel_state() -> None:
    try:
        maxerror, status = read_adjtimex()
    except AdjtimexUnavailable as exc:  # a sandbox may refuse even the read-only call
        pytest.skip(f"adjtimex refused here: {exc}")
    # the kernel caps maxerror at NTP_PHASE_LIMIT (16 s)
    assert 0 <= maxerror <= MAX_ERROR_US
    c = SystemClock()
    assert c.synchronised() is (maxerror < MAX_ERROR_US)
    assert "adjtimex: maximum error" in c.describe()


def fake_timedatectl(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "timedatectl"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return folder


def refuse_adjtimex() -> tuple[int, int]:
    raise AdjtimexUnavailable(1, "adjtimex refused: EPERM")


@pytest.mark.parametrize(("answer", "expected"), [("yes", True), ("no", False)])
def test_falls_back_to_timedatectl_only_when_adjtimex_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, expected: bool
) -> None:
    # ProtectClock=yes makes even a read-only adjtimex fail with EPERM (systemd #26413)
    monkeypatch.setattr(clockmod, "read_adjtimex", refuse_adjtimex)
    bindir = fake_timedatectl(
        tmp_path / "bin",
        f'[ "$*" = "show -p NTPSynchronized --value" ] || exit 3\necho {answer}',
    )
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    c = SystemClock()
    assert c.synchronised() is expected
    assert f"timedatectl NTPSynchronized={answer}" in c.describe()


def test_timedatectl_failing_counts_as_not_synchronised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clockmod, "read_adjtimex", refuse_adjtimex)
    bindir = fake_timedatectl(tmp_path / "bin", 'echo "Failed to connect to bus" >&2\nexit 1')
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    c = SystemClock()
    assert c.synchronised() is False
    assert "Failed to connect to bus" in c.describe()
    assert "treated as not synchronised" in c.describe()


def test_no_timedatectl_counts_as_not_synchronised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clockmod, "read_adjtimex", refuse_adjtimex)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    c = SystemClock()
    assert c.synchronised() is False
    assert "timedatectl not found" in c.describe()


def test_simulated_clock_is_what_it_is_told() -> None:
    c = SimulatedClock(synchronised=False, offset_s=-3600)
    assert c.synchronised() is False
    assert abs((datetime.now(UTC) - c.now()).total_seconds() - 3600) < 5
    assert c.describe().startswith("SIMULATED")
    assert "not synchronised" in c.describe()
    assert SimulatedClock().synchronised() is True


def test_make_clock_chooses_explicitly() -> None:
    assert isinstance(make_clock("system"), SystemClock)
    sim = make_clock("simulated", synchronised=False, offset_s=5)
    assert isinstance(sim, SimulatedClock) and not sim.synchronised()
    with pytest.raises(ValueError, match="unknown station clock kind"):
        make_clock("ntp")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_clock("system", synchronised=True)
    with pytest.raises(TypeError):
        make_clock()  # type: ignore[call-arg]
