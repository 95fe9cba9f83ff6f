"""A station catalog after years: docking, status, uploads, offloads, listings and verify at a
million recordings, each against an empty catalog in the same run.

    .venv/bin/python bench/bench_catalog.py                        # 1,000,000 recordings
    .venv/bin/python bench/bench_catalog.py --recordings 20000 --sessions 400 --reps 2  # smoke

1. Two homes, each with a real offload (`recdock offload` of a simulated recorder): "empty"
   keeps just that; "big" gets synthetic rows shaped like it (bench/synthetic_catalog.py):
   ``--recordings`` recordings in ``--sessions`` sessions, about 3 audit entries and 3
   outbox rows per recording (MQTT off: every event stays queued). All recordings count as
   synced in both homes, so an upload pass has nothing to send: its cost is its queries.
2. For ``--reps`` repetitions, alternating which home goes first, on both homes:
   - **docking**: a `recdock run --simulate` daemon per home; a fresh folder recorder is
     plugged into bay 1 (`recdock simulate plug`), timed until the bay shows "ready" (and
     "recognised") in the catalog, then unplugged;
   - **status**: `recdock status --json`, wall time of the process;
   - **upload pass**: :meth:`sync.upload.worker.UploadWorker.run_once` in this process;
   - **status, catalog part**: opening the catalog and taking the status snapshot in this
     process (the command's wall time is mostly the interpreter's start-up, which the
     catalog does not change);
   - **offload**: `recdock offload` of a fresh one-file recorder (an offload's fixed cost),
     and one by :class:`agent.offload.Offloader` in this process;
   - **catalog | head -1**: time to the first line of `recdock catalog --json`, and the
     process's peak RSS (GNU time, Debian package ``time``: a child of this large process
     would count this process's memory as its own).
3. Once per home: `recdock catalog --json > /dev/null` and `recdock verify --chain-only`,
   time and peak RSS.

Prints every run, the medians, the differences and whether the goals (issue 11) are met:
docking and status within 50 ms of the empty catalog's, an offload's fixed cost flat (within
50 ms), listings and verify under 200 MB.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_offload import machine  # noqa: E402
from synthetic_catalog import build  # noqa: E402

RECDOCK = str(Path(sys.executable).parent / "recdock")
TIME = "/usr/bin/time"  # GNU time: peak RSS of the command alone
CONFIG = """
station_id = "bench-st"
[store]
reserve_bytes = 0
buffer_bytes = 65536
[checks]
shift_hours = 0.01
approved_firmware = ["2.1.0", "2.2.0"]
"""
HOMES = ("empty", "big")
MB = 1_000_000


def recdock(home: Path, config: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [RECDOCK, "--home", str(home), "--config", str(config), *args],
        capture_output=True,
        text=True,
        **kw,
    )
    if done.returncode != 0:
        raise RuntimeError(f"recdock {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done


def recorder(work: Path, name: str, files: int, size_kib: int, config: Path) -> Path:
    path = work / "recorders" / name
    recdock(
        work / "scratch-home",
        config,
        "simulate",
        "recorder",
        str(path),
        "--serial",
        name,
        "--files",
        str(files),
        "--size",
        str(size_kib),
    )
    return path


def prepare(work: Path, recordings: int, sessions: int) -> tuple[dict[str, Path], Path]:
    config = work / "recdock.toml"
    config.write_text(CONFIG)
    homes = {h: work / h for h in HOMES}
    for h, home in homes.items():
        recdock(
            home, config, "offload", str(recorder(work, f"FIRST{h[0].upper()}", 3, 1024, config))
        )
    print(f"building the big catalog: {recordings:,} recordings in {sessions:,} sessions ...")
    counts = build(homes["big"], recordings, sessions)
    print(f"  {json.dumps(counts)}; catalog.db {size_of(homes['big'])}")
    for home in homes.values():
        all_synced(home)
    return homes, config


def size_of(home: Path) -> str:
    return f"{(home / 'catalog.db').stat().st_size / 1e9:.2f} GB"


def all_synced(home: Path) -> None:
    """The real offload's recordings count as uploaded too (the bench's own SQL)."""
    conn = sqlite3.connect(home / "catalog.db")
    with conn:
        conn.execute(
            "UPDATE recordings SET synced_at = offloaded_at, receipt = '{}' WHERE synced_at IS NULL"
        )
    conn.close()


# -- one measurement each -----------------------------------------------------------------------


def timed(cmd: list[str], *, stdout: Any = subprocess.DEVNULL) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (bytes) of a process run to its
    end, from GNU time (Debian package ``time``): a child of this (large) process would count
    this process's memory in its own peak RSS, a child of ``time`` does not. On a shared
    machine the CPU time says more than the wall time."""
    with tempfile.NamedTemporaryFile("r") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%M %U %S", "-o", out.name, *cmd], stdout=stdout, stderr=subprocess.DEVNULL
        )
        code = proc.wait()
        seconds = time.perf_counter() - t0
        if code not in (0, 1):
            raise RuntimeError(f"{' '.join(cmd)}: exit {code}")
        return seconds, *usage(out.name)


