"""Instructions per ingested event at the centre, counted by callgrind (repeatable under load).

    .venv/bin/python bench/callgrind_ingest.py [--stations 20] [--events 100] [--batch 100]
        [--ways none,one,batch]

Makes ``--stations`` x ``--events`` signed events (bench/bench_central.py's), interleaved
station by station (the order least kind to a run of one station's events), then, for each
way, runs a child process under ``valgrind --tool=callgrind`` that builds the same events
and puts them through :class:`central.messages.MessageHandler` into a fresh catalog in
batches of ``--batch`` (the shipped broker's ``max_inflight_messages``), one transaction
each:

* ``none``: everything but the handling (interpreter, imports, making the events): the floor
  subtracted from the others;
* ``one``: :meth:`~central.messages.MessageHandler.handle` for each message, every
  signature checked (the only way of the code before ``handle_batch``);
* ``batch``: :meth:`~central.messages.MessageHandler.handle_batch`, a station's run of
  chained events proven by its newest signature (central/chain_proof.py).

Prints the instructions per event of each way (minus ``none``). Run the same file against
older code with ``PYTHONPATH=OLD`` (``--ways none,one``) to compare. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so older code can be measured

WAYS = ("none", "one", "batch")
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(way: str, stations: int, events: int, batch: int, folder: Path) -> None:
    """Build the events and handle them ``way`` (the process callgrind counts)."""
    from bench.bench_central import make_station
    from central.catalog import CentralCatalog
    from central.enrolment import StationKeys
    from central.messages import MessageHandler
    from sync.wire.signing import public_key_text

    start = datetime(2026, 12, 1, tzinfo=UTC)
    made = [make_station(f"ST-{i:03d}", events, start) for i in range(stations)]
    messages = [st.messages[i] for i in range(events) for st in made]
    catalog = CentralCatalog(folder / f"{way}.db")
    keys = StationKeys({st.name: public_key_text(st.key) for st in made})
    handler = MessageHandler(catalog, keys, Counter())
    for i in range(0, len(messages), batch):
        chunk = messages[i : i + batch]
        if way == "one":
            with catalog.tx():
                for topic, payload in chunk:
                    handler.handle(topic, payload)
        elif way == "batch":
            handler.handle_batch([(t, p, False) for t, p in chunk])
    if way != "none" and handler.stats["stored"] != len(messages):
        raise SystemExit(f"{way}: {dict(handler.stats)}")
    catalog.close()


def count(way: str, args: argparse.Namespace, folder: Path) -> int:
    """Instructions of the child process for ``way``, as callgrind counts them."""
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/callgrind.{way}",
        sys.executable, __file__, "--child", way, "--stations", str(args.stations),
        "--events", str(args.events), "--batch", str(args.batch), "--folder", str(folder),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{way}: valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=20)
    p.add_argument("--events", type=int, default=100, help="events per station")
    p.add_argument("--batch", type=int, default=100, help="messages per transaction")
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.stations, args.events, args.batch, args.folder)
        return
    ways = [w for w in args.ways.split(",") if w]
    total = args.stations * args.events
    print(f"{args.stations} stations x {args.events} events, batches of {args.batch}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="callgrind-ingest-") as tmp:
        (Path(tmp) / "warm").mkdir()
        warm = [sys.executable, __file__, "--child", ways[-1], "--stations", "2", "--events",
                "2", "--batch", "2", "--folder", f"{tmp}/warm"]  # fmt: skip
        subprocess.run(warm, check=True)  # bytecode compiled before anything is counted
        counts = {way: count(way, args, Path(tmp)) for way in ways}
    floor = counts.get("none", 0)
    for way, n in counts.items():
        per = (n - floor) / total if way != "none" else n / total
        print(f"{way:6} {n:>15,} instructions  {per / 1e6:8.3f} M per event"
              + (" (the floor, per event)" if way == "none" else ""))  # fmt: skip


if __name__ == "__main__":
    main()
