"""Start-up: how much longer than a bare interpreter the command line takes to answer.

    .venv/bin/python bench/bench_cli.py [--runs 20] [--json FILE]

Run from the project root with the project's virtual environment. It times, in turns (each
round runs every command once, in a rotated order, so a noisy neighbour hits all alike):

* ``python -c pass``: the baseline, the same interpreter as the console scripts;
* ``recdock --help``;
* ``recdock status --json`` on a home made by a real offload (a simulated recorder of three
  files) with the embedded default configuration;
* ``recdock-central --help``.

Before timing it compiles the project's modules to bytecode (``python -m compileall``), as a
``pip install`` does on a station: an editable checkout run with ``PYTHONDONTWRITEBYTECODE``
would otherwise compile every module on every start and measure that instead.

It prints, per command, the median wall time, the median minus the baseline's median and the
ratio to it, and checks the goal: ``recdock status --json`` within 0.25 s of the bare
interpreter. It also lists the heavy modules each command imported (gpiozero, paho, FastAPI,
sqlite-utils, pydantic...), read from ``python -X importtime``: `recdock --help` and
`recdock status` must import none of gpiozero, paho, FastAPI or uvicorn.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL_STATUS_S = 0.25
HEAVY = (
    "gpiozero",
    "paho",
    "fastapi",
    "uvicorn",
    "starlette",
    "sqlite_utils",
    "pydantic",
    "requests",
    "pyudev",
    "wcmatch",
    "jsonschema",
)
MUST_NOT = ("gpiozero", "paho", "fastapi", "uvicorn")


def make_home(work: Path) -> Path:
    """A home made by a real offload, as an administrator would find it."""
    home = work / "home"
    rec = work / "rec"
    env = {**os.environ, "RECDOCK_CONFIG": ""}
    env.pop("RECDOCK_CONFIG")
    for args in (
        ["simulate", "recorder", str(rec), "--serial", "BENCH01", "--files", "3", "--size", "4096"],
        ["offload", str(rec)],
    ):
        subprocess.run(
            [str(BIN / "recdock"), "--home", str(home), *args],
            check=True,
            capture_output=True,
            env=env,
        )
    return home


def commands(home: Path) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "recdock --help": [str(BIN / "recdock"), "--help"],
        "recdock status --json": [str(BIN / "recdock"), "--home", str(home), "status", "--json"],
        "recdock-central --help": [str(BIN / "recdock-central"), "--help"],
    }


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(cmd: list[str]) -> list[str]:
    """The heavy top-level packages a command imports (python -X importtime)."""
    script = cmd[0]
    argv = [sys.executable, "-X", "importtime"]
    argv += [script, *cmd[1:]] if script != sys.executable else cmd[1:]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    found = set()
    for line in done.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        top = name.split(".")[0]
        if top in HEAVY:
            found.add(top)
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="Rounds (each runs every command).")
    parser.add_argument("--json", type=Path, help="Write the raw timings and the machine here.")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "agent", "sync", "central"],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory(prefix="recdock-bench-cli-") as tmp:
        cmds = commands(make_home(Path(tmp)))
        names = list(cmds)
        for name in names:  # warm the page cache and the bytecode caches
            time_once(cmds[name])
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.runs):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(time_once(cmds[name]))
        imports = {name: heavy_imports(cmds[name]) for name in names[1:]}
    base = statistics.median(times[names[0]])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"python: {platform.python_version()}; {args.runs} rounds, medians\n")
    print(f"{'command':<26} {'median':>8} {'- bare':>8} {'ratio':>6}  heavy imports")
    for name in names:
        med = statistics.median(times[name])
        heavy = ", ".join(imports.get(name, [])) or "-"
        print(f"{name:<26} {med:>7.3f}s {med - base:>+7.3f}s {med / base:>5.1f}x  {heavy}")
    status_over = statistics.median(times["recdock status --json"]) - base
    goal_met = status_over <= GOAL_STATUS_S
    print(
        f"\ngoal: recdock status --json within {GOAL_STATUS_S} s of the bare interpreter: "
        f"{status_over:+.3f} s, {'met' if goal_met else 'MISSED'}"
    )
    forbidden = {
        name: [m for m in imports[name] if m in MUST_NOT]
        for name in ("recdock --help", "recdock status --json")
    }
    clean = not any(forbidden.values())
    print(
        f"no gpiozero/paho/FastAPI/uvicorn for --help and status: {'yes' if clean else forbidden}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "times": times,
                    "imports": imports,
                },
                indent=1,
            )
        )
    return 0 if goal_met and clean else 1


if __name__ == "__main__":
    sys.exit(main())