def usage(path: str) -> tuple[float, int]:
    """CPU seconds and peak RSS (bytes) from GNU time's ``%M %U %S``."""
    kib, user, system = Path(path).read_text().split()[-3:]
    return float(user) + float(system), int(kib) * 1024


def first_line(home: Path, config: Path) -> tuple[float, int]:
    """`recdock catalog --json | head -1`: time to the first line, peak RSS."""
    cmd = [RECDOCK, "--home", str(home), "--config", str(config), "catalog", "--json"]
    with tempfile.NamedTemporaryFile("r") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%M %U %S", "-o", out.name, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        seconds = time.perf_counter() - t0
        proc.stdout.close()
        proc.wait()
        assert line.startswith(b"{"), line
        return seconds, usage(out.name)[1]


def upload_pass(home: Path, config: Path) -> float:
    from agent.config import load_config
    from agent.config.links import UploadConfig
    from sync.upload.worker import UploadWorker

    upload = UploadConfig(enabled=True, endpoint="http://127.0.0.1:9/files/", token="x" * 32)
    worker = UploadWorker(load_config(config), home, stop=threading.Event(), upload=upload)
    try:
        t0 = time.perf_counter()
        summary = worker.run_once()
        seconds = time.perf_counter() - t0
    finally:
        worker.close()
    assert summary["candidates"] == 0, summary
    return seconds


def status_in_process(home: Path, config: Path) -> float:
    """Open the catalog and take `recdock status`'s snapshot, in this process: the catalog's
    part of the command, without the interpreter's start-up."""
    from agent.catalog import open_catalog
    from agent.config import load_config
    from agent.station.status import snapshot

    cfg = load_config(config)
    t0 = time.perf_counter()
    catalog = open_catalog(home, cfg.station_id, create=False)
    try:
        snapshot(catalog, cfg, home)
    finally:
        catalog.close()
    return time.perf_counter() - t0


def offload_in_process(home: Path, config: Path, source: Path) -> float:
    """One offload of ``source`` by :class:`agent.offload.Offloader`, in this process."""
    from agent.catalog import open_catalog
    from agent.config import load_config
    from agent.offload import Offloader
    from agent.recorder.profiles import ProfileSet

    cfg = load_config(config)
    profile = ProfileSet.load(cfg.profiles.dirs).get("simulated")
    t0 = time.perf_counter()
    catalog = open_catalog(home, cfg.station_id)
    try:
        report = Offloader(cfg, home, catalog).run(source, profile)
    finally:
        catalog.close()
    assert report.ok, report.failures
    return time.perf_counter() - t0


