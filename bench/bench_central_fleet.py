"""The centre's read side at fleet size: 100 stations, 1,000 recorders, their history.

    .venv/bin/python bench/bench_central_fleet.py [--stations 100] [--recorders 1000]
        [--reports 30] [--faults 200] [--reps 7]

1. A central catalog (a temporary folder) gets, through the consumer's own write functions,
   every station's status, ``--reports`` health reports per recorder spread over the stations
   and the last 30 days (battery, clock offsets, units), a register entry for every other
   recorder and ``--faults`` open station faults.
2. Each read the dashboard makes (central/views.py: the recorder list, one unit's, the station
   list, the overview, one recorder's history) and one round of the centre's rules
   (central/rules.py) is timed, ``--reps`` times, as JSON the API would send (``json.dumps``).
3. Baseline, same run, same catalog: the floor of the recorder list, ``SELECT * FROM devices``
   with every row turned into a dict and dumped as JSON. The ratio says what the health
   words, the register join and the faults cost on top of reading the rows.

Prints medians in milliseconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central import views  # noqa: E402
from central.actions import CentralContext, set_register_entry  # noqa: E402
from central.catalog import CentralCatalog, events, faults  # noqa: E402
from central.rules import evaluate  # noqa: E402
from central.settings import CentreSettings  # noqa: E402


def build(catalog: CentralCatalog, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    names = [f"ST-{i:03d}" for i in range(args.stations)]
    with catalog.tx() as conn:
        for name in names:
            doc = {"station": name, "state": "online", "at": now.isoformat()}
            catalog.record_status(name, doc, live=True, received_at=now.isoformat())
        for r in range(args.recorders):
            serial = f"R-{r:05d}"
            for k in range(args.reports):
                at = now - timedelta(hours=1 + 24 * 30 * (args.reports - 1 - k) / args.reports)
                doc = {
                    "station": rng.choice(names), "device_serial": serial,
                    "at": at.isoformat(), "ready": rng.random() > 0.1, "unit": f"U-{r % 20}",
                    "battery_pct": rng.uniform(10, 100), "clock_offset_s": rng.uniform(-5, 5),
                    "clock_offset_after_s": 0.0, "free_bytes": 10**9, "reasons": [],
                }  # fmt: skip
                catalog.record_recorder(doc["station"], doc, received_at=at.isoformat())
        for f in range(args.faults):
            data = {"kind": "store.smart", "subject": f"disk{f}", "severity": "warning",
                    "detail": "x", "opened_at": now.isoformat()}  # fmt: skip
            faults.open_fault(conn, names[f % len(names)], f"f-{f}", data, now.isoformat())
    ctx = CentralContext(catalog)
    for r in range(0, args.recorders, 2):
        set_register_entry(ctx, f"R-{r:05d}", lifecycle="in_service", by="bench",
                           unit=f"U-{r % 20}")  # fmt: skip
    assert events.count(catalog.conn) == 0


def timed(fn: Callable[[], object], reps: int) -> float:
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        json.dumps(fn(), default=str)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


def baseline(catalog: CentralCatalog):
    from central.catalog import devices

    return devices.listing(catalog.conn)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=100)
    p.add_argument("--recorders", type=int, default=1000)
    p.add_argument("--reports", type=int, default=30)
    p.add_argument("--faults", type=int, default=200)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    logging.disable(logging.WARNING)  # the rules log every fault they open
    settings = CentreSettings()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        catalog = CentralCatalog(Path(tmp) / "central.db")
        t0 = time.perf_counter()
        build(catalog, args)
        print(f"built {args.stations} stations, {args.recorders} recorders x {args.reports} "
              f"reports, {args.faults} faults in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        evaluate(catalog, settings)  # the first round opens the faults it finds
        cases = {
            "baseline: devices rows as JSON": lambda: baseline(catalog),
            "recorder list (all)": lambda: views.recorder_list(catalog, settings),
            "recorder list (one unit)": lambda: views.recorder_list(catalog, settings, unit="U-3"),
            "station list": lambda: views.station_list(catalog, settings),
            "overview": lambda: views.overview(catalog, settings),
            "one recorder's history": lambda: views.recorder_history(catalog, "R-00042"),
            "rules round (evaluate)": lambda: evaluate(catalog, settings),
        }
        results = {name: timed(fn, args.reps) for name, fn in cases.items()}
        catalog.close()
    base = results["baseline: devices rows as JSON"]
    print(f"{'measured':36} {'median ms':>10} {'x baseline':>11}")
    for name, ms in results.items():
        print(f"{name:36} {ms:10.1f} {ms / base:11.1f}")


if __name__ == "__main__":
    main()
