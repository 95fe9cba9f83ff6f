"""The station's way out against the services a run was given: the outbox through a real
Mosquitto, a recording uploaded to a real recdock-central over tus, and the doctor's lines for
both.

scripts/test-arm64 runs these inside the emulated arm64 platform against a Mosquitto (the
shipped configuration: TLS, client certificates only) and a ``recdock-central`` on the host's
loopback, and names them: ``RECDOCK_TEST_MQTT_PORT``, ``RECDOCK_TEST_MQTT_PKI`` (a folder
with the broker's ``ca.crt`` and ``client-<identity>.crt``/``.key`` for the station and for
``recdock-central``), ``RECDOCK_TEST_CENTRAL_URL`` (its tus endpoint),
``RECDOCK_TEST_CENTRAL_TOKEN`` and ``RECDOCK_TEST_CENTRAL_STATION`` (the station that token
belongs to, whose certificate the folder holds). Without them (the host suite) the tests start
their own Mosquitto and serve the central store in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.catalog import Catalog, audit, outbox
from agent.config import Config
from agent.config.links import UploadConfig
from sync.mqtt.link import MqttLink
from sync.mqtt.publisher import OutboxPublisher
from sync.wire import topics
from sync.wire.payloads import decode_payload
from tests.mosquitto import ClientTls, Mosquitto, Subscriber
from tests.recorders import wait_for
from tests.signing_keys import new_key


@dataclass(frozen=True)
class Centre:
    endpoint: str
    token: str
    station: str


class GivenBroker:
    """A broker a run was given, with the certificates its CA issued (not the CA's key)."""

    def __init__(self, port: int, pki: Path) -> None:
        self.port = port
        self.pki = pki

    def tls(self, identity: str) -> ClientTls:
        stem = self.pki / f"client-{identity}"
        return ClientTls(self.pki / "ca.crt", stem.with_suffix(".crt"), stem.with_suffix(".key"))

    mqtt_config = Mosquitto.mqtt_config
    client = Mosquitto.client


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto | GivenBroker]:
    given = os.environ.get("RECDOCK_TEST_MQTT_PORT")
    if given:
        yield GivenBroker(int(given), Path(os.environ["RECDOCK_TEST_MQTT_PKI"]))
        return
    with Mosquitto(tmp_path / "broker") as started:
        yield started


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    url = os.environ.get("RECDOCK_TEST_CENTRAL_URL")
    if url:
        yield Centre(
            url,
            os.environ["RECDOCK_TEST_CENTRAL_TOKEN"],
            os.environ["RECDOCK_TEST_CENTRAL_STATION"],
        )
        return
    from central.app import create_app
    from tests.central_server import serve_app

    token = "token-of-the-way-out-test-0123"
    with serve_app(create_app(tmp_path / "central", {token: "st-way-out"})) as served:
        yield Centre(f"{served}/files/", token, "st-way-out")


def test_the_outbox_drains_through_the_broker(
    tmp_path: Path, broker: Mosquitto | GivenBroker, centre: Centre
) -> None:
    station = centre.station  # the common name of the station's certificate (the ACL's rule)
    key = new_key()
    catalog = Catalog(tmp_path / "home" / "catalog.db", station_id=station)
    ids = []
    for i in range(20):
        with catalog.tx():
            entry = audit.append(catalog, "test.event", f"item-{i}", {"i": i})
        ids.append(f"{station}:{catalog.catalog_id}:{entry.seq}")
    sub = Subscriber(broker, f"recdock/{station}/#", client_id=f"sub-{uuid.uuid4().hex[:8]}")
    link = MqttLink(broker.mqtt_config(station), station, signing_key=key)
    pub = OutboxPublisher(catalog.path, station, link, signing_key=key, idle_poll_s=0.05)
    pub.start()
    link.start()
    try:
        wait_for(lambda: outbox.backlog(catalog.conn) == 0, 30, "the outbox acknowledged")
        wait_for(lambda: len(sub.on(topics.event(station))) >= 20, 30, "events at the subscriber")
        got = [json.loads(p)["event_id"] for p, _ in sub.on(topics.event(station))]
        assert sorted(set(got)) == sorted(ids)
        status = [decode_payload(p) for p, _ in sub.on(topics.status(station))]
        assert status[-1]["state"] == "online"
    finally:
        pub.stop()
        link.stop()
        sub.close()
        catalog.close()


def test_a_recording_uploads_with_a_receipt_that_confirms_its_hash(
    tmp_path: Path, centre: Centre
) -> None:
    from sync.upload.tus import TusUploader

    data = hashlib.shake_256(uuid.uuid4().bytes).digest(3 * 1024 * 1024 + 17)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    with TusUploader(centre.endpoint, centre.token, chunk_size=1024 * 1024) as uploader:
        receipt = uploader.upload(path, sha256=sha, metadata={"station": centre.station})
    assert receipt.verified and receipt.sha256 == sha


def test_the_doctor_reaches_the_broker_and_the_centre(
    broker: Mosquitto | GivenBroker, centre: Centre
) -> None:
    from agent.station.doctor import check_broker, check_centre
    from sync.mqtt.probe import probe_broker
    from sync.upload.probe import probe_endpoint

    lab = {"insecure_lab": centre.endpoint.startswith("http://")}  # loopback, plain http
    config = Config(
        station_id=centre.station,
        mqtt=broker.mqtt_config(centre.station),
        upload=UploadConfig(enabled=True, endpoint=centre.endpoint, token=centre.token, **lab),
    )
    assert check_broker(config, probe_broker).status == "ok"
    assert check_centre(config, probe_endpoint).status == "ok"
    wrong = UploadConfig(enabled=True, endpoint=centre.endpoint, token="x" * 16 + "-wrong", **lab)
    refused = check_centre(config.model_copy(update={"upload": wrong}), probe_endpoint)
    assert refused.status == "FAIL" and "refused the token" in refused.text