class Daemon:
    """`recdock run --simulate` on one home, docking recorders at bay 1."""

    def __init__(self, home: Path, config: Path) -> None:
        self.home, self.config = home, config
        self.log = (home / "daemon.log").open("w")
        self.proc = subprocess.Popen(
            [RECDOCK, "--home", str(home), "--config", str(config), "run", "--simulate"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait(lambda: (home / "run" / "dock.sock").exists(), 120, f"{home}: the daemon's dock")
        self.db = sqlite3.connect(home / "catalog.db", timeout=30)

    def state(self) -> str | None:
        row = self.db.execute("SELECT state FROM bays WHERE bay = 1").fetchone()
        return row[0] if row else None

    def dock(self, source: Path) -> tuple[float, float, float]:
        """Seconds from the plug (the simulated dock's socket, as `recdock simulate plug`
        sends it) to "recognised" and to "ready", and from the dock's answer to "ready"."""
        from agent.seams.dock.simulated import send_request

        t0 = time.perf_counter()
        send_request(self.home, {"op": "plug", "bay": 1, "source": str(source)})
        plugged = time.perf_counter()
        recognised = None
        while (state := self.state()) not in ("ready", "not_ready"):
            if state == "recognised" and recognised is None:
                recognised = time.perf_counter()
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{self.home}: no verdict after 120 s")
            time.sleep(0.001)
        ready = time.perf_counter()
        if state != "ready":
            raise RuntimeError(f"{self.home}: the recorder was not ready; see daemon.log")
        send_request(self.home, {"op": "unplug", "bay": 1})
        wait(lambda: self.state() == "idle", 60, "the bay to go idle")
        return (recognised or ready) - t0, ready - t0, ready - plugged

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.db.close()
        self.log.close()


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- the runs -------------------------------------------------------------------------------


def repeated(work: Path, homes: dict[str, Path], config: Path, reps: int) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = {h: {} for h in HOMES}
    daemons = {h: Daemon(home, config) for h, home in homes.items()}
    try:
        for rep in range(reps):
            order = HOMES if rep % 2 == 0 else tuple(reversed(HOMES))
            for h in order:
                one_rep(work, h, homes[h], config, daemons[h], rep, results[h])
            print(
                f"rep {rep + 1}/{reps}: "
                + "; ".join(
                    f"{h} dock {results[h]['dock_ready'][-1] * 1000:.0f} ms, status "
                    f"{results[h]['status'][-1] * 1000:.0f} ms"
                    for h in HOMES
                )
            )
    finally:
        for d in daemons.values():
            d.stop()
    return results


def one_rep(
    work: Path,
    h: str,
    home: Path,
    config: Path,
    daemon: Daemon,
    rep: int,
    out: dict[str, list[float]],
) -> None:
    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    to_recognised, to_ready, after_plug = daemon.dock(
        recorder(work, f"D{h[0].upper()}{rep:04d}", 2, 256, config)
    )
    add("dock_recognised", to_recognised)
    add("dock_ready", to_ready)
    add("dock_ready_after_plug", after_plug)
    base = [RECDOCK, "--home", str(home), "--config", str(config)]
    wall, cpu, _rss = timed([*base, "status", "--json"])
    add("status", wall)
    add("status_cpu", cpu)
    add("status_in_process", status_in_process(home, config))
    all_synced(home)  # the docking's recordings too: the pass measures its queries
    add("upload_pass", upload_pass(home, config))
    source = recorder(work, f"O{h[0].upper()}{rep:04d}", 1, 64, config)
    wall, cpu, _rss = timed([*base, "offload", str(source)])
    add("offload", wall)
    add("offload_cpu", cpu)
    again = recorder(work, f"P{h[0].upper()}{rep:04d}", 1, 64, config)
    add("offload_in_process", offload_in_process(home, config, again))
    seconds, rss = first_line(home, config)
    add("catalog_head", seconds)
    add("catalog_head_rss", rss)


def once(homes: dict[str, Path], config: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for h, home in homes.items():
        base = [RECDOCK, "--home", str(home), "--config", str(config)]
        listing_s, _cpu, listing_rss = timed([*base, "catalog", "--json"])
        verify_s, _cpu, verify_rss = timed([*base, "verify", "--chain-only"])
        out[h] = {
            "catalog_s": listing_s,
            "catalog_rss": listing_rss,
            "verify_chain_s": verify_s,
            "verify_chain_rss": verify_rss,
        }
        print(
            f"{h}: catalog --json {listing_s:.1f} s {listing_rss / MB:.0f} MB; "
            f"verify --chain-only {verify_s:.1f} s {verify_rss / MB:.0f} MB"
        )
    return out


def summary(results: dict[str, Any], single: dict[str, dict[str, float]]) -> list[str]:
    med = {h: {k: statistics.median(v) for k, v in results[h].items()} for h in HOMES}
    lines = [f"{'':34} {'empty':>12} {'big':>12} {'big - empty':>12}"]
    for key, label in (
        ("dock_recognised", "docking: plug -> recognised"),
        ("dock_ready", "docking: plug -> ready"),
        ("dock_ready_after_plug", "docking: dock answered -> ready"),
        ("status", "status --json"),
        ("status_cpu", "status --json, CPU time"),
        ("status_in_process", "status: open catalog + snapshot"),
        ("upload_pass", "uploader pass (nothing to send)"),
        ("offload", "offload of 1 file (process)"),
        ("offload_cpu", "offload of 1 file, CPU time"),
        ("offload_in_process", "offload of 1 file, in process"),
        ("catalog_head", "catalog --json | head -1"),
    ):
        e, b = med["empty"][key], med["big"][key]
        lines.append(
            f"{label:34} {e * 1000:>9.0f} ms {b * 1000:>9.0f} ms {(b - e) * 1000:>9.0f} ms"
        )
    for key, label in (("catalog_head_rss", "catalog | head -1, peak RSS"),):
        lines.append(
            f"{label:34} {med['empty'][key] / MB:>9.0f} MB {med['big'][key] / MB:>9.0f} MB"
        )
    for key, label, unit in (
        ("catalog_s", "catalog --json (all rows)", "s"),
        ("catalog_rss", "catalog --json, peak RSS", "MB"),
        ("verify_chain_s", "verify --chain-only", "s"),
        ("verify_chain_rss", "verify --chain-only, peak RSS", "MB"),
    ):
        scale = MB if unit == "MB" else 1
        e, b = single["empty"][key] / scale, single["big"][key] / scale
        lines.append(f"{label:34} {e:>9.1f} {unit:2} {b:>9.1f} {unit:2}")
    lines += goals(med, single)
    return lines


def goals(med: dict[str, dict[str, float]], single: dict[str, dict[str, float]]) -> list[str]:
    def within(key: str, ms: float) -> str:
        d = (med["big"][key] - med["empty"][key]) * 1000
        return f"{d:+.0f} ms: {'met' if d <= ms else 'NOT met'}"

    def under(value: float) -> str:
        return f"{value / MB:.0f} MB: {'met' if value < 200 * MB else 'NOT met'}"

    big = single["big"]
    return [
        "",
        f"goal: docking to ready within 50 ms of the empty catalog's: {within('dock_ready', 50)}",
        f"goal: status --json within 50 ms of the empty catalog's:    {within('status', 50)}",
        f"      (its CPU time:                                        {within('status_cpu', 50)})",
        f"      (its catalog part:                                    "
        f"{within('status_in_process', 50)})",
        f"goal: an offload's fixed cost flat (within 50 ms):          {within('offload', 50)}",
        f"      (its CPU time:                                        {within('offload_cpu', 50)})",
        f"      (in process:                                          "
        f"{within('offload_in_process', 50)})",
        f"goal: catalog --json under 200 MB:                          {under(big['catalog_rss'])}",
        f"goal: catalog --json | head -1 under 200 MB:                "
        f"{under(med['big']['catalog_head_rss'])}",
        f"goal: verify --chain-only under 200 MB:                     "
        f"{under(big['verify_chain_rss'])}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recordings", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--json", type=Path, help="write every run and the machine here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--reuse", type=Path, help="measure again in a work folder kept by --keep (no build)"
    )
    args = ap.parse_args()
    work = args.reuse or Path(tempfile.mkdtemp(prefix="recdock-bench-catalog-", dir=args.workdir))
    info = machine(work)
    for k, v in info.items():
        print(f"{k}: {v}")
    print(f"sqlite: {sqlite3.sqlite_version}")
    try:
        if args.reuse:
            homes, config = {h: work / h for h in HOMES}, work / "recdock.toml"
        else:
            homes, config = prepare(work, args.recordings, args.sessions)
        results = repeated(work, homes, config, args.reps)
        single = once(homes, config)
        print("\n".join(summary(results, single)))
        if args.json:
            args.json.write_text(
                json.dumps({"machine": info, "runs": results, "once": single}, indent=1)
            )
    finally:
        if args.keep or args.reuse:
            print(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
