"""Issue 14's load, measured: the fleet (bench/fleet.py) against a running recdock-central.

    .venv/bin/python bench/bench_central.py fleet                       # 500 x 8, 4,000 recorders
    .venv/bin/python bench/bench_central.py fleet --stations 20 --recorders 160 --seconds 20
    .venv/bin/python bench/bench_central.py fleet --workers 2              # a worker group

This module keeps one run: the fleet built and everything it will send made before anything
is timed, a Mosquitto with the shipped configuration (tests/mosquitto.py), the generator's
ceiling, recdock-central started as a process or ``--workers`` of them as a worker group
(bench/fleet_centre.py), the preload, and one
phase per rate (``--rates``: multiples of the realistic rate, bench/fleet.py), each measured
by the observers while the pacer (bench/fleet_wire.py) hands the schedule over. It prints,
per phase: the rate offered, events ingested a second, the backlog when publishing stopped
and how long it took to drain, the lag from hand-over to the JSON API and to the dashboard,
how late the pacer was (the generator's own limit), and each dashboard page against its JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import fleet_centre as fc
from fleet import Dock, Shape, SimStation, Slot, build_stations, counts, preload, schedule
from fleet import realistic_dockings_per_hour as realistic
from fleet_centre import Centre, Observers, centre, quantiles, verify, wait_events
from fleet_wire import Wire, issue_certificates

from tests.mosquitto import CENTRAL, Mosquitto


def machine() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f}")  # fmt: skip


def options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_central.py fleet", description=__doc__.split("\n")[0])
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--bays", type=int, default=8)
    p.add_argument("--recorders", type=int, default=4000)
    p.add_argument("--files", type=int, default=20, help="recordings a docking")
    p.add_argument("--seconds", type=float, default=90.0, help="length of each phase")
    p.add_argument("--rates", default="1,10", help="phases: multiples of the realistic rate")
    p.add_argument(
        "--per-hour",
        type=float,
        default=None,
        help="the base rate in dockings an hour (default: the realistic rate)",
    )
    p.add_argument("--probes", type=int, default=20, help="probed dockings a phase")
    p.add_argument("--page-every", type=float, default=2.0, help="seconds between page rounds")
    p.add_argument(
        "--database",
        default=None,
        help="recdock-central's --database URL; 'postgresql': a throwaway durable cluster "
        "(tests/postgres.py); default: SQLite in the data folder",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="recdock-central processes: above 1, a worker group on one data folder",
    )
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument(
        "--stations-dir",
        type=Path,
        default=None,
        help="the simulated stations' catalogs (default /dev/shm when it exists)",
    )
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    return p.parse_args(argv)


def generate(stations: list[SimStation], args: argparse.Namespace, shape: Shape):  # noqa: ANN201
    """The preload and every phase's schedule, made before anything is timed."""
    rng = random.Random(14)
    dock = Dock(shape, rng)
    t0 = time.perf_counter()
    pre = preload(stations, dock)
    phases = {}
    for rate in [float(x) for x in args.rates.split(",") if x]:
        per_hour = rate * (args.per_hour or realistic(shape))
        phases[rate] = schedule(stations, dock, per_hour=per_hour, seconds=args.seconds,
                                probes=args.probes, rng=rng)  # fmt: skip
    made = time.perf_counter() - t0
    total = len(pre) + sum(len(m.messages) for s in phases.values() for m in s)
    print(f"made {total} signed messages in {made:.1f} s ({total / made:.0f} a second, "
          f"single thread, not timed); preload {counts(pre)}")  # fmt: skip
    return pre, phases


