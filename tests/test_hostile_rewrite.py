"""Rule 1 (docs/architecture.md) against a recorder that rewrites a recording in place and puts
its size and modification time back: a file leaves the recorder only when the bytes copied are
the bytes on the recorder at removal.

On a FAT32 image (fusefat) the rewrite is done as the recorder's own firmware would: into the
file's clusters, its directory entry untouched. On a folder it is a write through the file
system followed by ``utime`` to the old modification time.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

from agent.catalog import open_catalog
from agent.config import SHIPPED_PROFILES, Config, StoreConfig
from agent.offload import Offloader, OffloadReport
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import MEDIA_DIR
from tests.conftest import needs_fusefat
from tests.fat_tools import overwrite_in_place
from tests.recorders import fat_mount, make_fat_recorder, make_folder_recorder

SIZE = 4 * 1024 * 1024
CONFIG = Config(store=StoreConfig(reserve_bytes=0, buffer_bytes=64 * 1024))
PROFILE = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_content(seed: str) -> bytes:
    return random.Random(seed).randbytes(SIZE)


def offload(
    home: Path, source: Path, *, keep: bool = False, progress: Callable[[int], None] | None = None
) -> tuple[OffloadReport, Offloader]:
    catalog = open_catalog(home, CONFIG.station_id)
    offloader = Offloader(CONFIG, home, catalog, keep_source=keep, progress=progress)
    return offloader.run(source, PROFILE), offloader


def once(action: Callable[[], None]) -> Callable[[int], None]:
    """A progress hook that runs ``action`` when the first piece of the copy was read."""
    done = [False]

    def hook(_n: int) -> None:
        if not done[0]:
            done[0] = True
            action()

    return hook


def stored_hashes(home: Path) -> set[str]:
    catalog = open_catalog(home, CONFIG.station_id)
    try:
        return {r["sha256"] for r in catalog.query("SELECT sha256 FROM recordings")}
    finally:
        catalog.close()


def result_of(report: OffloadReport, name: str):
    (found,) = [f for f in report.files if f.source_path.endswith(name)]
    return found


@needs_fusefat
def test_a_fat_recording_rewritten_during_its_copy_is_not_cleared(tmp_path: Path, home: Path):
    image = make_fat_recorder(tmp_path / "rec.img", "TORN01", files=2, size=SIZE)
    new = new_content("rewritten")
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        victim = sorted(os.listdir(m.mountpoint / MEDIA_DIR))[0]  # copied first
        rel = f"{MEDIA_DIR}/{victim}"
        before = (m.mountpoint / rel).stat()
        rewrite = once(lambda: overwrite_in_place(image, rel, 0, new))
        report, _ = offload(home, m.mountpoint, progress=rewrite)
        now = (m.mountpoint / rel).stat()
        assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        torn = result_of(report, victim)
        assert torn.sha256 not in (sha(new), None)  # the copy read old and new bytes
        assert not torn.removed and "not the bytes copied" in torn.message, torn
        assert (m.mountpoint / rel).read_bytes() == new  # still on the recorder
        # docked again: the bytes on the recorder are copied, and only then removed
        again, _ = offload(home, m.mountpoint)
        assert result_of(again, victim).removed
        assert not (m.mountpoint / rel).exists()
    assert sha(new) in stored_hashes(home)


@needs_fusefat
def test_a_fat_recording_rewritten_before_the_station_clears_it_stays(tmp_path: Path, home: Path):
    """The station offloads read-only, then clears: the rewrite comes in between."""
    image = make_fat_recorder(tmp_path / "rec.img", "TORN02", files=2, size=SIZE)
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        victim = sorted(os.listdir(m.mountpoint / MEDIA_DIR))[1]
        report, offloader = offload(home, m.mountpoint, keep=True)
        assert report.ok, report.failures
        overwrite_in_place(image, f"{MEDIA_DIR}/{victim}", SIZE // 2, b"\xff" * 4096)
        assert offloader.clear(m.mountpoint, report) == 1
        kept = result_of(report, victim)
        assert not kept.removed and "not the bytes copied" in kept.message, kept
        assert os.listdir(m.mountpoint / MEDIA_DIR) == [victim]


def test_a_folder_recording_rewritten_during_its_copy_is_not_cleared(tmp_path: Path, home: Path):
    rec = make_folder_recorder(tmp_path / "rec", "TORN03", files=2, size=SIZE)
    victim = sorted(os.listdir(rec / MEDIA_DIR))[0]
    path = rec / MEDIA_DIR / victim
    new = new_content("rewritten in a folder")

    def rewrite() -> None:
        st = path.stat()
        with path.open("r+b") as fh:
            fh.write(new)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # its mtime put back

    report, _ = offload(home, rec, progress=once(rewrite))
    changed = result_of(report, victim)
    assert not changed.removed and path.read_bytes() == new, changed
    assert changed.status == "failed" and "changed on the recorder" in changed.message
    assert changed.sha256 is None  # the torn copy was discarded, never catalogued
    again, _ = offload(home, rec)
    assert result_of(again, victim).removed and not path.exists()
    assert sha(new) in stored_hashes(home)


def test_a_folder_recording_rewritten_before_the_station_clears_it_stays(
    tmp_path: Path, home: Path
):
    rec = make_folder_recorder(tmp_path / "rec", "TORN04", files=2, size=SIZE)
    victim = sorted(os.listdir(rec / MEDIA_DIR))[1]
    path = rec / MEDIA_DIR / victim
    report, offloader = offload(home, rec, keep=True)
    assert report.ok, report.failures
    st = path.stat()
    with path.open("r+b") as fh:
        fh.seek(SIZE // 2)
        fh.write(b"\xff" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert offloader.clear(rec, report) == 1
    kept = result_of(report, victim)
    assert not kept.removed and "changed since it was copied" in kept.message, kept
    assert os.listdir(rec / MEDIA_DIR) == [victim]
