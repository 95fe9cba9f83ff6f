"""Health words, the overview and the recorder list at the centre (central/health.py,
central/views.py).

The centre is fed signed messages as stations send them (status, recorder health, the fault
events of the station's own code) through the consumer's own handler; ``now`` is chosen.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.catalog import Catalog, outbox
from agent.catalog.faults import report_fault
from central import health, views
from central.catalog import CentralCatalog
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from central.settings import CentreSettings
from sync.wire import topics
from sync.wire.chain import canonical
from sync.wire.signing import sign_payload
from tests.signing_keys import new_key, register, signed

ROOT = Path(__file__).resolve().parent.parent
KEYS = {name: new_key() for name in ("ST-1", "ST-2")}
NOW = datetime.now(UTC) + timedelta(minutes=1)  # faults open at the real time


def ago(hours: float) -> str:
    return (NOW - timedelta(hours=hours)).isoformat()


@pytest.fixture
def central(central_db: str) -> MqttConsumer:
    catalog = CentralCatalog(central_db)
    consumer = MqttConsumer(catalog, ConsumerSettings(port=1), keys=StationKeys(register(KEYS)))
    yield consumer
    catalog.close()


def send(central: MqttConsumer, station: str, topic: str, doc: dict, retained=False) -> None:
    payload = sign_payload(KEYS[station], topic, canonical(doc).encode())
    assert central.handle(topic, payload, retained=retained) == "stored"


def status(central: MqttConsumer, station: str, state: str) -> None:
    doc = {"station": station, "state": state}
    if state != "offline":
        doc["at"] = NOW.isoformat()
    send(central, station, topics.status(station), doc)


def recorder(central: MqttConsumer, station: str, serial: str, at: str, **fields) -> None:
    doc = {"station": station, "device_serial": serial, "at": at, "ready": True, **fields}
    send(central, station, topics.recorder(station, serial), doc, retained=True)


def station_fault(central: MqttConsumer, home: Path, station: str, kind: str, severity: str):
    cat = Catalog(home / station / "catalog.db", station_id=station)
    report_fault(cat, kind, "store", "broken", severity=severity)
    rows = outbox.pending(cat.conn, limit=100)
    for topic, payload in signed(KEYS[station], [(m.topic, m.payload) for m in rows]):
        central.handle(topic, payload)


def by(rows: list[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in rows}


def test_each_station_gets_the_word_its_conditions_give(
    central: MqttConsumer, tmp_path: Path
) -> None:
    for name in ("ST-1", "ST-2"):
        status(central, name, "online")
    station_fault(central, tmp_path, "ST-2", "store.smart", "warning")
    words = by(views.station_list(central.catalog, now=NOW), "station")
    assert (words["ST-1"]["health"], words["ST-1"]["health_reasons"]) == ("healthy", [])
    assert words["ST-2"]["health"] == "degraded" and words["ST-2"]["open_faults"] == 1
    status(central, "ST-1", "offline")  # its Last Will
    words = by(views.station_list(central.catalog, now=NOW), "station")
    assert words["ST-1"]["health"] == "unhealthy" and "offline" in words["ST-1"]["health_reasons"]
    later = NOW + timedelta(hours=25)
    assert by(views.station_list(central.catalog, now=later), "station")["ST-2"]["health"] == (
        "unhealthy"  # its warning fault is past the 24-hour limit
    )
    quiet = CentreSettings(station_silent_hours=1)
    words = by(views.station_list(central.catalog, quiet, now=NOW + timedelta(hours=2)), "station")
    assert "silent" in words["ST-2"]["health_reasons"]


def health_report(
    central: MqttConsumer,
    station: str,
    *,
    free: int = 50,
    total: int = 100,
    events_age: float | None = None,
    uploads_age: float | None = None,
    uploads: bool = True,
    synchronised: bool = True,
) -> None:
    """A station's health report (schema health.json) as the station signs it, received now."""
    doc = {
        "station": station,
        "at": NOW.isoformat(),
        "version": "0.1.0",
        "store": {"free_bytes": free, "total_bytes": total},
        "events": {"count": int(events_age is not None), "oldest_age_s": events_age},
        "uploads": {
            "enabled": uploads,
            "count": int(uploads_age is not None),
            "bytes": 9,
            "oldest_age_s": uploads_age,
        },
        "clock": {"synchronised": synchronised},
        "bays": {"total": 2, "in_use": 1},
    }
    send(central, station, topics.health(station), doc)


