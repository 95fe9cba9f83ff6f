"""scripts/test-arm64 on a machine that cannot emulate arm64: it says so and fails.

The kernel's binfmt_misc is the seam: the script reads it at ``$RECDOCK_ARM64_BINFMT``
(default /proc/sys/fs/binfmt_misc), and these tests point it at a folder of their own that
looks like a binfmt_misc without qemu-aarch64, or with it registered without flag F. The run
must end non-zero, say that nothing of the platform was tested, and say what to do; it never
passes silently. The script installs its host packages first and needs root, so these run as
root (CI does).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/test-arm64 runs as root")


def run_without_emulation(binfmt: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECDOCK_ARM64_BINFMT": str(binfmt)}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "test-arm64"), "--build-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_no_qemu_aarch64_in_binfmt_misc_fails_and_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "register").touch()
    result = run_without_emulation(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "qemu-aarch64 is not registered in binfmt_misc" in result.stderr
    assert "NOTHING of it was tested" in result.stderr
    assert "What to do:" in result.stderr and "--privileged" in result.stderr


def test_qemu_aarch64_without_flag_f_fails(tmp_path: Path) -> None:
    (tmp_path / "register").touch()
    entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: P\n"
    (tmp_path / "qemu-aarch64").write_text(entry)
    result = run_without_emulation(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "registered without flag F" in result.stderr
    assert "NOTHING of it was tested" in result.stderr
