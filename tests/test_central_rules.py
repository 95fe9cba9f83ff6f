"""The centre's own fault rules (central/rules.py), each provoked by what stations send.

Messages are signed as stations sign them and go through the consumer's handler; the rules
run through :func:`central.rules.evaluate` at a chosen ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.catalog import CentralCatalog
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from central.rules import evaluate
from central.settings import CentreSettings
from sync.wire import topics
from sync.wire.chain import GENESIS, canonical, entry_hash
from sync.wire.signing import sign_payload
from tests.signing_keys import new_key, register

KEYS = {name: new_key() for name in ("ST-1", "ST-2")}
SETTINGS = CentreSettings()


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def central(central_db: str) -> MqttConsumer:
    catalog = CentralCatalog(central_db)
    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=StationKeys(register(KEYS)))
    yield consumer
    catalog.close()


def send(central: MqttConsumer, station: str, topic: str, doc: dict) -> None:
    payload = sign_payload(KEYS[station], topic, canonical(doc).encode())
    assert central.handle(topic, payload) == "stored"


def status(central: MqttConsumer, station: str, state: str) -> None:
    doc = {"station": station, "state": state}
    if state != "offline":
        doc["at"] = now().isoformat()
    send(central, station, topics.status(station), doc)


def report(central: MqttConsumer, station: str, serial: str, at: datetime, **fields) -> None:
    doc = {"station": station, "device_serial": serial, "at": at.isoformat(), **fields}
    send(central, station, topics.recorder(station, serial), doc)


def centre_faults(central: MqttConsumer, rule: str, *, all_: bool = False) -> list[dict]:
    return [
        f
        for f in central.catalog.faults(include_resolved=all_)
        if f["origin"] == "centre" and f["rule"] == rule
    ]


def test_a_station_offline_longer_than_allowed_gets_a_fault_that_resolves_when_it_returns(
    central: MqttConsumer,
) -> None:
    status(central, "ST-1", "offline")
    assert evaluate(central.catalog, SETTINGS, now() + timedelta(minutes=5)) == {
        "opened": [], "resolved": []
    }  # fmt: skip
    opened = evaluate(central.catalog, SETTINGS, now() + timedelta(minutes=20))["opened"]
    [fault] = centre_faults(central, "station.offline")
    assert opened == [fault["ref"]] and fault["station"] == "ST-1"
    assert fault["id"].startswith("centre:station.offline:") and fault["severity"] == "error"
    assert fault["evidence"]["status"] == "offline" and fault["evidence"]["hours"] > 0.25
    again = evaluate(central.catalog, SETTINGS, now() + timedelta(minutes=30))
    assert again["opened"] == [], "the same condition never opens a second fault"
    assert len(centre_faults(central, "station.offline", all_=True)) == 1
    status(central, "ST-1", "online")
    assert evaluate(central.catalog, SETTINGS, now())["resolved"] == [fault["ref"]]
    [done] = centre_faults(central, "station.offline", all_=True)
    assert done["lifecycle"] == "resolved" and done["resolved_by"] == "recdock-central"


def test_a_silent_station_gets_a_fault(central: MqttConsumer) -> None:
    status(central, "ST-2", "online")
    evaluate(central.catalog, SETTINGS, now() + timedelta(hours=23))
    assert centre_faults(central, "station.silent") == []
    evaluate(central.catalog, SETTINGS, now() + timedelta(hours=25))
    [fault] = centre_faults(central, "station.silent")
    assert fault["station"] == "ST-2" and fault["evidence"]["threshold_hours"] == 24.0


def test_a_recorder_docked_nowhere_too_long_is_overdue_whichever_station_it_left(
    central: MqttConsumer,
) -> None:
    report(central, "ST-1", "R-1", now() - timedelta(hours=30))
    report(central, "ST-2", "R-2", now() - timedelta(hours=30))
    report(central, "ST-1", "R-2", now() - timedelta(hours=2))  # docked again, elsewhere
    evaluate(central.catalog, SETTINGS)
    [fault] = centre_faults(central, "recorder.overdue")
    assert (fault["device"], fault["station"]) == ("R-1", "recdock-central")
    assert fault["evidence"]["last_station"] == "ST-1" and fault["evidence"]["hours"] > 24


def test_a_clock_drifting_across_stations_gets_a_fault_with_both_dockings(
    central: MqttConsumer,
) -> None:
    t0 = now() - timedelta(days=2)
    report(central, "ST-1", "R-1", t0, clock_offset_s=0.5, clock_offset_after_s=0.0)
    report(central, "ST-2", "R-1", t0 + timedelta(days=2), clock_offset_s=5.0)  # 2.5 s/day
    report(central, "ST-2", "R-2", t0, clock_offset_s=0.0, clock_offset_after_s=0.0)
    report(central, "ST-1", "R-2", t0 + timedelta(days=2), clock_offset_s=-10.0)  # -5 s/day
    evaluate(central.catalog, SETTINGS)
    [fault] = centre_faults(central, "recorder.clock_drift")
    assert fault["device"] == "R-2" and fault["evidence"]["s_per_day"] == -5.0
    assert [d["station"] for d in fault["evidence"]["dockings"]] == ["ST-2", "ST-1"]


def test_a_battery_low_at_several_dockings_in_a_row_gets_a_fault(central: MqttConsumer) -> None:
    t0 = now() - timedelta(days=3)
    for i, pct in enumerate([15.0, 12.0, 18.0]):
        report(central, ("ST-1", "ST-2")[i % 2], "R-LOW", t0 + timedelta(days=i), battery_pct=pct)
    for i, pct in enumerate([15.0, 60.0, 18.0]):
        report(central, "ST-1", "R-MIXED", t0 + timedelta(days=i), battery_pct=pct)
    evaluate(central.catalog, SETTINGS)
    [fault] = centre_faults(central, "recorder.battery")
    assert fault["device"] == "R-LOW"
    assert [d["battery_pct"] for d in fault["evidence"]["dockings"]] == [15.0, 12.0, 18.0]


def test_late_footage_of_a_unit_gets_a_fault_naming_its_recorders(central: MqttConsumer) -> None:
    late = [{"path": "DCIM/a.mp4", "hours": 30}]
    report(central, "ST-1", "R-1", now() - timedelta(hours=1), unit="U-7", late=late)
    report(central, "ST-2", "R-2", now() - timedelta(hours=1), unit="U-8")
    evaluate(central.catalog, SETTINGS)
    [fault] = centre_faults(central, "unit.late_footage")
    assert fault["subject"] == "U-7" and fault["evidence"]["serials"] == ["R-1"]
    lenient = CentreSettings(late_max=1)
    assert evaluate(central.catalog, lenient)["resolved"] == [fault["ref"]]


def test_a_station_event_with_a_centre_fault_id_does_not_touch_the_centre_fault(
    central: MqttConsumer,
) -> None:
    status(central, "ST-1", "offline")
    evaluate(central.catalog, SETTINGS, now() + timedelta(minutes=20))
    [fault] = centre_faults(central, "station.offline")
    data = {"kind": "x", "subject": "y", "severity": "warning", "detail": "mine"}
    for seq, kind in ((1, "fault.open"), (2, "fault.resolved")):
        send_event(central, "ST-1", seq, kind, fault["id"], data)
    [still] = centre_faults(central, "station.offline")
    assert (still["state"], still["detail"], still["origin"]) == ("open", fault["detail"], "centre")


_prev: dict[str, str] = {}


def send_event(central, station: str, seq: int, kind: str, subject: str, data: dict) -> None:
    at = now().isoformat()
    prev = _prev.get(station, GENESIS) if seq > 1 else GENESIS
    digest = entry_hash(prev, seq, at, kind, subject, canonical(data))
    _prev[station] = digest
    doc = {
        "event_id": f"{station}:c1:{seq}", "station": station, "seq": seq, "at": at,
        "kind": kind, "subject": subject, "data": data, "prev_hash": prev, "hash": digest,
    }  # fmt: skip
    send(central, station, topics.event(station), doc)


def test_recdock_central_runs_the_rules_by_itself(tmp_path: Path, central_db: str) -> None:
    from central.app import create_app
    from tests.central_server import TOKENS, serve_app
    from tests.recorders import wait_for

    settings = CentreSettings(station_offline_minutes=0, rules_interval_s=1)
    app = create_app(tmp_path / "data", TOKENS, api_tokens={}, centre=settings, database=central_db)
    catalog = app.state.catalog
    catalog.record_status("ST-1", {"station": "ST-1", "state": "offline"}, live=True,
                          received_at=(now() - timedelta(minutes=1)).isoformat())  # fmt: skip
    with serve_app(app):
        wait_for(
            lambda: [f for f in catalog.faults() if f["rule"] == "station.offline"],
            what="the station.offline fault opened by the periodic rules",
        )  # fmt: skip
