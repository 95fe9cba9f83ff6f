"""The whole way: a recorder docked at a running station reaches the central store.

Real parts only: `recdock run --simulate` as a subprocess with a real FAT32 image, a real
Mosquitto on loopback (the shipped configuration: TLS, the station's client certificate, the
ACL), and the reference central store (uvicorn) with its MQTT consumer and tus endpoint, the
station enrolled with its signing key. The station's events arrive at the central catalog,
signed, with an intact audit chain, its recordings are uploaded and confirmed by receipts, the
station's chain agrees with the centre's head, and a clean stop shows as "stopped" at the
centre.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import requests

from central.app import create_app
from tests.central_server import serve_app
from tests.conftest import needs_fusefat
from tests.mosquitto import Mosquitto
from tests.recorders import make_fat_recorder, wait_for
from tests.signing_keys import home_key, register
from tests.test_station import CONFIG, Station, start_station, stop_station

STATION_TOKEN = "station-token-0123456789"
READER_TOKEN = "reader-token-0123456789"


@needs_fusefat
def test_docked_recorder_reaches_the_central_store(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    key = home_key(tmp_path / "home")  # `recdock enrol` on the station, in effect
    app = create_app(
        tmp_path / "central",
        {STATION_TOKEN: "st-test"},
        database=tmp_path / "central" / "central.db",
        mqtt=broker.consumer_settings(client_id="central-e2e"),
        api_tokens={READER_TOKEN: "supervisor"},
        station_keys=register({"st-test": key}),
    )
    try:
        with serve_app(app) as url:
            # the consumer's first session starts with its subscription: what the station
            # publishes before it would reach nobody
            assert app.state.consumer.wait_subscribed(10)
            station = start_sync_station(tmp_path, broker, url)
            try:
                image = make_fat_recorder(tmp_path / "r1.img", "E2E0001", files=3, size=1 << 20)
                station.plug(1, image)
                station.wait_state(1, "ready")
                rows = wait_for(lambda: all_synced(station), 60, "every recording synced")
                api = requests.Session()
                api.headers["Authorization"] = f"Bearer {READER_TOKEN}"

                # every recording: a receipt that confirms its hash, and the object at the centre
                for row in rows:
                    receipt = json.loads(row["receipt"])
                    assert receipt["sha256"] == row["sha256"]
                    obj = central_object(tmp_path / "central", row["sha256"])
                    assert hashlib.sha256(obj.read_bytes()).hexdigest() == row["sha256"]

                # every audit entry of the station reached the central catalog, chain intact
                def central_has_all() -> bool:
                    seqs = station.query("SELECT seq FROM audit")
                    got = api.get(f"{url}/api/events", params={"station": "st-test", "limit": 1000})
                    got.raise_for_status()
                    return {e["seq"] for e in events_of(got.json())} >= {r["seq"] for r in seqs}

                wait_for(central_has_all, 30, "the station's events at the central store")
                info = api.get(f"{url}/api/stations/st-test").json()
                assert info["chain"]["state"] == "ok" and info["chain"]["missing"] == [], info
                assert info["security_alerts"] == 0, "everything the station sent was signed"
                against = station.run("verify", "--against-central")
                assert against.returncode == 0, against.stdout + against.stderr
                assert "central store: agrees" in against.stdout
            finally:
                assert stop_station(station) == 0, station.log.read_text()[-3000:]
            wait_for(
                lambda: api.get(f"{url}/api/stations/st-test").json()["status"] == "stopped",
                30,
                "the station's clean stop at the central store",
            )
            assert station.query("SELECT count(*) AS n FROM outbox")[0]["n"] == 0
    finally:
        broker.stop()


def start_sync_station(tmp_path: Path, broker: Mosquitto, url: str) -> Station:
    extra = (
        "\n"
        + broker.mqtt_toml("st-test")
        + f"""
[upload]
enabled = true
endpoint = "{url}/files/"
token = "{STATION_TOKEN}"
insecure_lab = true
"""
    )
    config = tmp_path / "recdock.toml"
    config.write_text(CONFIG.format(slots=2) + extra)
    return start_station(tmp_path, config=config)


def all_synced(station: Station) -> list[dict] | None:
    rows = station.query("SELECT * FROM recordings")
    return rows if rows and all(r["synced_at"] for r in rows) else None


def central_object(data_dir: Path, sha256: str) -> Path:
    found = list(data_dir.rglob(sha256))
    assert found, f"no object {sha256} under {data_dir}"
    return found[0]


def events_of(body: object) -> list[dict]:
    if isinstance(body, dict):
        for key in ("events", "items", "rows"):
            if isinstance(body.get(key), list):
                return body[key]
    assert isinstance(body, list), body
    return body
