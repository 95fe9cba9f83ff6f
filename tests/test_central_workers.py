"""Several ``recdock-central`` workers on one data folder and one broker (docs/central.md,
"Several workers"): nothing lost, nothing counted twice, an upload resumed at another worker.

The workers are real ``recdock-central`` processes (so one can be SIGKILLed), the broker a real
Mosquitto running the shipped configuration, users and ACL (tests/mosquitto.py, MQTT 5). The
stations are simulated by signed messages made as a station makes them (sync/wire/signing.py)
and by a client speaking tus through ``requests``. :class:`Workers` takes the catalog's place
as its ``database`` argument, so another database can be put under the same tests.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from central.catalog import CentralCatalog, commands, conflicts, events, now_utc, stations
from central.commands import CommandPublisher
from sync.wire import commands as wire_commands
from sync.wire import topics
from sync.wire.chain import GENESIS, canonical, entry_hash
from sync.wire.signing import parse_public_key, public_key_text, sign_payload
from tests.central_server import TOKEN_A, TOKENS, make_file, wait_for
from tests.mosquitto import Mosquitto, Subscriber, free_port
from tests.recorders import BIN
from tests.signing_keys import new_key, register
from tests.test_mqtt import needs_mosquitto, needs_openssl

CENTRAL = "recdock-central"  # the common name of the centre's certificate (the ACL's user)
GROUP = "centre"
LEASE_S = 2.0  # the workers' upload lease: a killed worker's upload is free again this soon


@dataclass
class Worker:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Workers:
    """``recdock-central`` workers sharing one data folder (uploads, receipts) and one catalog:
    ``database`` None is SQLite in the data folder; anything else is handed to the workers as
    ``--database`` (a PostgreSQL fixture's URL). With ``broker``, each worker consumes it in
    the worker group :data:`GROUP` under its own client id."""

    folder: Path
    database: str | None = None
    broker: Mosquitto | None = None
    station_keys: dict[str, Any] = field(default_factory=dict)
    running: dict[str, Worker] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def command(self, worker: Worker) -> list[str]:
        cfg = self.folder / "cfg"
        cfg.mkdir(exist_ok=True)
        tokens = cfg / "tokens.toml"
        tokens.write_text(
            "[stations]\n" + "".join(f'"{s}" = "{t}"\n' for t, s in TOKENS.items()), "utf-8"
        )
        cmd = [str(BIN / "recdock-central"), "--data", str(self.data), "--tokens", str(tokens)]
        cmd += [
            "--port",
            str(worker.port),
            "--upload-lease",
            str(LEASE_S),
            "--log-level",
            "warning",
        ]
        cmd += ["--expire-after", "3600"]
        if self.database is not None:
            cmd += ["--database", self.database]
        if self.broker is not None:
            keys = cfg / "station-keys.toml"
            keys.write_text(
                "[stations]\n"
                + "".join(f'"{s}" = "{k}"\n' for s, k in register(self.station_keys).items()),
                "utf-8",
            )
            tls = self.broker.tls(CENTRAL)
            cmd += ["--station-keys", str(keys), "--mqtt-host", "127.0.0.1"]
            cmd += ["--mqtt-port", str(self.broker.port), "--mqtt-ca", str(tls.ca_file)]
            cmd += ["--mqtt-cert", str(tls.cert_file), "--mqtt-key", str(tls.key_file)]
            cmd += ["--mqtt-client-id", f"{CENTRAL}-{worker.name}", "--worker-group", GROUP]
        return cmd

    def start(self, name: str) -> Worker:
        worker = self.running.get(name) or Worker(name, free_port())
        log = (self.folder / f"worker-{name}.log").open("ab")
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(self.folder / "no-credentials")}
        worker.proc = subprocess.Popen(self.command(worker), stdout=log, stderr=log, env=env)
        log.close()
        self.running[name] = worker
        wait_for(lambda: self._ready(worker), 30)
        return worker

    def _ready(self, worker: Worker) -> bool:
        assert worker.proc is not None and worker.proc.poll() is None, self.log(worker.name)
        try:
            health = requests.get(f"{worker.url}/api/health", timeout=2).json()
        except requests.RequestException:
            return False
        return self.broker is None or bool(health.get("mqtt", {}).get("subscribed"))

    def kill(self, name: str) -> None:
        proc = self.running[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for worker in self.running.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.terminate()
                try:
                    worker.proc.wait(15)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
                    worker.proc.wait(5)

    def catalog(self) -> CentralCatalog:
        """The catalog the workers share, opened here to read it."""
        return CentralCatalog(self.database or self.data / "central-catalog.db")

    def log(self, name: str) -> str:
        return (self.folder / f"worker-{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def workers(tmp_path: Path, central_db: str) -> Iterator[Workers]:
    """Two workers' group on each backend: SQLite in the data folder (the default), or a
    fresh PostgreSQL database handed to every worker as ``--database``."""
    database = None if central_db.endswith(".db") else central_db
    group = Workers(tmp_path / "workers", database=database)
    group.folder.mkdir()
    try:
        yield group
    finally:
        group.stop_all()


# -- a stream of events, one worker killed in the middle ---------------------------------------


def signed_events(station: str, key: Any, count: int) -> list[tuple[str, bytes]]:
    """``count`` audit events of ``station``: a valid chain, signed as the station signs them."""
    prev, out, topic = GENESIS, [], topics.event(station)
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    for seq in range(1, count + 1):
        at = (start + timedelta(seconds=seq)).isoformat(timespec="microseconds")
        data = {"path": f"DCIM/{seq:06d}.MP4", "size": 1000 + seq, "sha256": f"{seq:064x}"}
        digest = entry_hash(prev, seq, at, "file.stored", "R-1", canonical(data))
        doc = {"event_id": f"{station}:cat:{seq}", "station": station, "seq": seq, "at": at,
               "kind": "file.stored", "subject": "R-1", "data": data, "prev_hash": prev,
               "hash": digest}  # fmt: skip
        out.append((topic, sign_payload(key, topic, canonical(doc).encode())))
        prev = digest
    return out


def publish(
    broker: Mosquitto,
    station: str,
    messages: list[tuple[str, bytes]],
    gate,
    errors: list[str],
    retain: bool = False,
) -> None:
    """Publish at QoS 1 in order, as a station's outbox does, each acknowledged by the broker;
    ``gate(i)`` is called before message ``i`` (the test holds the stream there)."""
    client = broker.client(station, client_id=station)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        wait_for(client.is_connected, 10)
        for i, (topic, payload) in enumerate(messages):
            gate(i)
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(30)
            if not info.is_published():
                errors.append(f"{station}: event {i + 1} not acknowledged")
                return
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(f"{station}: {exc!r}")
    finally:
        client.disconnect()
        client.loop_stop()


def state_of(group: Workers, station: str) -> str | None:
    catalog = group.catalog()
    try:
        row = stations.row(catalog.conn, station)
        return None if row is None else row["status"]
    finally:
        catalog.close()


def stored_count(group: Workers) -> int:
    catalog = group.catalog()
    try:
        return events.count(catalog.conn)
    finally:
        catalog.close()


@needs_mosquitto
@needs_openssl
def test_two_workers_share_the_event_stream_and_one_killed_midway_loses_nothing(
    tmp_path: Path, workers: Workers
) -> None:
    per_station, names = 200, [f"ST-W{i}" for i in range(4)]
    keys = {name: new_key() for name in names}
    streams = {name: signed_events(name, keys[name], per_station) for name in names}
    total = per_station * len(names)
    with Mosquitto(tmp_path / "broker", persistence=True) as broker:
        workers.broker, workers.station_keys = broker, keys
        for name in names:  # retained before any worker: a shared subscription gets none
            status = {"station": name, "state": "online", "at": "2026-12-01T08:00:00+00:00"}
            signed = sign_payload(keys[name], topics.status(name), canonical(status).encode())
            publish(broker, name, [(topics.status(name), signed)], lambda i: None, [], True)
        workers.start("a")
        workers.start("b")
        wait_for(lambda: all(state_of(workers, n) == "online" for n in names), 30)
        half = threading.Event()

        def gate(i: int) -> None:
            if i == per_station // 2:
                half.wait(60)  # every station holds here until worker a is gone

        errors: list[str] = []
        threads = [
            threading.Thread(target=publish, args=(broker, n, streams[n], gate, errors))
            for n in names
        ]
        for t in threads:
            t.start()
        # kill a while it is taking its share: some of the first halves stored, not all
        wait_for(lambda: stored_count(workers) >= total // 8, 60)
        workers.kill("a")
        at_kill = stored_count(workers)
        half.set()
        for t in threads:
            t.join(120)
        assert errors == []
        # b goes on alone (the broker keeps a's share for a's session); then a comes back
        # (systemd restarts it) and its session is delivered
        wait_for(lambda: stored_count(workers) >= at_kill + total // 8, 60)
        workers.start("a")
        wait_for(lambda: stored_count(workers) >= total, 120)
        health = {w: requests.get(f"{workers.running[w].url}/api/health", timeout=5).json()
                  for w in ("a", "b")}  # fmt: skip
    catalog = workers.catalog()
    try:
        conn = catalog.conn
        assert events.count(conn) == total
        for name in names:
            ids = events.event_ids(conn, name)
            assert sorted(ids) == sorted(f"{name}:cat:{seq}" for seq in range(1, per_station + 1))
            row = stations.row(conn, name)
            assert row["events"] == per_station, "each event counted once"
            assert row["chain_ok"] and row["chain_problem"] is None
            assert (row["chain_seq"], row["chain_max_seq"]) == (per_station, per_station)
            assert events.missing_ranges(conn, name) == []
        assert catalog.counts()["broken_chains"] == 0
        assert catalog.counts()["security_alerts"] == 0
        assert all(conflicts.count(conn, name) == 0 for name in names)
    finally:
        catalog.close()
    # the work was shared: b did not store everything itself
    assert 0 < health["b"]["mqtt"]["messages"].get("stored", 0) < total
    assert health["a"]["catalog"]["events"] == health["b"]["catalog"]["events"] == total


# -- an upload resumed through another worker -------------------------------------------------


def tus(token: str = TOKEN_A, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


def patch(url: str, offset: int, body: bytes) -> requests.Response:
    headers = tus(
        **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    )
    return requests.patch(url, data=body, headers=headers, timeout=30)


def create(base: str, size: int, sha256: str) -> str:
    meta = "sha256 " + base64.b64encode(sha256.encode()).decode()
    resp = requests.post(
        f"{base}/files/", headers=tus(**{"Upload-Length": str(size), "Upload-Metadata": meta}),
        timeout=30,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    return urlsplit(resp.headers["Location"]).path


def test_an_upload_cut_by_a_killed_worker_is_resumed_through_another(
    tmp_path: Path, workers: Workers
) -> None:
    a, b = workers.start("a"), workers.start("b")
    path, sha = make_file(tmp_path / "clip.mp4", 6 * 1024 * 1024 + 5, seed=7)
    body = path.read_bytes()
    upload = create(a.url, len(body), sha)
    first = 2 * 1024 * 1024
    assert patch(a.url + upload, 0, body[:first]).status_code == 204
    part = workers.data / "uploads" / f"{upload.rsplit('/', 1)[1]}.part"
    # the next PATCH goes to a, which receives part of its body, then is killed mid-body
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    conn.putrequest("PATCH", upload)
    for name, value in tus(**{"Upload-Offset": str(first),
                              "Content-Type": "application/offset+octet-stream",
                              "Content-Length": str(len(body) - first)}).items():  # fmt: skip
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body[first : first + 3 * 1024 * 1024])
    wait_for(lambda: part.stat().st_size >= first + 1024 * 1024, 30)  # a is writing
    # meanwhile another worker never writes the same upload: the lock is the database's
    busy = patch(b.url + upload, first, body[first:])
    assert busy.status_code == 423, f"b wrote an upload a was writing: {busy.status_code}"
    assert ascii_digits(busy.headers.get("Retry-After"))
    assert requests.delete(b.url + upload, headers=tus(), timeout=10).status_code == 423
    workers.kill("a")
    conn.close()
    # b answers the offset that was fsynced and recorded: the first PATCH's
    head = requests.head(b.url + upload, headers=tus(), timeout=10)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(first)
    # a's lease runs out (LEASE_S); the station's retries of 423 then go through at b
    done = wait_for(lambda: resumed(b.url + upload, first, body[first:]), 30)
    assert done.headers["Upload-Offset"] == str(len(body))
    receipt = wait_for(lambda: receipt_of(b.url + upload), 30)
    assert receipt["sha256"] == sha and receipt["size"] == len(body)
    obj = workers.data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == sha
    assert not part.exists()


def ascii_digits(value: str | None) -> bool:
    return value is not None and value.isascii() and value.isdigit()


def resumed(url: str, offset: int, rest: bytes) -> requests.Response | None:
    resp = patch(url, offset, rest)
    if resp.status_code == 423:
        return None  # the killed worker's lease has not run out yet
    assert resp.status_code == 204, resp.text
    return resp


def receipt_of(url: str) -> dict[str, Any] | None:
    resp = requests.get(f"{url}/receipt", headers=tus(), timeout=10)
    return resp.json() if resp.status_code == 200 else None


# -- commands: one worker publishes -----------------------------------------------------------


@needs_mosquitto
@needs_openssl
def test_only_the_worker_holding_the_commands_lease_publishes(tmp_path: Path) -> None:
    """Two workers' publishers on one catalog: one publishes, in order; the other takes over
    only when the first's lease ran out (it stopped), never both at once."""
    centre_key, station = new_key(), "ST-K"
    with Mosquitto(tmp_path / "broker") as broker:
        clients, publishers, catalogs = [], [], []
        for name in ("a", "b"):
            client = broker.client(CENTRAL, f"{CENTRAL}-{name}")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            catalog = CentralCatalog(tmp_path / "central.db")
            publisher = CommandPublisher(
                catalog, centre_key, client, connected=lambda: True, holder=f"{CENTRAL}-{name}"
            )
            publisher.lease_s = LEASE_S
            clients.append(client)
            catalogs.append(catalog)
            publishers.append(publisher)
        inbox = Subscriber(broker, f"recdock/{station}/command/#", client_id="st-in",
                           identity=station)  # fmt: skip
        a, b = publishers
        topic = wire_commands.topic(station, "fault", "F-1")
        try:
            issued = [issue(catalogs[0], station)]
            assert a.flush() == 1
            issued.append(issue(catalogs[0], station))
            assert b.flush() == 0, "b published while a holds the commands lease"
            assert a.flush() == 1
            issued.append(issue(catalogs[0], station))
            # a stops (killed, say): b takes over once a's lease ran out, not before
            wait_for(lambda: b.flush() == 1, 30)
            assert a.flush() == 0
            public = parse_public_key(public_key_text(centre_key))
            wait_for(lambda: len(inbox.on(topic)) >= 3, 10)
            sent = [wire_commands.verify_command(public, topic, p) for p, _ in inbox.on(topic)]
            assert [d["command_id"] for d in sent] == issued, "each command once, in order"
        finally:
            inbox.close()
            for client in clients:
                client.disconnect()
                client.loop_stop()
            for catalog in catalogs:
                catalog.close()


def issue(catalog: CentralCatalog, station: str) -> str:
    """A command to ``station`` about its fault F-1, queued; returns its id."""
    with catalog.tx() as conn:
        stations.ensure(conn, station)
        doc = commands.issue(conn, station=station, kind="fault", key="F-1", action="received",
                             by=CENTRAL, at=now_utc(), fields={"fault_id": "F-1"})  # fmt: skip
    return doc["command_id"]


# -- one event per station and seq ------------------------------------------------------------


def test_a_second_row_at_a_seq_is_refused_by_the_catalog_itself(tmp_path: Path) -> None:
    catalog = CentralCatalog(tmp_path / "central.db")
    row = ("ST-U", 1, "file.stored", "R-1", "{}", "2026-12-01T08:00:00", "p", "h", 1, "t", 0)
    insert = (
        "INSERT INTO events (event_id, station, seq, kind, subject, data, at, prev_hash, hash,"
        " hash_ok, received_at, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    try:
        with catalog.tx() as conn:
            conn.execute(insert, ("ST-U:cat:1", *row))
        with pytest.raises(sqlite3.IntegrityError), catalog.tx() as conn:
            conn.execute(insert, ("ST-U:other:1", *row))  # another id, the same seq
    finally:
        catalog.close()


def test_an_older_catalog_with_two_rows_at_a_seq_still_opens(tmp_path: Path, caplog) -> None:
    """Before the unique index an older version could hold two events at one seq (it de-duplicated
    by event id only): the centre still starts, and says why the index is missing."""
    path = tmp_path / "central.db"
    catalog = CentralCatalog(path)
    row = ("ST-U", 1, "file.stored", "R-1", "{}", "2026-12-01T08:00:00", "p", "h", 1, "t", 0)
    with catalog.tx() as conn:
        conn.execute("DROP INDEX events_station_epoch_seq")
        for event_id in ("ST-U:cat:1", "ST-U:old:1"):
            conn.execute(
                "INSERT INTO events (event_id, station, seq, kind, subject, data, at, prev_hash,"
                " hash, hash_ok, received_at, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, *row),
            )
    catalog.close()
    again = CentralCatalog(path)
    try:
        assert events.count(again.conn, "ST-U") == 2
    finally:
        again.close()
    assert "events_station_epoch_seq" in caplog.text


# -- what a worker subscribes -----------------------------------------------------------------


def test_a_worker_shares_the_event_stream_and_keeps_its_own_subscription_to_state(
    tmp_path: Path,
) -> None:
    """The events through the group's shared subscription; every retained state topic through
    the worker's own (MQTT-3.3.1-6: a broker may send no retained message to a shared one, which
    Mosquitto 2.0.11 does anyway, so the broker test above cannot tell). Alone: as before."""
    from central.catalog import CentralCatalog as Catalog
    from central.consumer import ConsumerSettings, MqttConsumer, subscriptions
    from central.enrolment import StationKeys

    assert subscriptions(None) == [("recdock/+/#", 1)]
    filters = dict(subscriptions(GROUP))
    assert filters.pop(f"$share/{GROUP}/recdock/+/event") == 1
    station = "ST-S"
    for topic in (
        topics.status(station),
        topics.health(station),
        topics.bay(station, 1),
        topics.recorder(station, "R-1"),
        topics.fault(station, "store.full"),
    ):
        assert any(mqtt_matches(f, topic) for f in filters), f"{topic}: not subscribed"
    assert not any(mqtt_matches(f, topics.event(station)) for f in filters), "events twice"
    with pytest.raises(ValueError, match="MQTT 5"):
        MqttConsumer(
            Catalog(tmp_path / "c.db"), ConsumerSettings(shared_group=GROUP), keys=StationKeys({})
        )


def mqtt_matches(pattern: str, topic: str) -> bool:
    import paho.mqtt.client as mqtt

    return mqtt.topic_matches_sub(pattern, topic)
