"""The centre under load: how many signed events one central worker ingests a second.

    .venv/bin/python bench/bench_central.py [--stations 20] [--events 2000] [--reps 3]
        [--paths compiled,jsonschema] [--sample 2000] [--database postgresql]

Issue 14 names this file. Its ingest scenario is below; ``bench_central.py fleet [--help]`` is
the full fleet profile (bench/fleet_run.py: 500 stations with 8 bays and 4,000 recorders,
status, bays, recorder checks and faults, the lag to the API and the dashboard, and
``--database``/``--workers`` passed to recdock-central).

**Ingest through a real broker.** A Mosquitto runs the shipped configuration
(tests/mosquitto.py: TLS, client certificates, the ACL), ``--stations`` simulated stations
(each its own Ed25519 key and certificate) hold ``--events`` audit events each, a valid hash
chain signed as a station signs it (sync/wire/signing.py), made before anything is timed.
Per repetition and per code path (``--paths``), a central consumer (central/consumer.py, its
own persistent session and a fresh catalog) subscribes once and goes away; the stations
publish every event at QoS 1 (the broker queues them for the absent consumer); then the
consumer is started again and the time from its start until the last event is committed is
measured: events ingested per second, the broker's delivery, JSON decoding, the signature,
the JSON Schema, the chain check and the catalog's batched commits included. The paths are
measured in turns (A B, B A, ...) in the same run, on the same messages:

* ``compiled``: the code as it is (the schemas compiled by fastjsonschema);
* ``jsonschema``: the same consumer with every payload validated by jsonschema (the code path
  before issue 14).

**Where the time goes, in process.** ``--sample`` events are put through each step alone
(decode, Ed25519 verification with the event hash recomputed, each validator, and the
catalog's store in batches of 1,000 in one transaction each): microseconds per event and the
share of each step in the compiled path.

``--database postgresql`` puts every catalog of the run (each drain's fresh one, the per-step
one) in a throwaway PostgreSQL cluster (tests/postgres.py), durable as recdock-central's
SQLite catalog is (fsync and synchronous commit on), instead of a SQLite file.

Prints every run, the medians and the ratio. Needs Mosquitto and openssl (scripts/setup).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from central.catalog import CentralCatalog, events  # noqa: E402
from central.consumer import MqttConsumer  # noqa: E402
from central.enrolment import SodiumKey, StationKeys  # noqa: E402
from central.messages import MessageHandler, PayloadValidator, _decode  # noqa: E402
from sync.wire import topics  # noqa: E402
from sync.wire.chain import GENESIS, canonical, entry_hash  # noqa: E402
from sync.wire.signing import public_key_text, sign_payload, verify_doc  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

PATHS = ("compiled", "jsonschema")


@dataclass
class Station:
    name: str
    key: Ed25519PrivateKey
    messages: list[tuple[str, bytes]]


def make_station(name: str, count: int, start: datetime) -> Station:
    """``count`` signed events of one station: a valid chain, as its outbox sends them."""
    key = Ed25519PrivateKey.generate()
    prev, out = GENESIS, []
    topic = topics.event(name)
    for seq in range(1, count + 1):
        at = (start + timedelta(seconds=seq)).isoformat(timespec="microseconds")
        serial = f"R-{seq % 97:05d}"
        data = {"path": f"DCIM/{seq:06d}.MP4", "size": 1_000_000 + seq, "device": serial,
                "sha256": f"{seq:064x}"}  # fmt: skip
        digest = entry_hash(prev, seq, at, "file.stored", serial, canonical(data))
        doc = {"event_id": f"{name}:bench:{seq}", "station": name, "seq": seq, "at": at,
               "kind": "file.stored", "subject": serial, "data": data, "prev_hash": prev,
               "hash": digest}  # fmt: skip
        out.append((topic, sign_payload(key, topic, canonical(doc).encode())))
        prev = digest
    return Station(name, key, out)


def consumer(broker: Mosquitto, catalog: CentralCatalog, keys: StationKeys, path: str):
    settings = broker.consumer_settings(client_id=f"recdock-central-{path}")
    c = MqttConsumer(catalog, settings, keys=keys)
    if path == "jsonschema":
        c.handler.validator = PayloadValidator(compiled=False)
    return c


class Catalogs:
    """Where the run's catalogs are made: SQLite files in ``folder``, or databases of a
    PostgreSQL ``cluster`` (tests/postgres.py)."""

    def __init__(self, folder: Path, cluster=None) -> None:  # noqa: ANN001
        self.folder, self.cluster = folder, cluster

    def new(self, name: str) -> CentralCatalog:
        if self.cluster is None:
            return CentralCatalog(self.folder / f"{name}-{time.monotonic_ns()}.db")
        return CentralCatalog(self.cluster.fresh_database())


@contextlib.contextmanager
def catalogs(folder: Path, database: str) -> Iterator[Catalogs]:
    if database == "sqlite":
        yield Catalogs(folder)
        return
    from tests.postgres import remove, start_cluster

    cluster = start_cluster(durable=True)
    try:
        yield Catalogs(folder, cluster)
    finally:
        remove(cluster)


def subscribe_once(broker: Mosquitto, keys: StationKeys, path: str, made: Catalogs) -> None:
    """Make the path's persistent session and its subscription, then leave."""
    catalog = made.new(f"subscribe-{path}")
    c = consumer(broker, catalog, keys, path)
    c.start()
    try:
        if not c.wait_subscribed(30):
            raise SystemExit(f"the {path} consumer did not subscribe: {c.last_error}")
    finally:
        c.stop()
        catalog.close()


