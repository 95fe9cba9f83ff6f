"""Removal-check benchmark: what rule 1's "the bytes copied are the bytes on the recorder at
removal" costs, against the offload itself, measured in the same run.

    sudo .venv/bin/python bench/bench_clear.py [--total-mib 1024] [--files 8] [--reps 3]

It builds one recorder of the ``simulated`` model (``--files`` media of equal size), once as
a folder and once as a FAT32 image mounted read-only with ``fusefat -f -o ro``, and for each
source measures, each from a cold cache (``drop_caches`` as root, else
``posix_fadvise(DONTNEED)``; the fusefat source is remounted too):

    copy      the offload (agent.offload.Offloader, source kept)     the baseline
    stat      lstat: size and mtime, the check before this change     what it cost
    ctime     lstat: + same inode and change time                      the safe way on ext4,
                                                                       xfs, btrfs, tmpfs
    reread    the file read again around the page cache, hashed       the safe way on FAT,
                                                                       exFAT, FUSE
    clear     what agent/offload/clear.py does for this source (the
              ctime check on the folder, the re-read on fusefat)

Each is printed as a ratio to the copy: the share the removal check adds to a docking.
The methods alternate their order between repetitions (A B B A); medians are reported.
Everything is written under the workdir, which is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_offload import FatMount, build_image, drop_caches, machine, remove_tree  # noqa: E402

from agent.catalog import open_catalog  # noqa: E402
from agent.config import SHIPPED_PROFILES, Config, StoreConfig  # noqa: E402
from agent.offload import Offloader, OffloadReport  # noqa: E402
from agent.offload.clear import Clearer  # noqa: E402
from agent.recorder.media import MediaFile  # noqa: E402
from agent.recorder.profiles import ProfileSet  # noqa: E402
from agent.recorder.simulated import RecorderSpec, build_tree  # noqa: E402

MiB = 1024 * 1024
SERIAL = "BENCHCLR1"
METHODS = ("copy", "stat", "ctime", "reread", "clear")
#: FAT keeps no change time (and a remount gives other inode numbers): no ctime method there
BY_SOURCE = {"folder": METHODS, "fat": ("copy", "stat", "reread", "clear")}
CONFIG = Config(store=StoreConfig(reserve_bytes=0))
PROFILE = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")


class Subject:
    """One source, offloaded once (source kept), with what its checks need."""

    def __init__(self, source: Path, home: Path) -> None:
        self.source, self.home = source, home
        self.report: OffloadReport | None = None
        self.rows: dict[str, dict] = {}

    def offload(self) -> None:
        remove_tree(self.home)
        catalog = open_catalog(self.home, CONFIG.station_id)
        try:
            self.report = Offloader(CONFIG, self.home, catalog, keep_source=True).run(
                self.source, PROFILE
            )
            assert self.report.ok, self.report.failures
            self.rows = {r["store_path"]: r for r in catalog.query("SELECT * FROM recordings")}
        finally:
            catalog.close()

    def each(self, check: Callable[[Clearer, MediaFile, object, dict], object]) -> None:
        """Run ``check`` on every copied file, as the removal would."""
        assert self.report is not None
        catalog = open_catalog(self.home, CONFIG.station_id)
        try:
            offloader = Offloader(CONFIG, self.home, catalog, keep_source=True)
            clearer = offloader.clearer
            for f in self.report.files:
                assert f.stamp is not None and f.store_path is not None
                m = MediaFile(f.relpath, f.size, f.stamp.mtime_ns)
                outcome = check(clearer, m, f.stamp, self.rows[f.store_path])
                assert outcome is None, (f.source_path, outcome)
        finally:
            catalog.close()


def check_stat(clearer: Clearer, m: MediaFile, stamp, row: dict) -> str | None:
    st = os.lstat(os.path.join(os.fsencode(clearer_source[0]), m.relpath))
    same = st.st_size == row["size"] and st.st_mtime_ns == stamp.mtime_ns
    return None if same else "changed"


def check_ctime(clearer: Clearer, m: MediaFile, stamp, row: dict) -> str | None:
    st = os.lstat(os.path.join(os.fsencode(clearer_source[0]), m.relpath))
    same = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
        row["size"],
        stamp.mtime_ns,
        stamp.ctime_ns,
        stamp.ino,
    )
    return None if same else "changed"


def check_reread(clearer: Clearer, m: MediaFile, stamp, row: dict) -> str | None:
    return clearer._read_again(clearer_source[0], m, row)


def check_clear(clearer: Clearer, m: MediaFile, stamp, row: dict) -> str | None:
    return clearer.source_differs(clearer_source[0], m, stamp, row)


clearer_source: list[Path] = [Path()]  # the source the checks run on now
CHECKS = {"stat": check_stat, "ctime": check_ctime, "reread": check_reread, "clear": check_clear}


def timed(source: str, method: str, subject: Subject, fat: FatMount, cold: list[Path]) -> float:
    if source == "fat":
        fat.unmount()
        drop_caches(cold)
        fat.mount()
    else:
        drop_caches(cold)
    clearer_source[0] = subject.source
    t0 = time.perf_counter()
    if method == "copy":
        subject.offload()
    else:
        subject.each(CHECKS[method])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-mib", type=int, default=1024, help="recorder size (default 1024)")
    ap.add_argument("--files", type=int, default=8, help="media files (default 8)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per method (default 3)")
    ap.add_argument("--workdir", type=Path, help="where to build (default: a new folder in /tmp)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (shutil.which("fusefat") and shutil.which("mcopy")):
        ap.error("needs fusefat and mtools (apt-get install fusefat mtools)")
    base = args.workdir or Path("/tmp")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="recdock-bench-clear-", dir=base))
    info = machine(work)
    print("machine:")
    for k, v in info.items():
        print(f"  {k}: " + v.replace("\n", "\n    "))
    fat = FatMount(work / "recorder.img", work / "mnt")
    try:
        return run(args, work, fat)
    finally:
        fat.unmount()
        remove_tree(work)


def run(args: argparse.Namespace, work: Path, fat: FatMount) -> int:
    size = args.total_mib * MiB // args.files
    spec = RecorderSpec(SERIAL, files=args.files, size=size)
    folder = work / "recorder"
    now = datetime.now(UTC)
    build_tree(folder, spec, now)
    build_image(fat.image, folder, [spec], now)
    fat.mount()
    total = args.files * size
    print(f"\nrecorder: {args.files} x {size / MiB:.0f} MiB, as a folder and a FAT32 image")
    subjects = {
        "folder": Subject(folder, work / "home-folder"),
        "fat": Subject(fat.mountpoint, work / "home-fat"),
    }
    cold = {"folder": [folder], "fat": [folder, fat.image]}
    times: dict[str, dict[str, list[float]]] = {s: {m: [] for m in BY_SOURCE[s]} for s in subjects}
    for rep in range(args.reps):
        for source, subject in subjects.items():
            methods = BY_SOURCE[source]
            # A B B A; the first repetition copies first, so the checks have a copy to check
            for method in methods if rep % 4 in (0, 3) else methods[::-1]:
                seconds = timed(source, method, subject, fat, cold[source])
                times[source][method].append(seconds)
                print(f"rep {rep + 1}/{args.reps} {source:6} {method:7} {seconds:8.3f} s")
    report(times, total)
    return 0


def report(times: dict[str, dict[str, list[float]]], total: int) -> None:
    print("\nmedians, and each as a share of the copy (the offload itself):")
    for source, by_method in times.items():
        copy = statistics.median(by_method["copy"])
        print(f"  {source}: copy {copy:.2f} s ({total / MiB / copy:.0f} MiB/s)")
        for method in BY_SOURCE[source][1:]:
            t = statistics.median(by_method[method])
            print(f"    {method:7} {t:8.3f} s  {t / copy:6.3f} x copy")


if __name__ == "__main__":
    raise SystemExit(main())
