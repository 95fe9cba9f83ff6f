"""Offload benchmark: recdock against its baselines, measured in the same run.

    .venv/bin/python bench/bench_offload.py [--total-gib 2] [--reps 3] [--workdir DIR]

It builds one recorder of the ``simulated`` model (about 2 GiB: 1 x 1 GiB,
9 x 100 MiB and 100 x 1 MiB media, scaled by --total-gib), once as a folder and
once as a FAT32 image (agent.recorder.simulated.build_fat_image, filled with mcopy) that
it mounts read-only with ``fusefat -f -o ro``. For each source, each method
starts from a cold cache (``sync; echo 3 > /proc/sys/vm/drop_caches`` as root,
else ``posix_fadvise(DONTNEED)`` on every file; a fusefat source is also
remounted, so fusefat's own state starts cold too):

    raw read        cat every file > /dev/null              the source's speed
    plain copy      cp -r SRC DST; sync                     the floor: no hash, no check
    recdock         recdock offload SRC --keep-source       a fresh --home, in a subprocess
    naive verified  cp -r SRC DST; sha256sum every source    what a careful shell script does
                    file and every copy; compare            (no sync: see naive+sync)

The order of the methods alternates between repetitions (ABBA) because a shared
machine is noisy; the median is reported. Wall times include process start-up.
Peak memory is each child's ru_maxrss (os.wait4). Everything is written under
the workdir, which is removed at the end (store files are read-only: they are
made writable first) unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.recorder.simulated import MEDIA_DIR, RecorderSpec, build_fat_image, build_tree

MiB = 1024 * 1024
GiB = 1024 * MiB
SERIAL = "BENCH0001"
METHODS = ("raw", "plain", "recdock", "naive")
LABELS = {
    "raw": "raw read (cat)",
    "plain": "plain copy (cp -r; sync)",
    "recdock": "recdock offload",
    "naive": "naive verified (cp; sha256sum x2)",
    "naive+sync": "naive verified + final sync",
}
TARGET_VS_PLAIN = 0.85
TARGET_VS_NAIVE = 2.0
TARGET_RSS_BYTES = 100 * 1000 * 1000
CPU = [0.0]  # CPU seconds of the children run by the current method
CHILD: list[subprocess.Popen[bytes] | None] = [None]  # the command running now


def stop_child() -> None:
    """Stop the command running now (a stopped benchmark must not leave it reading)."""
    proc = CHILD[0]
    if proc is not None and proc.returncode is None:
        proc.kill()
        os.waitpid(proc.pid, 0)
        proc.returncode = -9
    CHILD[0] = None


# -- the recorder -----------------------------------------------------------------------


def specs(total_gib: float) -> list[RecorderSpec]:
    """1 x 1 GiB + 9 x 100 MiB + 100 x 1 MiB for 2 GiB, scaled for other totals.

    Same serial, so one DEVICE.JSN; the recording windows do not overlap, so
    the names (which carry the start time) are distinct.
    """
    scale = total_gib / 2

    def size(n: int) -> int:
        return max(4096, int(n * scale) // 4096 * 4096)

    big, mid, small = size(GiB), size(100 * MiB), size(MiB)
    minutes = 10 / 60  # build_tree: one recording every 10 minutes
    return [
        RecorderSpec(SERIAL, files=1, size=big, age_hours=0.5),
        RecorderSpec(SERIAL, files=9, size=mid, age_hours=0.5 + 1 * minutes),
        RecorderSpec(SERIAL, files=100, size=small, age_hours=0.5 + 10 * minutes),
    ]


def build_folder(dest: Path, all_specs: list[RecorderSpec], now: datetime) -> None:
    for spec in all_specs:
        build_tree(dest, spec, now)


def build_image(image: Path, folder: Path, all_specs: list[RecorderSpec], now: datetime) -> None:
    """A FAT32 image holding the same files as ``folder``.

    build_fat_image makes the file system and the status file; the media are
    then copied in from the folder recorder with mcopy (no second generation).
    """
    content = sum(s.files * s.size for s in all_specs)
    base = RecorderSpec(SERIAL, files=0, capacity=content + content // 50 + 64 * MiB)
    build_fat_image(image, base, now)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    media = sorted((folder / MEDIA_DIR).iterdir())
    # mcopy -s copied the (empty) media folder already; -m keeps the files' mtimes
    subprocess.run(
        ["mcopy", "-m", "-i", str(image), *map(str, media), f"::/{MEDIA_DIR}/"],
        check=True,
        capture_output=True,
        env=env,
    )


def files_under(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        out.extend(Path(dirpath) / n for n in names)
    return sorted(out)


# -- fusefat ------------------------------------------------------------------------------


class FatMount:
    def __init__(self, image: Path, mountpoint: Path):
        self.image, self.mountpoint = image, mountpoint
        self.proc: subprocess.Popen[bytes] | None = None

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["fusefat", "-f", "-o", "ro", str(self.image), str(self.mountpoint)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"fusefat could not mount {self.image} (exit {self.proc.returncode})"
                )
            if time.monotonic() > deadline:
                self.unmount()
                raise SystemExit(f"fusefat did not mount {self.image} within 15 s")
            time.sleep(0.05)

    def unmount(self) -> None:
        if self.proc is None:
            return
        for _ in range(20):
            if not os.path.ismount(self.mountpoint):
                break
            done = subprocess.run(["fusermount", "-u", str(self.mountpoint)], capture_output=True)
            if done.returncode != 0:
                time.sleep(0.25)  # busy: a reader is still closing its files
        else:
            subprocess.run(["fusermount", "-u", "-z", str(self.mountpoint)], check=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# -- cold cache -----------------------------------------------------------------------------


def drop_caches(paths: list[Path]) -> str:
    """Start cold: drop the page cache (root), or fadvise DONTNEED on every file."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    for root in paths:
        for p in files_under(root) if root.is_dir() else [root]:
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return "posix_fadvise(DONTNEED)"