def test_a_low_store_an_old_backlog_or_an_unsynchronised_clock_make_a_station_degraded(
    central: MqttConsumer,
) -> None:
    for name in ("ST-1", "ST-2"):
        status(central, name, "online")
    received = datetime.now(UTC)

    def station(**report) -> dict:
        health_report(central, "ST-1", **report)
        return by(views.station_list(central.catalog, now=received), "station")["ST-1"]

    assert station()["health"] == "healthy"
    assert station()["report"]["bays_in_use"] == 1
    low = station(free=9)  # below store_low_percent (10) of the store's size
    assert (low["health"], low["health_reasons"]) == ("degraded", ["store_low"])
    assert low["report"]["store_free_percent"] == 9.0
    assert station(free=10)["health"] == "healthy"
    assert station(events_age=3601)["health_reasons"] == ["backlog_old"]  # over 60 min
    assert station(events_age=3500)["health"] == "healthy"
    assert station(uploads_age=12 * 3600 + 1)["health_reasons"] == ["backlog_old"]
    assert station(uploads_age=12 * 3600 + 1, uploads=False)["health"] == "healthy"
    assert station(synchronised=False)["health_reasons"] == ["clock_unsynchronised"]
    # the ages grow while no new report comes: counted from when the centre received it
    station(events_age=3500)
    later = by(views.station_list(central.catalog, now=received + timedelta(minutes=5)),
               "station")["ST-1"]  # fmt: skip
    assert later["health_reasons"] == ["backlog_old"]
    got = central.catalog.station("ST-1")["health_report"]["received_at"]
    since = (received + timedelta(minutes=5) - datetime.fromisoformat(got)).total_seconds()
    assert later["report"]["events_oldest_age_s"] == round(3500 + since, 1)
    stricter = CentreSettings(store_low_percent=60, event_backlog_minutes=1)
    [one] = [s for s in views.station_list(central.catalog, stricter, now=received)
             if s["station"] == "ST-1"]  # fmt: skip
    assert one["health_reasons"] == ["store_low", "backlog_old"]
    assert (
        by(views.station_list(central.catalog, now=received), "station")["ST-2"]["report"] is None
    )


def test_a_retained_report_replayed_on_subscribing_keeps_its_time(central: MqttConsumer) -> None:
    doc = {"station": "ST-1", "at": ago(2), "version": "1",
           "store": {"free_bytes": 5, "total_bytes": 10},
           "events": {"count": 1, "oldest_age_s": 60.0},
           "uploads": {"enabled": True, "count": 0, "bytes": 0, "oldest_age_s": None},
           "clock": {"synchronised": True}, "bays": {"total": 1, "in_use": 0}}  # fmt: skip
    send(central, "ST-1", topics.health("ST-1"), doc, retained=True)
    kept = central.catalog.station("ST-1")
    assert kept["health_report"]["received_at"] == datetime.fromisoformat(ago(2)).isoformat()
    assert kept["last_seen"] is None, "a replayed retained report says nothing of now"
    [one] = views.station_list(central.catalog, now=NOW)
    assert one["report"]["events_oldest_age_s"] >= 60 + 2 * 3600 - 1
    send(central, "ST-1", topics.health("ST-1"), doc, retained=False)
    assert central.catalog.station("ST-1")["last_seen"] is not None