def run_phase(wire: Wire, c: Centre, slots: list[Slot], pages: dict[str, str], args) -> dict:  # noqa: ANN001
    """One phase: the pacer hands the schedule over while the observers watch; then the
    drain until the centre holds every event sent."""
    base = c.events()
    sent_events = sum(m.is_event for s in slots for m in s.messages)
    load0 = os.getloadavg()[0]
    obs = Observers(c, pages, args.page_every).start()
    t0 = time.monotonic()
    pace = wire.pace(slots, args.seconds, obs.probe)
    at_end = c.events() - base
    drained = wait_events(c, base + sent_events, args.drain_timeout)
    total_s = time.monotonic() - t0
    obs.settle(60)
    seen = obs.stop()
    return {"messages": pace.sent, "events": sent_events, "seconds": pace.seconds,
            "offered_events_per_s": sent_events / args.seconds,
            "offered_messages_per_s": pace.sent / args.seconds,
            "ingested_events_per_s": sent_events / total_s,
            "ingest_while_publishing_per_s": at_end / pace.seconds,
            "backlog_at_end": sent_events - at_end, "drain_s": drained,
            "pacer_late_s": quantiles(pace.late_s), "lag_api_s": quantiles(seen.lag_api),
            "lag_dashboard_s": quantiles(seen.lag_html), "probes": len(seen.lag_api),
            "probes_unseen": seen.unseen, "load": [load0, os.getloadavg()[0]],
            "pages": {f"{n} {k}": quantiles(v) for (n, k), v in seen.pages.items()},
            "consumers": c.consumers(),
            "page_runs": {f"{n} {k}": len(v) for (n, k), v in seen.pages.items()},
            "page_errors": seen.page_errors}  # fmt: skip


def dashboard_pages(c: Centre) -> dict[str, str]:
    """The pages timed: the overview, the first page of recorders and of stations, and one
    fault the centre holds after the preload (the simulated stations' own state is already
    the end of every phase, made before: a fault they opened may not have been sent yet)."""
    pages = {"overview": "/", "recorders": "/recorders", "stations": "/stations"}
    held = c.api("/api/faults?limit=1")
    if held:
        pages["fault"] = f"/faults/{quote(held[0]['station'])}/{quote(held[0]['id'])}"
    return pages


def handshake(wire: Wire, c: Centre, pre: list) -> list:  # noqa: ANN001
    """The centre's consumer subscribes as it starts; hand over the first event until it is
    counted (a repeat is a duplicate the centre drops), then the rest."""
    first = next(i for i, m in enumerate(pre) if m.is_event)
    deadline = time.monotonic() + 60
    while c.events() < 1:
        if time.monotonic() > deadline:
            raise SystemExit("the centre counted no event in 60 s: is its consumer subscribed?")
        wire.send(pre[: first + 1])
        time.sleep(0.5)  # the next try, if the first was sent before the subscription
    return pre[first + 1 :]


def report(results: dict, shape: Shape, args: argparse.Namespace) -> None:
    per_hour = args.per_hour or realistic(shape)
    print(f"\n{args.workers} worker(s) on {args.database or 'sqlite'}; base rate: "
          f"{per_hour:.0f} dockings an hour ({per_hour / 3600:.2f} a second), "
          f"{shape.files} recordings each; phases of {args.seconds:.0f} s")  # fmt: skip
    for rate, r in results.items():
        api, dash, late = r["lag_api_s"], r["lag_dashboard_s"], r["pacer_late_s"]
        print(
            f"\nx{rate:g}: {r['messages']} messages ({r['offered_messages_per_s']:.0f}/s), "
            f"{r['events']} events offered at {r['offered_events_per_s']:.0f}/s; "
            f"ingested {r['ingested_events_per_s']:.0f}/s "
            f"overall, {r['ingest_while_publishing_per_s']:.0f}/s while publishing; backlog "
            f"{r['backlog_at_end']} events at the end, drained in {r['drain_s']:.1f} s"
        )
        print(
            f"  lag to the API (median/p95/max s): {api[0]:.2f} {api[1]:.2f} {api[2]:.2f}; "
            f"to the dashboard: {dash[0]:.2f} {dash[1]:.2f} {dash[2]:.2f} "
            f"({r['probes']} probes, {r['probes_unseen']} not seen)"
        )
        print(
            f"  pacer late (median/p95/max s): {late[0]:.3f} {late[1]:.3f} {late[2]:.3f}; "
            f"load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}"
        )
        received = [w.get("messages", {}).get("received", 0) for w in r["consumers"]]
        print(f"  messages received by each worker since it started: {received}")
        print(f"  {'page':<12} {'html s':>8} {'json s':>8} {'html/json':>9} {'runs':>5}")
        for name in ("overview", "recorders", "stations", "fault"):
            if f"{name} html" not in r["pages"]:
                continue
            html, js = r["pages"][f"{name} html"][0], r["pages"][f"{name} json"][0]
            runs = r["page_runs"][f"{name} html"]
            print(f"  {name:<12} {html:8.3f} {js:8.3f} {html / js:8.2f}x {runs:5d}")
        if r["page_errors"]:
            print(f"  pages not timed (not 2xx): {len(r['page_errors'])}, first "
                  f"{r['page_errors'][0]}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    if args.workers < 1:
        raise SystemExit("--workers: at least 1")
    fc.check_database(args.database)  # before anything is built
    shape = Shape(args.stations, args.bays, args.recorders, args.files)
    print("machine:", machine())
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-fleet-")))  # fmt: skip
        shm = Path("/dev/shm")
        base = args.stations_dir or (shm if shm.is_dir() and os.access(shm, os.W_OK) else work)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fleet-st-",
                                                                      dir=base)))  # fmt: skip
        extra = stack.enter_context(fc.catalog_database(args.database))
        results = run(work, folder, shape, args, extra)
    report(results["phases"], shape, args)
    stored = results["stored"]
    print(f"\nthe centre holds {stored['counts']['events']} events, {stored['recorders']} "
          f"recorders, {stored['open faults']} open faults; "
          f"{len(stored['problems'])} problems")  # fmt: skip
    for problem in stored["problems"][:20]:
        print("  PROBLEM:", problem)
    if args.json:
        args.json.write_text(json.dumps(results, default=str, indent=1))
    return 1 if stored["problems"] else 0