def resident_pages(path: Path) -> str:
    """What fincore (util-linux) says is cached of ``path``, or '?'."""
    try:
        out = subprocess.run(
            ["fincore", "-n", "-o", "RES", str(path)], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.CalledProcessError):
        return "?"


# -- running a command ------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes, the largest child of this method
    cpu: float = 0.0  # user + system seconds of the method's children
    load: float = 0.0  # 1-minute load average when the run started (a shared machine)
    extra: dict[str, float] = field(default_factory=dict)


def timed(
    cmd: list[str], *, stdout: int | None = subprocess.DEVNULL, env=None
) -> tuple[float, int, bytes]:
    """Run ``cmd``; wall seconds, its peak RSS in bytes, its stdout (when piped).

    Its CPU seconds are added to ``CPU[0]``.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=out if stdout is None else stdout, stderr=errf, env=env)
        CHILD[0] = proc
        _pid, status, usage = os.wait4(proc.pid, 0)
        CHILD[0] = None
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        CPU[0] += usage.ru_utime + usage.ru_stime
        errf.seek(0)
        err = errf.read()
        out.seek(0)
        data = out.read()
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:3])}... failed (exit {proc.returncode}): "
            + err.decode(errors="replace")[-2000:]
        )
    return wall, usage.ru_maxrss * 1024, data


def remove_tree(path: Path) -> None:
    """rm -rf, making read-only store files and folders writable first."""
    if not path.exists():
        return
    for dirpath, dirs, names in os.walk(path):
        os.chmod(dirpath, 0o755)
        for d in dirs:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    shutil.rmtree(path)


def sha256sums(files: list[Path], root: Path) -> tuple[float, int, dict[str, str]]:
    wall, rss, out = timed(["sha256sum", "--", *map(str, files)], stdout=None)
    sums = {}
    for line in out.decode().splitlines():
        digest, name = line.split("  ", 1)
        sums[os.path.relpath(name, root)] = digest
    return wall, rss, sums


def method_raw(src: Path, work: Path, total: int) -> Run:
    wall, rss, _ = timed(["cat", "--", *map(str, files_under(src))])
    return Run(wall, rss)


def method_plain(src: Path, work: Path, total: int) -> Run:
    dst = work / "plain-copy"
    wall, rss, _ = timed(["sh", "-c", 'cp -r -- "$1" "$2" && sync', "sh", str(src), str(dst)])
    check_copy(src, dst)
    return Run(wall, rss)


def method_naive(src: Path, work: Path, total: int) -> Run:
    dst = work / "naive-copy"
    t0 = time.perf_counter()
    _w, rss_cp, _ = timed(["cp", "-r", "--", str(src), str(dst)])
    _w, rss_a, a = sha256sums(files_under(src), src)
    _w, rss_b, b = sha256sums(files_under(dst), dst)
    if a != b:
        raise SystemExit(f"naive verified: {dst} differs from {src}")
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    os.sync()
    return Run(wall, max(rss_cp, rss_a, rss_b), extra={"sync": time.perf_counter() - t1})


def method_recdock(src: Path, work: Path, total: int, recdock: str) -> Run:
    home = work / "recdock-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECDOCK_")}
    cmd = [recdock, "--home", str(home), "offload", str(src), "--profile", "simulated"]
    wall, rss, out = timed([*cmd, "--keep-source", "--json"], stdout=None, env=env)
    report = json.loads(out)
    n = len([p for p in files_under(src) if p.parent.name == Path(MEDIA_DIR).name])
    if not report["ok"] or report["stored"] != n or report["bytes_copied"] != total:
        raise SystemExit(f"recdock offload did not store all {n} files: {report}")
    return Run(wall, rss)


def check_copy(src: Path, dst: Path) -> None:
    a = {p.relative_to(src): p.stat().st_size for p in files_under(src)}
    b = {p.relative_to(dst): p.stat().st_size for p in files_under(dst)}
    if a != b:
        raise SystemExit(f"{dst}: the copy is incomplete")


# -- the machine and the report ------------------------------------------------------------------


def machine(workdir: Path) -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    df = subprocess.run(["df", "-T", str(workdir)], capture_output=True, text=True).stdout.strip()
    fusefat = subprocess.run(["dpkg-query", "-W", "fusefat"], capture_output=True, text=True)
    return {
        "nproc": str(os.cpu_count()),
        "usable cpus": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fusefat": fusefat.stdout.strip() or "?",
        "workdir": f"{workdir}\n" + df,
    }


def mibps(total: int, seconds: float) -> float:
    return total / MiB / seconds


def report(results: dict[str, dict[str, list[Run]]], total: int) -> list[str]:
    lines = []
    lines.append(
        f"{'source':8} {'method':36} {'MiB/s':>8} {'median s':>9} {'CPU s':>6}  {'peak RSS':>9}"
        "  runs (s)"
    )
    verdict = []
    for source, by_method in results.items():
        med = {}
        for m in METHODS:
            runs = by_method.get(m, [])
            if not runs:
                continue
            secs = [r.seconds for r in runs]
            med[m] = statistics.median(secs)
            rss = max(r.peak_rss for r in runs)
            cpu = statistics.median(r.cpu for r in runs)
            lines.append(
                f"{source:8} {LABELS[m]:36} {mibps(total, med[m]):8.1f} {med[m]:9.2f} {cpu:6.2f}  "
                f"{rss / MiB:6.1f} MiB  " + " ".join(f"{s:.2f}" for s in secs)
            )
            if m == "naive":
                both = [r.seconds + r.extra["sync"] for r in runs]
                med["naive+sync"] = statistics.median(both)
                lines.append(
                    f"{source:8} {LABELS['naive+sync']:36} {mibps(total, med['naive+sync']):8.1f} "
                    f"{med['naive+sync']:9.2f} {'':>6}  {'':>9}  "
                    + " ".join(f"{s:.2f}" for s in both)
                )
        if "recdock" in med:
            rss = max(r.peak_rss for r in by_method["recdock"])
            if "plain" in med:
                r = med["plain"] / med["recdock"]
                verdict.append(
                    f"{source}: recdock / plain copy      = {r:.2f}x  "
                    f"(target >= {TARGET_VS_PLAIN}: {'met' if r >= TARGET_VS_PLAIN else 'MISSED'})"
                )
            if "naive" in med:
                r = med["naive"] / med["recdock"]
                r2 = med["naive+sync"] / med["recdock"]
                verdict.append(
                    f"{source}: recdock / naive verified  = {r:.2f}x  "
                    f"(target >= {TARGET_VS_NAIVE}: {'met' if r >= TARGET_VS_NAIVE else 'MISSED'}"
                    "); "
                    f"with its final sync {r2:.2f}x"
                )
            verdict.append(
                f"{source}: recdock peak RSS          = {rss / 1e6:.1f} MB (target < 100 MB: "
                f"{'met' if rss < TARGET_RSS_BYTES else 'MISSED'})"
            )
    loads = [r.load for d in results.values() for runs in d.values() for r in runs]
    if loads:
        lines.append(
            f"1-minute load average at the start of the runs: median {statistics.median(loads):.1f}"
            f", max {max(loads):.1f} (on {os.cpu_count()} CPUs)"
        )
    return lines + [""] + verdict


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-gib", type=float, default=2.0, help="recorder size (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per method (default 3)")
    ap.add_argument(
        "--workdir", type=Path, help="where to build and copy (default: a new folder in /tmp)"
    )
    ap.add_argument(
        "--sources", default="folder,fat", help="comma-separated: folder, fat (default both)"
    )
    ap.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}"
    )
    ap.add_argument("--json", type=Path, help="also write the raw results to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (for inspection)")
    args = ap.parse_args(argv)
    # SIGTERM (or Ctrl-C) stops the run and still unmounts and removes the workdir
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sources = [s for s in args.sources.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    if unknown := {*sources} - {"folder", "fat"} | {*methods} - set(METHODS):
        ap.error(f"unknown source or method: {', '.join(sorted(unknown))}")
    recdock = str(Path(sys.executable).with_name("recdock"))
    if not os.access(recdock, os.X_OK):
        ap.error(f"{recdock} not found: run with the project's .venv/bin/python")
    if "fat" in sources and not (shutil.which("fusefat") and shutil.which("mcopy")):
        ap.error("the fat source needs fusefat and mtools (apt-get install fusefat mtools)")

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="recdock-bench-", dir=args.workdir))
    else:
        work = Path(tempfile.mkdtemp(prefix="recdock-bench-", dir="/tmp"))
    info = machine(work)
    print("machine:")
    for k, v in info.items():
        print(f"  {k}: " + v.replace("\n", "\n    "))
    fat = FatMount(work / "recorder.img", work / "mnt")
    try:
        return run(args, work, sources, methods, recdock, fat, info)
    finally:
        stop_child()
        fat.unmount()
        if args.keep or os.path.ismount(fat.mountpoint):
            print(f"kept {work}")
        else:
            remove_tree(work)


def run(args, work: Path, sources, methods, recdock: str, fat: FatMount, info) -> int:
    now = datetime.now(UTC)
    all_specs = specs(args.total_gib)
    folder = work / "recorder"
    t0 = time.perf_counter()
    build_folder(folder, all_specs, now)
    total = sum(s.files * s.size for s in all_specs)
    print(
        f"\nrecorder: {sum(s.files for s in all_specs)} media files, {total / MiB:.0f} MiB "
        f"({', '.join(f'{s.files} x {s.size / MiB:g} MiB' for s in all_specs)}), "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    if "fat" in sources:
        t0 = time.perf_counter()
        build_image(fat.image, folder, all_specs, now)
        print(
            f"FAT32 image: {fat.image.stat().st_size / MiB:.0f} MiB, "
            f"built in {time.perf_counter() - t0:.1f} s"
        )

    probe = files_under(folder)[0]
    how = drop_caches([folder])
    print(
        f"cold cache: {how}; after it fincore says {probe.name} has {resident_pages(probe)} cached"
    )

    funcs = {
        "raw": method_raw,
        "plain": method_plain,
        "naive": method_naive,
        "recdock": lambda s, w, t: method_recdock(s, w, t, recdock),
    }
    results: dict[str, dict[str, list[Run]]] = {s: {m: [] for m in methods} for s in sources}
    scratch = work / "out"
    for rep in range(args.reps):
        order = methods if rep % 4 in (0, 3) else methods[::-1]  # A B B A
        for source in sources:
            for m in order:
                remove_tree(scratch)
                scratch.mkdir()
                if source == "fat":
                    fat.unmount()
                    drop_caches([folder, fat.image])
                    fat.mount()
                    src = fat.mountpoint
                else:
                    drop_caches([folder])
                    src = folder
                CPU[0] = 0.0
                load = os.getloadavg()[0]
                r = funcs[m](src, scratch, total)
                r.cpu, r.load = CPU[0], load
                results[source][m].append(r)
                print(
                    f"rep {rep + 1}/{args.reps} {source:6} {LABELS[m]:36} {r.seconds:7.2f} s "
                    f"{mibps(total, r.seconds):8.1f} MiB/s  peak RSS {r.peak_rss / MiB:6.1f} MiB"
                    f"  CPU {r.cpu:6.2f} s  load {r.load:4.1f}"
                    + (f"  (+ sync {r.extra['sync']:.2f} s)" if "sync" in r.extra else ""),
                    flush=True,
                )
    remove_tree(scratch)
    print()
    for line in report(results, total):
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "total_bytes": total,
                    "results": {
                        s: {m: [r.__dict__ for r in runs] for m, runs in d.items()}
                        for s, d in results.items()
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