def publish_all(broker: Mosquitto, stations: list[Station]) -> None:
    """Every station publishes its events at QoS 1, all at once; returns when the broker
    acknowledged every one."""
    errors: list[str] = []

    def run(st: Station) -> None:
        client = broker.client(st.name, client_id=st.name)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            infos = [client.publish(t, p, qos=1) for t, p in st.messages]
            for info in infos:
                info.wait_for_publish(120)
                if not info.is_published():
                    errors.append(f"{st.name}: message {info.mid} not acknowledged")
                    return
        finally:
            client.disconnect()
            client.loop_stop()

    threads = [threading.Thread(target=run, args=(st,)) for st in stations]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("; ".join(errors[:5]))


def drain(broker: Mosquitto, keys: StationKeys, path: str, made: Catalogs, total: int) -> dict:
    """Start the path's consumer on its queued session; seconds until ``total`` events are
    committed in its (new) catalog."""
    catalog = made.new(f"drain-{path}")
    c = consumer(broker, catalog, keys, path)
    reader = CentralCatalog(catalog.database)
    t0 = time.perf_counter()
    c.start()
    deadline = t0 + 600
    try:
        while events.count(reader.conn) < total:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{path}: only {events.count(reader.conn)} of {total} events")
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
    finally:
        c.stop()
        reader.close()
        catalog.close()
    stats = dict(c.stats)
    if stats.get("stored") != total or stats.get("rejected") or stats.get("alert"):
        raise SystemExit(f"{path}: unexpected outcomes {stats}")
    return {"path": path, "seconds": seconds, "events_per_s": total / seconds}