def run(work: Path, folder: Path, shape: Shape, args: argparse.Namespace, extra) -> dict:  # noqa: ANN001
    t0 = time.perf_counter()
    stations = build_stations(folder, shape)
    print(f"{len(stations)} station catalogs in {time.perf_counter() - t0:.1f} s")
    pre, phases = generate(stations, args, shape)
    out: dict = {"machine": machine(), "shape": shape.__dict__, "phases": {},
                 "workers": args.workers, "database": args.database or "sqlite"}  # fmt: skip
    with Mosquitto(work / "broker") as broker:
        t0 = time.perf_counter()
        broker.tls(CENTRAL)  # the centre's by the openssl CLI, as in the tests
        issue_certificates(broker.pki, [s.name for s in stations])
        print(f"{len(stations) + 1} client certificates in {time.perf_counter() - t0:.1f} s")
        wire = Wire(broker, stations)
        print(f"{len(stations)} stations connected in {wire.connect():.1f} s")
        try:
            fastest = phases[max(phases)]
            out["ceiling_per_s"] = wire.ceiling([m for s in fastest for m in s.messages])
            print(f"generator ceiling (unpaced, broker alone): {out['ceiling_per_s']:.0f} "
                  "messages a second")  # fmt: skip
            with centre(work / "centre", broker, stations, extra, args.workers) as c:
                out["preload"] = load(wire, c, pre, args)
                pages = dashboard_pages(c)
                for rate, slots in phases.items():
                    out["phases"][rate] = run_phase(wire, c, slots, pages, args)
                out["stored"] = verify(c, stations)
                out["stored"]["problems"] += [f"a station's connection dropped: {d}"
                                              for d in wire.dropped]  # fmt: skip
        finally:
            wire.close()
            for st in stations:
                st.close()
    return out


def load(wire: Wire, c: Centre, pre: list, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """The preload, unpaced: the centre's ingest when a whole fleet arrives at once."""
    events = sum(m.is_event for m in pre)
    t0 = time.monotonic()
    rest = handshake(wire, c, pre)
    wire.send(rest)
    wait_events(c, events, args.drain_timeout)
    seconds = time.monotonic() - t0
    print(f"preload: {len(pre)} messages, {events} events ingested in {seconds:.1f} s "
          f"({events / seconds:.0f} events, {len(pre) / seconds:.0f} messages a second, "
          "unpaced)")  # fmt: skip
    return {"messages": len(pre), "events": events, "seconds": seconds}
