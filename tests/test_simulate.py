"""`recdock simulate recorder`: the documented layout of the `simulated` model, deterministic
content, as a folder or a real FAT32 image that fusefat mounts."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from agent.config import SHIPPED_PROFILES
from agent.recorder.media import list_media
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import MEDIA_DIR, RecorderSpec, content_chunks, status_document
from agent.recorder.status import read_info
from tests.conftest import needs_fusefat
from tests.recorders import fat_mount, recdock

NAME = re.compile(r"^RD_(\d{14})_(\d{4})\.(MP4|JPG)$")
SIZE = 100_000


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected(serial: str, index: int, size: int) -> str:
    return hashlib.sha256(b"".join(content_chunks(serial, index, size))).hexdigest()


def check_layout(
    root: Path, serial: str, files: int, size: int, battery: float, label: tuple[str, ...] = ()
) -> None:
    assert sorted(os.listdir(root)) == sorted(["DCIM", "DEVICE.JSN", *label])
    status = json.loads((root / "DEVICE.JSN").read_text())
    assert status["serial"] == serial and status["model"] == "RDSIM-1"
    assert status["battery"] == battery
    clock = datetime.fromisoformat(status["clock"]).replace(tzinfo=timezone(timedelta(hours=8)))
    assert abs((clock - datetime.now(UTC)).total_seconds()) < 120
    names = sorted(os.listdir(root / MEDIA_DIR))
    assert len(names) == files
    for name in names:
        m = NAME.match(name)
        assert m, name
        index = int(m.group(2)) - 1
        assert m.group(3) == ("JPG" if index % 5 == 4 else "MP4")
        assert (root / MEDIA_DIR / name).stat().st_size == size
        assert sha_of(root / MEDIA_DIR / name) == expected(serial, index, size)
    starts = [datetime.strptime(NAME.match(n).group(1), "%Y%m%d%H%M%S") for n in names]
    assert starts == sorted(starts) and len(set(starts)) == files
    # the shipped profile reads it
    profile = ProfileSet.load([SHIPPED_PROFILES]).match_root(root)
    assert profile is not None and profile.name == "simulated"
    media, problems = list_media(root, profile)
    assert len(media) == files and problems == []
    info = read_info(root, profile, media=media)
    assert (info.serial, info.officer, info.battery_pct) == (serial, "100001", battery)


def test_folder_recorder_layout(tmp_path: Path) -> None:
    dest = tmp_path / "rec"
    result = recdock(
        "simulate", "recorder", str(dest), "--serial", "SIMF01", "--files", "6",
        "--size", str(SIZE), "--battery", "55", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_layout(dest, "SIMF01", 6, SIZE, 55.0)
    assert not (tmp_path / "home").exists(), "simulating a recorder does not touch the home"


def test_content_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert recdock(
            "simulate", "recorder", str(tmp_path / name), "--serial", "SAME",
            "--files", "3", "--size", str(SIZE), home=tmp_path / "home",
        ).returncode == 0  # fmt: skip
    a = {
        n: sha_of(tmp_path / "a" / MEDIA_DIR / n)[:16]
        for n in os.listdir(tmp_path / "a" / MEDIA_DIR)
    }
    b = sorted(
        sha_of(tmp_path / "b" / MEDIA_DIR / n)[:16] for n in os.listdir(tmp_path / "b" / MEDIA_DIR)
    )
    assert sorted(a.values()) == b
    assert len(set(b)) == 3  # different files differ
    other = b"".join(content_chunks("OTHER", 0, SIZE))
    assert hashlib.sha256(other).hexdigest()[:16] not in b


def test_status_document_clock_offset() -> None:
    now = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    doc = status_document(RecorderSpec(serial="S", clock_offset=-3600), now)
    assert doc["clock"] == "2026-11-27T07:00:00"  # device-local +08:00, an hour behind
    assert doc["rtc_offset_s"] == -3600


def test_sparse_folder_recorder(tmp_path: Path) -> None:
    dest = tmp_path / "rec"
    result = recdock(
        "simulate", "recorder", str(dest), "--serial", "SPARSE", "--files", "1",
        "--size", str(5 * 1024**3), "--sparse", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (name,) = os.listdir(dest / MEDIA_DIR)
    st = (dest / MEDIA_DIR / name).stat()
    assert st.st_size == 5 * 1024**3 and st.st_blocks * 512 < 1024 * 1024


def test_fat_refuses_files_of_4_gib(tmp_path: Path) -> None:
    result = recdock(
        "simulate", "recorder", str(tmp_path / "big.img"), "--fat", "--serial", "X",
        "--files", "1", "--size", str(4 * 1024**3), home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "4 GiB" in result.stderr


@needs_fusefat
def test_fat_image_mounts_with_the_documented_layout(tmp_path: Path) -> None:
    image = tmp_path / "rec.img"
    result = recdock(
        "simulate", "recorder", str(image), "--fat", "--serial", "SIMFAT", "--files", "5",
        "--size", str(SIZE), "--battery", "70", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with image.open("rb") as fh:
        boot = fh.read(512)
    assert boot[82:90] == b"FAT32   " and boot[510:512] == b"\x55\xaa"
    with fat_mount(image, tmp_path / "mnt") as m:
        # fusefat 0.1a lists the volume label entry as if it were a file
        check_layout(m.mountpoint, "SIMFAT", 5, SIZE, 70.0, label=("RECDOCK",))
        st = os.statvfs(m.mountpoint)
        assert st.f_blocks > 0 and st.f_bavail * st.f_frsize > 0


def test_fat_image_is_not_overwritten(tmp_path: Path) -> None:
    image = tmp_path / "rec.img"
    image.write_bytes(b"precious")
    result = recdock(
        "simulate", "recorder", str(image), "--fat", "--serial", "X", home=tmp_path / "home"
    )
    assert result.returncode != 0 and "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert image.read_bytes() == b"precious"


def test_fat_image_too_small_for_its_files_is_a_clear_error(tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    result = recdock(
        "simulate", "recorder", str(image), "--fat", "--serial", "X", "--files", "3",
        "--size", str(40 * 1024 * 1024), "--capacity", str(80 * 1024 * 1024),
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert str(image) in result.stderr
    assert not image.exists(), "a half-filled image is not left behind"