def per_step(stations: list[Station], sample: int, made: Catalogs) -> dict[str, float]:
    """Microseconds per event of each step of the consumer, in process."""
    messages = [m for st in stations for m in st.messages][:sample]
    keys = {st.name: SodiumKey(public_key_text(st.key)) for st in stations}  # the centre's
    docs = [_decode(p) for _, p in messages]
    fast, slow = PayloadValidator(), PayloadValidator(compiled=False)
    steps: dict[str, Callable[[], object]] = {
        "decode (json)": lambda: [_decode(p) for _, p in messages],
        "verify (event hash + libsodium)": lambda: [
            verify_doc(keys[d["station"]], t, d) for (t, _), d in zip(messages, docs, strict=True)
        ],
        "validate: fastjsonschema": lambda: [fast.check("event", d) for d in docs],
        "validate: jsonschema": lambda: [slow.check("event", d) for d in docs],
    }
    out = {}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        fn()
        out[name] = (time.perf_counter() - t0) / len(messages) * 1e6
    # the whole handler (decode, verify, validate, chain check, store), batches of 1,000
    catalog = made.new("steps")
    handler = MessageHandler(catalog, StationKeys({st.name: public_key_text(st.key) for st in
                                                   stations}), Counter())  # fmt: skip
    t0 = time.perf_counter()
    for i in range(0, len(messages), 1000):
        handler.handle_batch([(t, p, False) for t, p in messages[i : i + 1000]])
    out["whole handler, batches of 1,000"] = (time.perf_counter() - t0) / len(messages) * 1e6
    catalog.close()
    return out


def machine() -> str:
    import os

    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load {load[0]:.1f} {load[1]:.1f}")  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["fleet"]:  # issue 14's fleet at agency scale: bench/fleet_run.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fleet_run import main as fleet

        sys.exit(fleet(sys.argv[2:]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=20)
    p.add_argument("--events", type=int, default=2000, help="events per station")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--paths", default=",".join(PATHS), help="compiled,jsonschema")
    p.add_argument("--sample", type=int, default=2000, help="events for the per-step profile")
    p.add_argument("--json", type=Path, default=None, help="write every run here")
    p.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the catalogs: SQLite files, or a throwaway durable PostgreSQL cluster",
    )
    args = p.parse_args()
    paths = [x for x in args.paths.split(",") if x]
    if set(paths) - set(PATHS):
        p.error(f"--paths: one or more of {','.join(PATHS)}")
    logging.disable(logging.WARNING)
    print("machine:", machine())
    start = datetime.now(UTC) - timedelta(days=1)
    t0 = time.perf_counter()
    stations = [make_station(f"ST-{i:03d}", args.events, start) for i in range(args.stations)]
    total = args.stations * args.events
    print(f"{args.stations} stations x {args.events} signed events = {total} "
          f"(made in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
    keys = StationKeys({st.name: public_key_text(st.key) for st in stations})
    runs: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-central-") as tmp,
        catalogs(Path(tmp), args.database) as made,
    ):
        folder = Path(tmp)
        print("catalogs:", args.database)
        steps = per_step(stations, min(args.sample, total), made)
        print(f"{'step (in process)':40} {'us/event':>9} {'share':>7}")
        whole = steps["whole handler, batches of 1,000"]
        for name, us in steps.items():
            print(f"{name:40} {us:9.1f} {us / whole:7.0%}")
        with Mosquitto(folder / "broker") as broker:
            for st in stations:
                broker.tls(st.name)  # certificates made before anything is timed
            for rep in range(args.reps):
                order = paths if rep % 2 == 0 else paths[::-1]
                for path in order:
                    subscribe_once(broker, keys, path, made)
                t1 = time.perf_counter()
                publish_all(broker, stations)
                published = time.perf_counter() - t1
                for path in order:
                    run = drain(broker, keys, path, made, total)
                    run["rep"] = rep + 1
                    runs.append(run)
                    print(f"rep {rep + 1} {path:10} {run['seconds']:7.2f} s "
                          f"{run['events_per_s']:8.0f} events/s "
                          f"(published in {published:.1f} s)")  # fmt: skip
    medians = {
        path: statistics.median(r["events_per_s"] for r in runs if r["path"] == path)
        for path in paths
    }
    print(f"{'path':12} {'median events/s':>16}")
    for path, rate in medians.items():
        print(f"{path:12} {rate:16.0f}")
    if len(medians) == 2:
        print(f"compiled / jsonschema: {medians['compiled'] / medians['jsonschema']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "database": args.database,
                                         "steps": steps, "runs": runs}))  # fmt: skip


if __name__ == "__main__":
    main()
