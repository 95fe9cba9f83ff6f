"""Outbox drain: how long 10,000 queued events take to reach Mosquitto after it comes back.

    .venv/bin/python bench/bench_outbox.py [--events 10000] [--inflight 20] [--runs 3]

1. A station catalog gets ``--events`` audit events (each also an outbox row) while no broker
   runs.
2. Mosquitto starts (loopback, persistence off, the shipped configuration: TLS with client
   certificates, the ACL); the station's MQTT link and outbox publisher start; the clock runs
   from the broker's start until the outbox is empty (every row signed as it is handed over,
   deleted on its PUBACK). The time from the link's connection to empty is printed too.
3. Baseline, same run, same broker, same TLS identity: raw paho publishing the same signed
   payloads from memory at QoS 1 with the same in-flight window, until every PUBACK arrived.
   So the ratio includes what signing and the outbox cost.

Prints both, and the ratio outbox/baseline. Target (issue 4): drain under 10 s.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent.catalog import audit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from agent.catalog import Catalog, outbox  # noqa: E402
from sync.mqtt.link import MqttLink  # noqa: E402
from sync.mqtt.publisher import OutboxPublisher  # noqa: E402
from sync.wire.signing import sign_payload  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

STATION = "ST-BENCH"
KEY = Ed25519PrivateKey.generate()
logging.getLogger("paho.mqtt").setLevel(logging.CRITICAL)  # reconnect chatter during the outage


def fill(catalog: Catalog, n: int) -> list[tuple[str, bytes]]:
    for start in range(0, n, 500):
        with catalog.tx():
            for i in range(start, min(n, start + 500)):
                audit.append(catalog, "bench.event", f"item-{i}", {"i": i, "pad": "x" * 200})
    rows = outbox.pending(catalog.conn, limit=n + 10)
    return [(m.topic, sign_payload(KEY, m.topic, m.payload)) for m in rows]


def drain(
    work: Path, broker: Mosquitto, n: int, inflight: int
) -> tuple[float, float, list[tuple[str, bytes]]]:
    catalog = Catalog(work / "catalog.db", station_id=STATION)
    payloads = fill(catalog, n)
    assert outbox.backlog(catalog.conn) == n
    config = broker.mqtt_config(
        STATION, keepalive=30, max_inflight=inflight, max_queued=max(100, inflight)
    )
    t0 = time.perf_counter()
    broker.start()
    link = MqttLink(config, STATION, signing_key=KEY)
    publisher = OutboxPublisher(
        catalog.path,
        STATION,
        link,
        signing_key=KEY,
        max_inflight=inflight,
        batch=config.publish_batch,
    )
    publisher.start()
    link.start()
    link.wait_connected(30)
    t_conn = time.perf_counter()
    while outbox.backlog(catalog.conn):
        time.sleep(0.005)
    t_end = time.perf_counter()
    publisher.stop()
    link.stop()
    catalog.close()
    broker.stop()
    return t_end - t0, t_end - t_conn, payloads


def baseline(broker: Mosquitto, payloads: list[tuple[str, bytes]], inflight: int) -> float:
    broker.start()
    done = threading.Event()
    acked = 0
    lock = threading.Lock()

    def on_publish(client, userdata, mid, rc, props) -> None:  # noqa: ANN001
        nonlocal acked
        with lock:
            acked += 1
            if acked == len(payloads):
                done.set()

    connected = threading.Event()
    client = broker.client(STATION, "bench-baseline")
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", broker.port, 30)
    client.loop_start()
    connected.wait(10)
    t0 = time.perf_counter()
    for topic, payload in payloads:
        client.publish(topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    broker.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="Events to queue.")
    parser.add_argument("--inflight", type=int, default=20, help="QoS 1 in-flight window.")
    parser.add_argument("--runs", type=int, default=3, help="Repetitions (median reported).")
    args = parser.parse_args()
    outbox_times, connected_times, base_times = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        for run in range(args.runs):
            work = Path(tmp) / f"run{run}"
            work.mkdir()
            broker = Mosquitto(work / "broker")
            total, from_conn, payloads = drain(work, broker, args.events, args.inflight)
            outbox_times.append(total)
            connected_times.append(from_conn)
            base_times.append(baseline(broker, payloads, args.inflight))
            print(
                f"run {run + 1}: outbox drain {total:.2f} s ({from_conn:.2f} s after connect), "
                f"raw paho {base_times[-1]:.2f} s",
                flush=True,
            )
    o, c, b = (statistics.median(x) for x in (outbox_times, connected_times, base_times))
    print(f"events: {args.events}, in-flight window: {args.inflight}, runs: {args.runs} (median)")
    print(f"outbox drain, broker start -> outbox empty: {o:.2f} s ({args.events / o:,.0f} msg/s)")
    print(f"outbox drain, link connected -> outbox empty: {c:.2f} s")
    print(f"baseline, raw paho QoS 1 from memory:      {b:.2f} s ({args.events / b:,.0f} msg/s)")
    print(
        f"ratio outbox/baseline: {o / b:.2f}x "
        f"(target: drain < 10 s: {'met' if o < 10 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
