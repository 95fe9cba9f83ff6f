"""Virtual recorders of the ``simulated`` model, as folders or real FAT32 images.

The layout (docs/firmware-profiles.md) is what firmware_profiles/simulated.toml
reads:

    DEVICE.JSN                            status: serial, officer, unit, battery, clock...
    DCIM/100RDSIM/RD_<YYYYMMDDhhmmss>_<nnnn>.MP4   video, start time in the name
    DCIM/100RDSIM/RD_<...>_<nnnn>.JPG     every fifth file is a photo

Media are deterministic pseudo-random bytes (seeded by serial and index), so a test
can rebuild the expected content. A FAT32 image is made with mkfs.fat (dosfstools)
and filled with mcopy (mtools), without mounting; tests and the simulated dock
mount it with fusefat.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from agent.errors import RecdockError
from agent.recorder.media import write_small_file

log = logging.getLogger(__name__)

DEVICE_TZ = timezone(timedelta(hours=8))
STATUS_FILE = "DEVICE.JSN"
TIME_FILE = "TIME.TXT"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MEDIA_DIR = "DCIM/100RDSIM"
CHUNK = 1024 * 1024
MIN_FAT_CAPACITY = 72 * 1024 * 1024  # see build_fat_image


@dataclass(frozen=True)
class RecorderSpec:
    serial: str
    officer: str = "100001"
    unit: str = "patrol-1"
    files: int = 3
    size: int = 4 * 1024 * 1024
    battery: float = 90.0
    charging: bool = False
    clock_offset: float = 0.0
    firmware: str = "2.1.0"
    age_hours: float = 2.0
    sparse: bool = False
    capacity: int | None = None  # FAT image bytes (default: content + 40 MiB; at least 72 MiB)


def media_name(start: datetime, index: int) -> str:
    ext = "JPG" if index % 5 == 4 else "MP4"
    return f"RD_{start.astimezone(DEVICE_TZ):%Y%m%d%H%M%S}_{index + 1:04d}.{ext}"


def content_chunks(serial: str, index: int, size: int):
    """The deterministic content of file ``index`` of recorder ``serial``."""
    rng = random.Random(f"{serial}/{index}")
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def status_document(spec: RecorderSpec, now: datetime | None = None) -> dict[str, object]:
    now = now or datetime.now(UTC)
    clock = (now + timedelta(seconds=spec.clock_offset)).astimezone(DEVICE_TZ)
    return {
        "model": "RDSIM-1",
        "serial": spec.serial,
        "officer": spec.officer,
        "unit": spec.unit,
        "firmware": spec.firmware,
        "battery": spec.battery,
        "charging": spec.charging,
        "minutes_to_full": round((100 - spec.battery) / 1.0) if spec.charging else None,
        "clock": clock.replace(tzinfo=None).isoformat(timespec="seconds"),
        "rtc_offset_s": spec.clock_offset,
    }


def build_tree(dest: Path, spec: RecorderSpec, now: datetime | None = None) -> list[Path]:
    """Write the recorder's files into folder ``dest``; returns the media paths."""
    now = now or datetime.now(UTC)
    media = dest / MEDIA_DIR
    media.mkdir(parents=True, exist_ok=True)
    (dest / STATUS_FILE).write_text(json.dumps(status_document(spec, now), indent=1) + "\n")
    paths = []
    # recordings one after another, the last one ending age_hours ago
    duration = timedelta(minutes=10)
    first = now - timedelta(hours=spec.age_hours) - duration * spec.files
    for i in range(spec.files):
        start = first + duration * i
        path = media / media_name(start, i)
        with path.open("wb") as fh:
            if spec.sparse:
                fh.truncate(spec.size)
            else:
                for chunk in content_chunks(spec.serial, i, spec.size):
                    fh.write(chunk)
        end = (start + duration).timestamp()
        os.utime(path, (end, end))
        paths.append(path)
    return paths


def _need(tool: str, package: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        raise RecdockError(f"{tool} not found: install the Debian package {package}")
    return found


def build_fat_image(image: Path, spec: RecorderSpec, now: datetime | None = None) -> None:
    """A real FAT32 image holding the recorder's files (mkfs.fat + mcopy, no mount)."""
    mkfs = _need("mkfs.fat", "dosfstools")
    mcopy = _need("mcopy", "mtools")
    content = spec.files * spec.size + 1024 * 1024
    capacity = spec.capacity or content + 40 * 1024 * 1024
    # 1 KiB clusters: with 512-byte ones fusefat 0.1a reports a size of zero (statvfs
    # f_blocks = 0), so no free-space check could work; and mtools takes a volume of
    # fewer than 65525 clusters for FAT16, so FAT32 needs 64 MiB and a margin
    capacity = max(capacity, MIN_FAT_CAPACITY)
    if image.exists():
        raise RecdockError(f"{image}: already exists; remove it or choose another name")
    image.parent.mkdir(parents=True, exist_ok=True)
    if spec.size >= 4 * 1024**3:
        raise RecdockError("FAT32 cannot hold a file of 4 GiB or more: build a folder recorder")
    # small images: 1 KiB clusters (above); large ones (a 32-64 GB recorder): mkfs.fat's
    # own choice, so the FATs stay small and the sparse image file does too
    cluster = ["-s", "2"] if capacity <= 1024**3 else []
    subprocess.run(
        [mkfs, "-F", "32", *cluster, "-n", "RECDOCK", "-C", str(image), str(capacity // 1024)],
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory(dir=image.parent, prefix=".recdock-sim-") as tmp:
        build_tree(Path(tmp), spec, now)
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
        entries = sorted(os.listdir(tmp))
        done = subprocess.run(
            [mcopy, "-s", "-m", "-i", str(image), *[os.path.join(tmp, e) for e in entries], "::/"],
            check=False,
            capture_output=True,
            env=env,
        )
    if done.returncode != 0:
        image.unlink(missing_ok=True)  # a half-filled recorder is no test recorder
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RecdockError(
            f"{image}: mcopy could not fill the FAT32 image ({why[-1] if why else 'failed'}); "
            "give a larger --capacity or fewer/smaller files"
        )


def apply_firmware(root: Path, now: datetime | None = None) -> None:
    """What the simulated recorder's firmware does when it is (re)connected.

    If the station left ``TIME.TXT`` (device-local time, ``%Y-%m-%d %H:%M:%S``,
    UTC+08:00), the firmware sets its real-time clock from it and deletes the file;
    a file it cannot parse is deleted and ignored, as firmware does. Then it writes
    its clock (now + its RTC offset, device-local, to the nearest second) into
    DEVICE.JSN's "clock", and the RTC offset into "rtc_offset_s". The simulated dock
    calls this on every writable mount, before the station reads the recorder.
    """
    now = now or datetime.now(UTC)
    status_path = root / STATUS_FILE
    status = json.loads(status_path.read_text())
    offset = float(status.get("rtc_offset_s") or 0.0)
    time_path = root / TIME_FILE
    if time_path.is_file() and not time_path.is_symlink():
        text = time_path.read_text(errors="replace").strip()
        try:
            parsed = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=DEVICE_TZ)
        except ValueError:
            log.warning("%s: %s holds %r, not a time: ignored", root, TIME_FILE, text[:40])
        else:
            offset = (parsed - now).total_seconds()
        time_path.unlink()
    clock = (now + timedelta(seconds=offset) + timedelta(milliseconds=500)).astimezone(DEVICE_TZ)
    status["clock"] = clock.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
    status["rtc_offset_s"] = round(offset, 3)
    write_small_file(status_path, (json.dumps(status, indent=1) + "\n").encode(), create=False)