def test_recorders_words_and_the_list_filtered_by_unit_and_station(
    central: MqttConsumer,
) -> None:
    recorder(central, "ST-1", "R-OK", ago(2), unit="U1", battery_pct=90.0)
    recorder(central, "ST-1", "R-NOTREADY", ago(2), unit="U1", ready=False,
             reasons=["battery 5% (below 30%)"])  # fmt: skip
    recorder(central, "ST-2", "R-REASON", ago(2), unit="U2", reasons=["clock was 9 s off"])
    recorder(central, "ST-2", "R-OLD", ago(100), unit="U2")
    rows = by(views.recorder_list(central.catalog, now=NOW), "serial")
    assert {s: r["health"] for s, r in rows.items()} == {
        "R-OK": "healthy",
        "R-NOTREADY": "unhealthy",
        "R-REASON": "degraded",
        "R-OLD": "unknown",
    }
    assert rows["R-OK"]["station"] == "ST-1" and rows["R-OK"]["battery_pct"] == 90.0
    u1 = views.recorder_list(central.catalog, now=NOW, unit="U1")
    assert [r["serial"] for r in u1] == ["R-NOTREADY", "R-OK"]
    st2 = views.recorder_list(central.catalog, now=NOW, station="ST-2")
    assert [r["serial"] for r in st2] == ["R-OLD", "R-REASON"]


def test_a_recorder_is_where_it_docked_last_whichever_station(central: MqttConsumer) -> None:
    recorder(central, "ST-1", "R-1", ago(30), battery_pct=50.0)
    recorder(central, "ST-2", "R-1", ago(3), battery_pct=80.0)
    recorder(central, "ST-1", "R-1", ago(30), battery_pct=50.0)  # a late replay
    [row] = views.recorder_list(central.catalog, now=NOW)
    assert (row["station"], row["battery_pct"], row["last_docked"]) == ("ST-2", 80.0, ago(3))


def test_a_recorders_history_has_its_battery_and_clock_drift_series(
    central: MqttConsumer,
) -> None:
    recorder(central, "ST-1", "R-1", ago(72), battery_pct=95.0, clock_offset_s=1.0,
             clock_offset_after_s=0.0)  # fmt: skip
    recorder(central, "ST-2", "R-1", ago(48), battery_pct=90.0, clock_offset_s=2.0,
             clock_offset_after_s=0.0)  # fmt: skip
    recorder(central, "ST-1", "R-1", ago(0), battery_pct=85.0, clock_offset_s=-10.0,
             clock_offset_after_s=0.0)  # fmt: skip
    found = views.recorder_history(central.catalog, "R-1", now=NOW)
    assert [p["battery_pct"] for p in found["series"]] == [95.0, 90.0, 85.0]
    assert [p["station"] for p in found["series"]] == ["ST-1", "ST-2", "ST-1"]
    assert [round(d["s_per_day"], 2) for d in found["drift"]] == [2.0, -5.0]
    assert views.recorder_history(central.catalog, "R-NONE", now=NOW) is None


def test_the_overview_puts_the_worst_first_and_names_the_offline_and_overdue(
    central: MqttConsumer, tmp_path: Path
) -> None:
    status(central, "ST-1", "offline")
    status(central, "ST-2", "online")
    station_fault(central, tmp_path, "ST-2", "store.smart", "warning")
    station_fault(central, tmp_path, "ST-1", "store.failing", "critical")
    recorder(central, "ST-2", "R-LATE", ago(30), unit="U2", late=[{"path": "a.mp4"}])
    recorder(central, "ST-2", "R-FRESH", ago(1), unit="U2")
    seen = views.overview(central.catalog, now=NOW)
    assert [f["severity"] for f in seen["faults"]] == ["critical", "warning"]
    assert all(f["band"] == "ok" for f in seen["faults"])
    assert [s["station"] for s in seen["stations_offline"]] == ["ST-1"]
    assert [r["serial"] for r in seen["recorders_overdue"]] == ["R-LATE"]
    assert seen["late_footage"] == {"U2": {"late": 1, "serials": ["R-LATE"]}}
    assert seen["counts"]["stations"] == {
        "healthy": 0, "degraded": 1, "unhealthy": 1, "unknown": 0
    }  # fmt: skip
    bands = [f["band"] for f in views.overview(central.catalog, now=NOW + timedelta(hours=13))
             ["faults"]]  # fmt: skip
    assert bands == ["amber", "amber"]
    json.dumps(seen)  # what the API serves


