"""What an administrator reads about a failing recorder is whole and said once: a bay whose
recorder was pulled out names the device and its session; an offload's error line names its
file once. Real FAT32 images through fusefat; the station is `recdock run --simulate`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agent.recorder.simulated import MEDIA_DIR
from tests.conftest import needs_fusefat
from tests.fat_tools import clusters_of, set_fat_entry
from tests.recorders import fat_mount, make_fat_recorder, recdock, wait_for
from tests.test_station import _fusefat_pids, resume, start_station, stop_station

MiB = 1024 * 1024
BAD_CLUSTER = 0x0FFFFFF7


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text("[store]\nreserve_bytes = 0\n")
    return path


@needs_fusefat
def test_an_offload_error_line_names_its_file_once(tmp_path: Path, home: Path) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "ONCE01", files=3, size=200_000)
    with fat_mount(image, tmp_path / "probe") as m:
        victim = sorted(os.listdir(m.mountpoint / MEDIA_DIR))[1]
    chain = clusters_of(image, f"{MEDIA_DIR}/{victim}")
    set_fat_entry(image, chain[len(chain) // 2], BAD_CLUSTER)  # a read error mid-file
    with fat_mount(image, tmp_path / "mnt") as m:
        result = recdock(
            "offload", str(m.mountpoint), "--keep-source", home=home, config=write_config(tmp_path)
        )
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "read error on the recorder" in line, line
    assert line.count(victim) == 1, line


@needs_fusefat
def test_a_yanked_bay_names_the_device_and_its_session(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    try:
        image = make_fat_recorder(tmp_path / "r.img", "SIMYANK9", files=6, size=4 * MiB)
        station.plug(1, image)  # no USB serial: the device is known from its status file
        wait_for(lambda: (station.bay_row(1) or {}).get("progress_bytes"), 30, "progress")
        (fusefat,) = _fusefat_pids(image)
        os.kill(fusefat, signal.SIGSTOP)  # hold it mid-copy, then pull it out
        try:
            station.unplug(1)
            bay = station.wait_state(1, "yanked")
        finally:
            resume(fusefat)
        (session,) = station.query("SELECT id FROM sessions WHERE device_serial = 'SIMYANK9'")
        assert bay["device_serial"] == "SIMYANK9", bay
        assert bay["session_id"] == session["id"], bay
    finally:
        assert stop_station(station) == 0, station.log.read_text()
