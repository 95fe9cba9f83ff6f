"""A full disk under the catalog is named as a full disk, with what to free; never as a broken
catalog, never with the advice to restore a backup (an older catalog would make the station
refuse to offload or clear anything). The disk is a small tmpfs filled to the last byte."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.catalog import open_catalog
from agent.catalog.faults import report_fault
from agent.errors import EXIT_CANTCREAT, CatalogFullError
from tests.recorders import make_folder_recorder, recdock

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts a tmpfs)")


@contextlib.contextmanager
def small_disk(mountpoint: Path, size: str = "8m") -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> None:
    """Write until the disk refuses another byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (b"\0" * 65536, b"\0" * 512, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    st = os.statvfs(disk)
    assert st.f_bavail == 0, "the disk is not full"


def assert_names_a_full_disk(message: str, disk: Path) -> None:
    assert "full" in message and str(disk) in message, message
    assert "backup" not in message and "unreadable" not in message, message


@needs_root
def test_a_full_disk_under_the_catalog_is_named_full_when_it_is_opened(tmp_path: Path) -> None:
    config = tmp_path / "recdock.toml"
    config.write_text("[store]\nreserve_bytes = 0\n")
    with small_disk(tmp_path / "disk") as disk:
        home = disk / "home"
        rec = make_folder_recorder(tmp_path / "rec1", "DISK01", files=2, size=100_000)
        first = recdock("offload", str(rec), home=home, config=config)
        assert first.returncode == 0, first.stderr
        fill(disk)
        rec2 = make_folder_recorder(tmp_path / "rec2", "DISK02")
        for args in (["status"], ["offload", str(rec2)]):
            done = recdock(*args, home=home, config=config)
            assert done.returncode == EXIT_CANTCREAT, (args, done)
            assert "Traceback" not in done.stderr
            assert_names_a_full_disk(done.stderr, home)
        (disk / "filler").unlink()  # room again: the catalog was fine all along
        assert recdock("status", home=home, config=config).returncode == 0


@needs_root
def test_a_disk_that_fills_under_an_open_catalog_is_named_full(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        catalog = open_catalog(disk / "home", "st-test")
        try:
            fill(disk)
            with pytest.raises(CatalogFullError) as caught:
                report_fault(catalog, "software", "probe", "x" * 200_000)
            assert_names_a_full_disk(str(caught.value), disk / "home")
        finally:
            catalog.close()
