"""The dashboard at fleet size: its pages against the same query's JSON, in the same run.

    .venv/bin/python bench/bench_dashboard.py                                  # 100 x 10
    .venv/bin/python bench/bench_dashboard.py --stations 10 --per-station 10 --reps 3  # smoke

1. A central catalog with ``--stations`` stations (online), ``--per-station`` recorders at each
   (1,000 in all by default), each docked ``--history`` times (its checks events: the
   recorder page's history) and a fault open on every tenth recorder, written through the
   catalog's own functions.
2. recdock-central with its dashboard, served by uvicorn on loopback; one logged-in session.
3. For ``--reps`` repetitions, alternating which goes first, each page as HTML and as its
   JSON (``?format=json``: the same read functions, no template): ``/recorders`` (its first
   page of 100: the list is paged in SQL), its last page and one station's recorders, ``/``
   (the overview: every recorder and station, worst first), ``/stations``, and one
   recorder's page. Wall time of the HTTP request, client side.

Prints every run, the medians, the HTML/JSON ratio and whether the goal (issue 12) is met: a
page of 1,000 recorders and 100 stations renders in under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_offload import machine  # noqa: E402

from central.catalog import CentralCatalog, events, faults  # noqa: E402
from sync.wire.chain import GENESIS, entry_hash  # noqa: E402
from tests.central_server import serve_app  # noqa: E402
from tests.dashboard_tools import dashboard_app, login  # noqa: E402

GOAL_S = 1.0


def _health(station: str, serial: str, at: str, i: int) -> dict:
    battery = 40 + (i * 7) % 60
    return {
        "station": station,
        "device_serial": serial,
        "at": at,
        "bay": i % 4 + 1,
        "ready": battery >= 50,
        "reasons": [] if battery >= 50 else [f"battery {battery} % < 50 %"],
        "checks": {
            "battery": {
                "ok": battery >= 50,
                "value": f"{battery} %",
                "threshold": "",
                "detail": "",
            },
            "storage": {"ok": True, "value": "30.1 GiB free", "threshold": "", "detail": ""},
        },
        "clock_offset_s": (i % 9) * 0.4 - 1.6,
        "officer": f"{100000 + i}",
        "unit": f"unit-{i % 12}",
    }


def _station(catalog: CentralCatalog, station: str, per_station: int, history: int, n0: int):
    now = datetime.now(UTC)
    at = now.isoformat()
    catalog.record_status(
        station, {"station": station, "state": "online", "at": at}, live=True, received_at=at
    )
    report = {"station": station, "at": at, "version": "0.1.0",
              "store": {"free_bytes": (n0 % 7) * 2**30, "total_bytes": 64 * 2**30},
              "events": {"count": n0 % 5, "oldest_age_s": 60.0 * (n0 % 5) or None},
              "uploads": {"enabled": True, "count": 3, "bytes": 3 * 2**28, "oldest_age_s": 900.0},
              "clock": {"synchronised": n0 % 3 > 0}, "bays": {"total": 4, "in_use": 1}}  # fmt: skip
    catalog.record_health(station, report, live=True, received_at=at)  # the stations page's
    prev, seq = GENESIS, 0
    for k in range(per_station):
        i = n0 + k
        serial = f"BENCH{i:05d}"
        for h in range(history):
            seq += 1
            when = (now - timedelta(days=history - h)).isoformat()
            data = {"ready": True, "reasons": [], "clock_offset_s": h * 0.3,
                    "device_serial": serial,
                    "results": [{"name": "battery", "value": f"{90 - h} %"}]}  # fmt: skip
            doc = {"event_id": f"{station}:bench:{seq}", "station": station, "seq": seq,
                   "at": when, "kind": "checks", "subject": serial, "data": data,
                   "prev_hash": prev}  # fmt: skip
            doc["hash"] = prev = entry_hash(prev, seq, when, "checks", serial, _canon(data))
            catalog.record_event(doc, received_at=at)
        catalog.record_recorder(station, _health(station, serial, at, i), received_at=at)
        if i % 10 == 0:
            with catalog.tx() as conn:
                fault = {"kind": "recorder.battery", "subject": serial, "severity": "error",
                         "detail": "battery does not charge", "opened_at": at}  # fmt: skip
                faults.open_fault(conn, station, f"f{i}", fault, at)


def _canon(data: dict) -> str:
    from sync.wire.chain import canonical

    return canonical(data)


def build(folder: Path, stations: int, per_station: int, history: int):  # -> FastAPI
    app = dashboard_app(folder)
    catalog: CentralCatalog = app.state.catalog
    for s in range(stations):
        _station(catalog, f"ST-{s:03d}", per_station, history, s * per_station)
    assert events  # the events module is the owner of the rows written above
    return app


def _timed(session, url: str) -> tuple[float, int]:  # noqa: ANN001
    start = time.perf_counter()
    r = session.get(url, timeout=60)
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    return elapsed, len(r.content)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        folder = Path(tmp)
        print("machine:", machine(folder))
        t0 = time.perf_counter()
        app = build(folder, args.stations, args.per_station, args.history)
        print(f"catalog built in {time.perf_counter() - t0:.1f} s: {app.state.catalog.counts()}")
        pages = {"recorders": "/recorders", "recorders, last page": "/recorders?page=10",
                 "recorders, one station": "/recorders?station=ST-042", "overview": "/",
                 "stations": "/stations", "recorder": "/recorders/BENCH00010"}  # fmt: skip
        results: dict[tuple[str, str], list[float]] = {}
        sizes: dict[tuple[str, str], int] = {}
        with serve_app(app) as url:
            session = login(url, "view")
            for rep in range(args.reps):
                for name, path in pages.items():
                    order = ("html", "json") if rep % 2 == 0 else ("json", "html")
                    for kind in order:
                        joiner = "&" if "?" in path else "?"
                        target = url + path + (f"{joiner}format=json" if kind == "json" else "")
                        elapsed, size = _timed(session, target)
                        results.setdefault((name, kind), []).append(elapsed)
                        sizes[(name, kind)] = size
        return report(args, pages, results, sizes)


def report(args, pages, results, sizes) -> int:  # noqa: ANN001
    print(f"\n{args.stations} stations x {args.per_station} recorders, {args.reps} repetitions")
    print(f"{'page':<24} {'html s':>8} {'json s':>8} {'html/json':>9} {'html KiB':>9}  runs (html)")
    worst = 0.0
    for name in pages:
        html, js = (
            statistics.median(results[(name, "html")]),
            statistics.median(results[(name, "json")]),
        )
        worst = max(worst, html)
        runs = " ".join(f"{x:.3f}" for x in results[(name, "html")])
        kib = sizes[(name, "html")] / 1024
        print(f"{name:<24} {html:8.3f} {js:8.3f} {html / js:8.2f}x {kib:9.0f}  {runs}")
    met = worst < GOAL_S
    verdict = "met" if met else "NOT met"
    print(f"\ngoal: every page < {GOAL_S:.0f} s: slowest median {worst:.3f} s: {verdict}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--per-station", type=int, default=10)
    parser.add_argument("--history", type=int, default=5, help="checks events per recorder")
    parser.add_argument("--reps", type=int, default=7)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
