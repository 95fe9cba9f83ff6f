"""The station's health report (``recdock/<station>/health``): measured at the station
(agent/station/report.py), signed and published by sync/mqtt/health.py through a real Mosquitto
with the shipped ACL and TLS, verified and kept by the centre, served by its JSON API and shown
on the dashboard's stations page; a forged one is a security alert and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from jsonschema import Draft202012Validator, FormatChecker

from agent.catalog import Catalog, audit, outbox
from agent.config import SHIPPED_PROFILES, Config
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from agent.seams.clock.simulated import SimulatedClock
from agent.station.report import station_report
from central.consumer import MqttConsumer
from central.enrolment import StationKeys
from sync.mqtt.health import HealthReporter
from sync.services import MqttService
from sync.wire import topics
from sync.wire.chain import canonical
from sync.wire.payloads import load_schema
from sync.wire.signing import sign_payload, verify_doc
from tests.central_server import serve_app
from tests.dashboard_tools import dashboard_app, login
from tests.memory_link import MemoryBroker, MemoryLink
from tests.mosquitto import Mosquitto, Subscriber
from tests.recorders import make_folder_recorder, wait_for
from tests.signing_keys import home_key, new_key, register
from tests.test_mqtt import needs_mosquitto, needs_openssl

STATION = "ST-A"  # the dashboard tools' station
READER = "reader-token-0123456789abcdef"
SCHEMA = Draft202012Validator(load_schema("health"), format_checker=FormatChecker())


def errors(doc: dict) -> list[str]:
    return [e.message for e in SCHEMA.iter_errors(doc)]


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    home_key(home)
    c = Catalog(home / "catalog.db", station_id=STATION)
    yield c
    c.close()


def config(**mqtt) -> Config:
    return Config.model_validate(
        {
            "station_id": STATION,
            "bays": {"1-1.1": 1, "1-1.2": 2},
            "upload": {"enabled": True, "endpoint": "https://central.example/files/"},
            "mqtt": mqtt,
        }
    )


def offload(tmp_path: Path, home: Path, catalog: Catalog, files: int = 3) -> None:
    sim = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    root = make_folder_recorder(tmp_path / "rec", "SIM0042", files=files, size=64 * 1024)
    assert Offloader(Config(station_id=STATION), home, catalog).run(root, sim).ok


def test_the_report_says_what_the_station_holds(tmp_path: Path, home: Path, catalog) -> None:
    offload(tmp_path, home, catalog)
    later = datetime.now(UTC) + timedelta(minutes=10)
    report = station_report(catalog, config(), home, SimulatedClock(synchronised=False), later)
    assert report["events"]["count"] == outbox.backlog(catalog.conn) > 0
    assert report["events"]["oldest_age_s"] >= 600
    assert report["uploads"]["enabled"] is True
    assert (report["uploads"]["count"], report["uploads"]["bytes"]) == (3, 3 * 64 * 1024)
    assert report["uploads"]["oldest_age_s"] >= 600
    assert 0 < report["store"]["free_bytes"] <= report["store"]["total_bytes"]
    assert report["clock"]["synchronised"] is False
    assert report["bays"] == {"total": 2, "in_use": 0, "states": {"1": "idle", "2": "idle"}}
    assert report["version"] and report["interval_s"] == 300
    key = home_key(home)
    topic = topics.health(STATION)
    doc = json.loads(sign_payload(key, topic, canonical(report).encode()))
    assert errors(doc) == []
    verify_doc(key.public_key(), topic, doc)
    assert errors({k: v for k, v in doc.items() if k != "sig"}), "valid without its signature"
    assert errors({**doc, "uploads": {**doc["uploads"], "count": -1}})


def test_nothing_waiting_has_no_age(home: Path, catalog) -> None:
    report = station_report(catalog, config(), home, SimulatedClock(synchronised=True))
    assert report["uploads"] == {
        "enabled": True, "count": 0, "bytes": 0, "oldest_at": None, "oldest_age_s": None,
    }  # fmt: skip
    assert report["clock"]["synchronised"] is True


def test_a_report_that_cannot_be_measured_is_skipped_and_the_next_one_goes(
    tmp_path: Path, caplog
) -> None:
    home = tmp_path / "new-home"  # the station has not made its catalog here yet
    home.mkdir()
    link = MemoryLink(MemoryBroker())
    link.connect()
    reporter = HealthReporter(
        link, config(), home, SimulatedClock(synchronised=True), signing_key=home_key(home)
    )
    assert reporter.publish_once() is False
    assert "could not be measured" in caplog.text and "catalog not found" in caplog.text
    Catalog(home / "catalog.db", station_id=STATION).close()
    assert reporter.publish_once() is True and reporter.published == 1


# -- through a real broker -------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def reports(sub: Subscriber) -> list[dict]:
    return [json.loads(p) for p, _retained in sub.on(topics.health(STATION)) if p]


@needs_mosquitto
@needs_openssl
def test_the_station_publishes_its_signed_report_on_connect_every_interval_and_at_its_stop(
    broker: Mosquitto, home: Path, catalog
) -> None:
    key = home_key(home)
    mqtt = broker.mqtt_config(STATION, health_interval_s=5)
    cfg = Config(station_id=STATION, mqtt=mqtt)
    sub = Subscriber(broker)
    service = MqttService(cfg, home, SimulatedClock(synchronised=False))
    try:
        service.start()
        wait_for(lambda: len(reports(sub)) >= 1, timeout=10, what="the report at connect")
        wait_for(lambda: len(reports(sub)) >= 2, timeout=15, what="the next, an interval later")
        first, second = reports(sub)[:2]
        gap = datetime.fromisoformat(second["at"]) - datetime.fromisoformat(first["at"])
        assert timedelta(seconds=4.5) <= gap < timedelta(seconds=10)
    finally:
        before = len(sub.messages)
        service.stop()

    def stopped() -> bool:
        # an interval's report may come just before the stop: wait for the status at the stop
        return any(t == topics.status(STATION) for t, _p, _r in sub.messages[before:])

    wait_for(stopped, timeout=10, what="the status at the stop")
    order = [
        t for t, _p, _r in sub.messages if t in (topics.health(STATION), topics.status(STATION))
    ]
    assert order[-2:] == [topics.health(STATION), topics.status(STATION)], "report, then stopped"
    for doc in reports(sub):
        assert errors(doc) == []
        verify_doc(key.public_key(), topics.health(STATION), doc)
        assert doc["clock"]["synchronised"] is False
    sub.close()
    late = Subscriber(broker, client_id="late")  # retained: a receiver that comes later has it
    wait_for(lambda: reports(late), timeout=10, what="the retained report")
    late.close()


@needs_mosquitto
@needs_openssl
def test_the_centre_keeps_the_report_its_api_returns_it_and_the_stations_page_shows_it(
    broker: Mosquitto, tmp_path: Path, home: Path, catalog, central_db: str
) -> None:
    offload(tmp_path, home, catalog)
    (tmp_path / "centre").mkdir()
    app = dashboard_app(tmp_path / "centre", api_tokens={READER: "supervisor"}, database=central_db)
    keys = StationKeys(register({STATION: home_key(home)}))
    consumer = MqttConsumer(app.state.catalog, broker.consumer_settings(), keys=keys)
    consumer.start()
    mqtt = broker.mqtt_config(STATION)
    cfg = Config.model_validate(
        {"station_id": STATION, "mqtt": mqtt.model_dump(), "bays": {"1-1.1": 1}}
    )
    service = MqttService(cfg, home, SimulatedClock(synchronised=False))
    try:
        assert consumer.wait_subscribed(10)
        service.start()
        with serve_app(app) as url:
            auth = {"Authorization": f"Bearer {READER}"}

            def station() -> dict:
                r = requests.get(f"{url}/api/stations/{STATION}", headers=auth, timeout=10)
                return r.json() if r.status_code == 200 else {}

            wait_for(lambda: station().get("health_report"), timeout=15, what="the report kept")
            kept = station()["health_report"]
            assert kept["uploads"]["count"] == 3 and kept["bays"]["total"] == 1
            assert kept["clock"]["synchronised"] is False and kept["received_at"]
            [fleet] = requests.get(f"{url}/api/fleet/stations", headers=auth, timeout=10).json()
            assert fleet["report"]["clock_unsynchronised"] is True
            assert "clock_unsynchronised" in fleet["health_reasons"]
            assert fleet["report"]["uploads_waiting"] == 3
            s = login(url, "view")
            html = s.get(f"{url}/stations?lang=en", timeout=10).text
            assert 'data-flag="clock_unsynchronised"' in html and "not synchronised" in html
            assert "uploads off" in html and f"events waiting: {kept['events']['count']}" in html
            assert "1 in use of 1" not in html and "0 in use of 1" in html
            zh = s.get(f"{url}/stations?lang=zh-CN", timeout=10).text
            assert "未同步" in zh and "待发送事件" in zh
    finally:
        service.stop()
        consumer.stop()


def test_a_forged_or_unsigned_report_is_a_security_alert_and_changes_nothing(
    home: Path, catalog, central_db: str
) -> None:
    from central.catalog import CentralCatalog

    key = home_key(home)
    central = CentralCatalog(central_db)
    consumer = MqttConsumer(central, broker_settings(), keys=StationKeys(register({STATION: key})))
    topic = topics.health(STATION)
    report = station_report(catalog, config(), home, SimulatedClock(synchronised=True))
    good = sign_payload(key, topic, canonical(report).encode())
    assert consumer.handle(topic, good) == "stored"
    forged_report = {**report, "clock": {"synchronised": False}}
    forged = sign_payload(new_key(), topic, canonical(forged_report).encode())
    unsigned = canonical(forged_report).encode()
    altered = json.loads(good)
    altered["store"]["free_bytes"] = 1
    for payload in (forged, unsigned, canonical(altered).encode()):
        assert consumer.handle(topic, payload) == "alert"
    assert [a["topic"] for a in central.alerts(STATION)] == [topic] * 3
    kept = central.station(STATION)["health_report"]
    assert kept["clock"]["synchronised"] is True and kept["store"] == report["store"]
    central.close()


def broker_settings():  # -> ConsumerSettings: a consumer only fed by hand here
    from central.consumer import ConsumerSettings

    return ConsumerSettings(port=1)


def test_the_report_takes_no_audit_entry_and_no_outbox_row(home: Path, catalog) -> None:
    """The report is a measurement, not a state change: it takes no audit entry and no outbox
    row, so a report every five minutes does not grow the evidence's history."""
    before = (audit.head(catalog), outbox.backlog(catalog.conn))
    link = MemoryLink(MemoryBroker())
    link.connect()
    reporter = HealthReporter(
        link, config(), home, SimulatedClock(synchronised=True), signing_key=home_key(home)
    )
    assert reporter.publish_once()
    assert (audit.head(catalog), outbox.backlog(catalog.conn)) == before