def test_the_documented_conditions_are_the_ones_the_code_applies() -> None:
    text = (ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
    for condition in health.STATION_CONDITIONS + health.RECORDER_CONDITIONS:
        row = f"| {condition.word} | `{condition.name}` | {condition.text} |"
        assert row in text, f"docs/faults.md lacks the row: {row}"


def test_the_json_api_serves_the_overview_the_fleet_and_a_recorders_history(
    tmp_path: Path, central_db: str
) -> None:
    import requests

    from central.actions import CentralContext, set_register_entry
    from central.app import create_app
    from tests.central_server import TOKENS, serve_app

    reader = "reader-token-0123456789abcdef"
    app = create_app(
        tmp_path / "data", TOKENS, api_tokens={reader: "supervisor"}, database=central_db
    )
    catalog = app.state.catalog
    doc = {"station": "ST-1", "device_serial": "R-1", "at": ago(1), "ready": False,
           "unit": "U1", "battery_pct": 40.0, "reasons": ["battery low"]}  # fmt: skip
    catalog.record_recorder("ST-1", doc, received_at=NOW.isoformat())
    set_register_entry(CentralContext(catalog), "R-2", lifecycle="in_service", by="a", unit="U2")
    auth = {"Authorization": f"Bearer {reader}"}
    with serve_app(app) as url:

        def get(path: str, **params):
            return requests.get(f"{url}/api{path}", headers=auth, params=params, timeout=10)

        assert requests.get(f"{url}/api/overview", timeout=10).status_code == 401
        assert get("/overview").json()["counts"]["recorders"]["unhealthy"] == 1
        assert [r["serial"] for r in get("/fleet/recorders").json()] == ["R-1", "R-2"]
        assert [r["serial"] for r in get("/fleet/recorders", unit="U2").json()] == ["R-2"]
        assert [r["serial"] for r in get("/fleet/recorders", station="ST-1").json()] == ["R-1"]
        one = get("/fleet/recorders/R-1").json()
        assert one["recorder"]["health"] == "unhealthy"
        assert [p["battery_pct"] for p in one["series"]] == [40.0]
        assert get("/fleet/recorders/R-404").status_code == 404
        assert [s["station"] for s in get("/fleet/stations").json()] == ["ST-1"]
        assert [e["serial"] for e in get("/register").json()] == ["R-2"]
        assert get("/faults", station="ST-1").json() == []


def test_the_reads_per_recorder_and_per_round_search_indexes(central_db: str) -> None:
    """What runs per recorder (its history, every rules round) or per page (a station's
    recorders, a unit's register, the open faults) searches its index, never scans a table
    nor sorts in a temporary tree; only the partial index of pending commands is scanned.
    (On PostgreSQL, whose planner scans a table this small: the index serves the query, in
    its order, once a table scan and a bitmap scan are ruled out.)"""
    catalog = CentralCatalog(central_db)
    plans = {
        "SELECT * FROM recorder_history WHERE serial = ? ORDER BY at DESC LIMIT 5":
            "recorder_history_serial",
        "SELECT * FROM devices WHERE station = ? ORDER BY serial": "devices_station",
        "SELECT * FROM devices WHERE at < ? ORDER BY at": "devices_at",
        "SELECT * FROM register WHERE unit = ? ORDER BY serial": "register_unit",
        "SELECT * FROM faults WHERE state = 'open' ORDER BY opened_at": "faults_state",
        "SELECT * FROM faults WHERE device = ? AND state = 'open'": "faults_device",
        "SELECT seq FROM commands WHERE published_at IS NULL ORDER BY seq":
            "commands_unpublished",
    }  # fmt: skip
    if catalog.dialect.name == "postgresql":
        catalog.conn.execute("SET enable_seqscan = off")
        catalog.conn.execute("SET enable_bitmapscan = off")
    for sql, index in plans.items():
        params = [] if "?" not in sql else ["x"]
        if catalog.dialect.name == "postgresql":
            plan = "\n".join(r[0] for r in catalog.conn.execute(f"EXPLAIN {sql}", params))
            assert f" using {index} " in plan.lower() and "Sort" not in plan, (sql, plan)
            continue
        steps = [r[3] for r in catalog.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        assert any(f"USING INDEX {index}" in s or f"USING COVERING INDEX {index}" in s
                   for s in steps), (sql, steps)  # fmt: skip
        scans = [s for s in steps if s.startswith("SCAN") and "commands_unpublished" not in s]
        assert scans == [] and not any("TEMP B-TREE" in s for s in steps), (sql, steps)
    catalog.close()
