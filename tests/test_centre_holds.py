"""Holds at the centre (rule clause 12): a station's holds reach the centre's table and API in
its signed events; a supervisor places and releases holds at the dashboard, which travel to the
station as signed ``hold`` commands and protect its recordings (agent/catalog/holds.py); a
viewer cannot, and a hold command the centre did not sign never acts.

The catalog-level tests feed the centre what the station's own code queued, signed as it
leaves (no broker); the others run a real Mosquitto with the shipped configuration, TLS and
ACL, the station's own MQTT service, and a served recdock-central with its consumer and its
dashboard, over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.catalog import Catalog, holds, open_catalog, outbox, recordings
from agent.catalog import faults as F
from agent.config import SHIPPED_PROFILES, Config
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from central import hold_actions
from central.actions import ActionError, CentralContext, NotFound, NotOpen
from central.catalog import CentralCatalog
from central.catalog import commands as centre_commands
from central.catalog import holds as centre_holds
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from sync.mqtt.commands import SECURITY_KIND
from sync.services import MqttService
from sync.wire import commands
from sync.wire.signing import public_key_text
from tests.central_server import serve_app
from tests.dashboard_tools import csrf_of, dashboard_app, login
from tests.mosquitto import CENTRAL, Mosquitto, Subscriber
from tests.recorders import make_folder_recorder, wait_for
from tests.signing_keys import home_key, new_key, queued, register
from tests.test_broker import connect, stop
from tests.test_mqtt import needs_mosquitto, needs_openssl

STATION = "ST-A"
SERIAL = "SIM0042"
CENTRE_KEY = new_key()
READER = "reader-token-0123456789abcdef"


def offload(home: Path, catalog: Catalog, serial: str = SERIAL, files: int = 2) -> list[dict]:
    """A folder recorder offloaded by the station's own code (the source kept)."""
    config = Config.model_validate({"station_id": STATION})
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    rec = make_folder_recorder(home.parent / f"rec-{serial}", serial, files=files, size=4096)
    report = Offloader(config, home, catalog, keep_source=True).run(rec, profile)
    assert report.ok, report.failures
    return [r for r in recordings.listing(catalog) if r["device_serial"] == serial]


def test_the_centre_knows_the_stations_scopes_and_reasons() -> None:
    assert commands.HOLD_SCOPES == holds.SCOPES
    assert commands.HOLD_REASONS == holds.REASONS


# -- at the centre's catalog (no broker) ---------------------------------------------------------


@pytest.fixture
def station(home: Path) -> Iterator[tuple[Catalog, Ed25519PrivateKey]]:
    catalog = open_catalog(home, STATION)
    yield catalog, home_key(home)
    catalog.close()


@pytest.fixture
def centre(central_db: str, station) -> Iterator[MqttConsumer]:  # noqa: ANN001
    catalog = CentralCatalog(central_db)
    keys = StationKeys(register({STATION: station[1]}))
    yield MqttConsumer(catalog, ConsumerSettings(port=1), keys=keys, signing_key=CENTRE_KEY)
    catalog.close()


def feed(station, centre: MqttConsumer, sent: set[int]) -> None:  # noqa: ANN001
    """What the station queued since the last call, signed, into the centre's consumer."""
    catalog, key = station
    rows = outbox.pending(catalog.conn, limit=100_000)
    for m, (topic, payload) in zip(rows, queued(catalog, key), strict=True):
        if m.id not in sent:
            sent.add(m.id)
            assert centre.handle(topic, payload, retained=m.retain) in ("stored", "cleared")


def test_a_stations_holds_and_releases_reach_the_centres_table(station, centre) -> None:  # noqa: ANN001
    catalog, _ = station
    device = holds.place(
        catalog,
        {
            "scope": "device",
            "device_serial": SERIAL,
            "reason": "complaint",
            "case_number": "2026-017",
            "case_name": "张某投诉",
            "placed_by": "officer 0107",
            "from_at": "2026-01-01T00:00:00+00:00",
        },
    )
    other = holds.place(
        catalog,
        {
            "scope": "officer",
            "officer_id": "0107",
            "reason": "other",
            "reason_text": "asked by the bureau",
            "case_number": "X-1",
        },
    )
    assert holds.lift(catalog, other, by="officer 0107", reason="the bureau withdrew")
    feed(station, centre, set())
    conn = centre.catalog.conn
    listed = {h["hold_id"]: h for h in centre_holds.listing(conn)}
    assert set(listed) == {device, other}
    held = listed[device]
    assert (held["station"], held["scope"], held["device_serial"], held["reason"]) == (
        STATION,
        "device",
        SERIAL,
        "complaint",
    )
    assert (held["case_name"], held["origin"], held["placed_by"]) == (
        "张某投诉",
        "station",
        "officer 0107",
    )
    assert held["state"] == "held" and held["from_at"] == "2026-01-01T00:00:00+00:00"
    gone = listed[other]
    assert gone["state"] == "released" and gone["release_reason"] == "the bureau withdrew"
    assert [h["hold_id"] for h in centre_holds.listing(conn, active=True)] == [device]
    assert [h["hold_id"] for h in centre_holds.listing(conn, case_number="X-1")] == [other]
    assert centre_holds.listing(conn, station="ST-Z") == []
    assert [h["hold_id"] for h in centre_holds.listing(conn, device=SERIAL)] == [device]


def test_pages_of_holds_keep_a_stable_order(station, centre) -> None:  # noqa: ANN001
    catalog, _ = station
    placed = [
        holds.place(
            catalog,
            {
                "scope": "device",
                "device_serial": f"D{n}",
                "reason": "major_case",
                "placed_at": "2026-03-01T00:00:00+00:00",
            },
        )  # the same time
        for n in range(7)
    ]
    feed(station, centre, set())
    conn = centre.catalog.conn
    pages = [centre_holds.listing(conn, limit=3, offset=o) for o in (0, 3, 6)]
    seen = [h["hold_id"] for page in pages for h in page]
    assert sorted(seen) == sorted(placed) and len(seen) == len(set(seen)) == 7
    assert seen == [h["hold_id"] for h in centre_holds.listing(conn)]


def test_a_hold_event_the_centre_cannot_read_is_kept_as_an_event_and_holds_nothing(
    station, centre
) -> None:  # noqa: ANN001
    from agent.catalog import audit

    catalog, _ = station
    with catalog.tx():
        audit.append(
            catalog,
            "hold.placed",
            "H-bad",
            {"id": "H-bad", "scope": "galaxy", "reason": "complaint"},
        )
    feed(station, centre, set())
    assert centre_holds.listing(centre.catalog.conn) == []
    assert [e["kind"] for e in centre.catalog.events(STATION)][0] == "hold.placed"
    assert centre.catalog.station(STATION)["chain"]["state"] == "ok"


def test_placing_at_the_centre_sends_each_hold_where_its_footage_is(
    station, centre, home: Path
) -> None:  # noqa: ANN001
    catalog, _ = station
    [first, _second] = offload(home, catalog)
    feed(station, centre, set())
    ctx = CentralContext(centre.catalog)
    on_file = hold_actions.place_hold(
        ctx,
        scope="recording",
        target=first["store_path"],
        reason="obstruction",
        by="li.supervisor",
        case_number="2026-020",
    )
    assert [(h["station"], h["state"], h["origin"]) for h in on_file] == [
        (STATION, "sent", "centre")
    ]
    [command] = centre_commands.listing(centre.catalog.conn)
    assert command["topic"] == commands.topic(STATION, "hold", on_file[0]["hold_id"])
    doc = command["doc"]
    assert (doc["action"], doc["scope"], doc["recording"], doc["reason"], doc["by"]) == (
        "place",
        "recording",
        first["store_path"],
        "obstruction",
        "li.supervisor",
    )
    assert commands.missing_fields(doc) == []
    with pytest.raises(NotFound, match="no station has sent"):
        hold_actions.place_hold(
            ctx, scope="recording", target="2026/no/such.mp4", reason="complaint", by="li"
        )
    for bad in (
        {"scope": "galaxy"},
        {"reason": "marked_on_recorder"},
        {"reason": "other"},
        {"target": " "},
        {"from_at": "yesterday"},
        {"from_at": "2026-02-01T00:00", "to_at": "2026-01-01T00:00"},
    ):
        given = {"scope": "device", "target": SERIAL, "reason": "complaint", **bad}
        with pytest.raises(ActionError):
            hold_actions.place_hold(ctx, by="li", **given)
    # a recorder docks anywhere: a hold on one goes to every station, new ones too
    on_recorder = hold_actions.place_hold(
        ctx,
        scope="device",
        target=SERIAL,
        reason="complaint",
        by="li",
        from_at="2026-01-01T08:00+08:00",
    )
    assert on_recorder[0]["from_at"] == "2026-01-01T00:00:00+00:00"
    assert hold_actions.push_holds(ctx) == 0
    centre.catalog.record_status("ST-NEW", None, live=False, received_at="2026-01-01T00:00:00")
    assert hold_actions.push_holds(ctx) == 1
    assert hold_actions.push_holds(ctx) == 0
    found = centre_holds.of_hold(centre.catalog.conn, on_recorder[0]["hold_id"])
    assert [(h["station"], h["state"], h["placed_by"]) for h in found] == [
        ("ST-A", "sent", "li"),
        ("ST-NEW", "sent", "li"),
    ]


def test_releasing_needs_a_reason_and_an_active_hold(station, centre) -> None:  # noqa: ANN001
    catalog, _ = station
    holds.place(catalog, {"scope": "device", "device_serial": SERIAL, "reason": "complaint"})
    feed(station, centre, set())
    ctx = CentralContext(centre.catalog)
    [hold] = centre_holds.listing(centre.catalog.conn)
    with pytest.raises(ActionError, match="needs a reason"):
        hold_actions.release_hold(ctx, hold["hold_id"], by="li", reason=" ")
    with pytest.raises(NotFound):
        hold_actions.release_hold(ctx, "HC-nothing", by="li", reason="x")
    [done] = hold_actions.release_hold(ctx, hold["hold_id"], by="li", reason="case closed")
    assert done["state"] == "release_sent" and done["released_by"] == "li"
    [command] = centre_commands.listing(centre.catalog.conn)
    assert (command["action"], command["doc"]["note"]) == ("release", "case closed")
    with pytest.raises(NotOpen):
        hold_actions.release_hold(ctx, hold["hold_id"], by="li", reason="again")


def test_one_stations_events_never_touch_another_stations_hold(
    station, centre, tmp_path: Path
) -> None:  # noqa: ANN001
    catalog, _ = station
    hold_id = holds.place(
        catalog, {"scope": "device", "device_serial": SERIAL, "reason": "complaint"}
    )
    feed(station, centre, set())
    other_key = new_key()
    centre.handler.keys = StationKeys(register({STATION: station[1], "ST-B": other_key}))
    other = Catalog(tmp_path / "b" / "catalog.db", station_id="ST-B")
    try:
        holds.place(
            other,
            {
                "id": hold_id,
                "scope": "device",
                "device_serial": "X",
                "reason": "other",
                "reason_text": "mine",
            },
        )
        holds.lift(other, hold_id, by="b", reason="b releases its own")
        feed((other, other_key), centre, set())
    finally:
        other.close()
    rows = {h["station"]: h for h in centre_holds.of_hold(centre.catalog.conn, hold_id)}
    assert rows[STATION]["state"] == "held" and rows[STATION]["device_serial"] == SERIAL
    assert rows["ST-B"]["state"] == "released"


# -- over the real broker, with the served dashboard --------------------------------------------


class System:
    """Mosquitto, recdock-central (consumer, signing key, dashboard, API) and station ST-A
    running its MQTT service with the centre's public key."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "station"
        self.home.mkdir()
        self.key = home_key(self.home)
        self.catalog = open_catalog(self.home, STATION)
        self.broker = Mosquitto(tmp_path / "broker")
        self.url = ""
        self.app = None
        self.service: MqttService | None = None

    def start_station(self) -> None:
        mqtt = self.broker.mqtt_config(STATION, centre_public_key=public_key_text(CENTRE_KEY))
        self.service = MqttService(Config(station_id=STATION, mqtt=mqtt), self.home)
        self.service.start()

    def api(self, path: str) -> object:
        r = requests.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {READER}"}, timeout=10
        )
        assert r.status_code == 200, r.text
        return r.json()

    def centre_rows(self, hold_id: str) -> list[dict]:
        return centre_holds.of_hold(self.app.state.catalog.conn, hold_id)


@pytest.fixture
def system(tmp_path: Path, central_db: str) -> Iterator[System]:
    s = System(tmp_path)
    with s.broker:
        s.app = dashboard_app(
            tmp_path,
            database=central_db,
            mqtt=s.broker.consumer_settings(),
            station_keys=register({STATION: s.key}),
            signing_key=CENTRE_KEY,
            api_tokens={READER: "supervisor"},
        )
        with serve_app(s.app) as url:
            s.url = url
            assert s.app.state.consumer.wait_subscribed(10)
            try:
                yield s
            finally:
                if s.service is not None:
                    s.service.stop()
                s.catalog.close()


@needs_mosquitto
@needs_openssl
def test_a_stations_hold_reaches_the_centres_api_over_the_broker(system: System) -> None:
    hold_id = holds.place(
        system.catalog,
        {
            "scope": "device",
            "device_serial": SERIAL,
            "reason": "major_case",
            "case_number": "2026-031",
        },
    )
    system.start_station()
    found = wait_for(
        lambda: system.api(f"/api/holds?station={STATION}&active=true"),
        what="the hold at the centre's API",
    )
    assert [(h["hold_id"], h["state"], h["case_number"]) for h in found] == [
        (hold_id, "held", "2026-031")
    ]
    assert system.api("/api/holds?case_number=nothing") == []
    assert system.api("/api/holds?active=false") == []
    r = requests.get(f"{system.url}/api/holds", timeout=10)
    assert r.status_code == 401, "a reader token is needed"


@needs_mosquitto
@needs_openssl
def test_a_hold_placed_at_the_dashboard_protects_the_stations_copy_until_released(
    system: System,
) -> None:
    first, second = offload(system.home, system.catalog)
    system.start_station()
    store_path = first["store_path"]
    wait_for(
        lambda: system.app.state.catalog.subject_events(store_path, "file.stored"),
        what="the recording known at the centre",
        timeout=20,
    )
    sup = login(system.url, "sup")
    page = sup.get(f"{system.url}/holds", timeout=10).text
    assert 'id="place-hold"' in page
    form = {
        "scope": "recording",
        "target": store_path,
        "reason": "complaint",
        "case_name": "李某投诉",
        "case_number": "2026-044",
    }
    r = sup.post(f"{system.url}/holds", data={"csrf": csrf_of(page), **form}, timeout=10)
    assert r.status_code == 200 and "placed=HC-" in r.url, (r.status_code, r.url)
    hold_id = r.url.split("placed=")[1]
    # the station applies the signed command: its recording is held, by the centre
    wait_for(lambda: holds.holds_on(system.catalog, first["id"]), what="the hold at the station")
    [held] = holds.holds_on(system.catalog, first["id"])
    assert (held["id"], held["origin"], held["placed_by"], held["case_number"]) == (
        hold_id,
        "centre",
        "centre: sup",
        "2026-044",
    )
    assert holds.holds_on(system.catalog, second["id"]) == []
    placed_cmd = held["command_id"]
    assert placed_cmd and _audited(system.catalog, "hold.placed", hold_id) == placed_cmd
    # ... which the centre sees back in the signed chain, and clears the retained command
    wait_for(lambda: system.centre_rows(hold_id)[0]["state"] == "held", what="confirmed")
    topic = commands.topic(STATION, "hold", hold_id)
    wait_for(lambda: _cleared(system, placed_cmd), what="the place command cleared")
    assert _retained(system.broker, topic) == []
    rows = sup.get(f"{system.url}/holds?format=json&case_number=2026-044", timeout=10).json()
    assert [(h["hold_id"], h["state"]) for h in rows["holds"]] == [(hold_id, "held")]
    html = sup.get(f"{system.url}/holds", timeout=10).text
    assert f'data-hold="{hold_id}"' in html and 'data-state="held"' in html
    # released at the dashboard: the station lifts it
    page = sup.get(f"{system.url}/holds", timeout=10).text
    r = sup.post(
        f"{system.url}/holds/{hold_id}/release",
        data={"csrf": csrf_of(page), "reason": "complaint withdrawn"},
        timeout=10,
    )
    assert r.status_code == 200 and r.url.endswith(f"released={hold_id}")
    wait_for(lambda: holds.holds_on(system.catalog, first["id"]) == [], what="released")
    lifted = holds.get(system.catalog, hold_id)
    assert (lifted["released_by"], lifted["release_reason"]) == (
        "centre: sup",
        "complaint withdrawn",
    )
    wait_for(lambda: system.centre_rows(hold_id)[0]["state"] == "released", what="confirmed")


@needs_mosquitto
@needs_openssl
def test_a_recorders_page_shows_the_holds_on_it(system: System) -> None:
    system.start_station()
    wait_for(lambda: system.app.state.catalog.station(STATION), what="the station known")
    sup = login(system.url, "sup")
    page = sup.get(f"{system.url}/holds", timeout=10).text
    form = {"scope": "device", "target": SERIAL, "reason": "major_case", "case_number": "K-9"}
    assert (
        sup.post(
            f"{system.url}/holds", data={"csrf": csrf_of(page), **form}, timeout=10
        ).status_code
        == 200
    )
    wait_for(lambda: holds.listing(system.catalog), what="the hold at the station")
    [held] = holds.listing(system.catalog)
    assert (held["scope"], held["device_serial"], held["origin"]) == ("device", SERIAL, "centre")
    recorder = sup.get(f"{system.url}/recorders/{SERIAL}?format=json", timeout=10).json()
    assert [h["hold_id"] for h in recorder["holds"]] == [held["id"]]
    assert f'data-hold="{held["id"]}"' in sup.get(f"{system.url}/recorders/{SERIAL}").text


def test_a_viewer_cannot_place_or_release_a_hold(tmp_path: Path, central_db: str) -> None:
    app = dashboard_app(tmp_path, database=central_db)
    catalog: CentralCatalog = app.state.catalog
    catalog.record_status(STATION, None, live=False, received_at="2026-01-01T00:00:00")
    [held] = hold_actions.place_hold(
        CentralContext(catalog), scope="officer", target="0107", reason="complaint", by="sup"
    )
    with serve_app(app) as url:
        view = login(url, "view")
        page = view.get(f"{url}/holds", timeout=10).text
        assert 'id="place-hold"' not in page and "release-hold" not in page
        form = {"csrf": csrf_of(page), "scope": "device", "target": SERIAL, "reason": "complaint"}
        assert view.post(f"{url}/holds", data=form, timeout=10).status_code == 403
        release = f"{url}/holds/{held['hold_id']}/release"
        forged = {"csrf": csrf_of(page), "reason": "forged"}
        assert view.post(release, data=forged, timeout=10).status_code == 403
        sup = login(url, "sup")
        assert sup.post(release, data={"reason": "no csrf"}, timeout=10).status_code == 403
        assert "release-hold" in sup.get(f"{url}/holds", timeout=10).text
    assert [h["state"] for h in centre_holds.listing(catalog.conn)] == ["sent"]
    assert len(centre_commands.listing(catalog.conn)) == 1, "only the place command"


@needs_mosquitto
@needs_openssl
@pytest.mark.parametrize("forger", ["station", "centre"])
def test_a_hold_command_the_centre_did_not_sign_never_acts(
    tmp_path: Path, home: Path, forger: str
) -> None:
    home_key(home)
    catalog = open_catalog(home, STATION)
    with Mosquitto(tmp_path / "broker") as broker:
        mqtt = broker.mqtt_config(STATION, centre_public_key=public_key_text(CENTRE_KEY))
        service = MqttService(Config(station_id=STATION, mqtt=mqtt), home)
        service.start()
        client = broker.client(STATION if forger == "station" else CENTRAL, "forger")
        try:
            assert connect(client, broker.port) == "connected"
            wait_for(service.link.is_connected, what="the station connected")
            topic = commands.topic(STATION, "hold", "HC-forged")
            doc = {
                "command_id": "evil-h",
                "kind": "hold",
                "station": STATION,
                "action": "place",
                "at": "2026-12-02T01:00:00+00:00",
                "by": "nobody",
                "hold_id": "HC-forged",
                "scope": "device",
                "device_serial": SERIAL,
                "reason": "complaint",
            }
            payload = commands.sign_command(Ed25519PrivateKey.generate(), topic, doc)
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
            wait_for(lambda: F.open_kinds(catalog) >= {SECURITY_KIND}, what="the security fault")
            assert holds.listing(catalog, released=True) == []
        finally:
            stop(client)
            service.stop()
            catalog.close()


def _audited(catalog: Catalog, kind: str, subject: str) -> str | None:
    """The command_id the station's ``kind`` entry about ``subject`` names."""
    import json

    row = catalog.conn.execute(
        "SELECT data FROM audit WHERE kind = ? AND subject = ?", (kind, subject)
    ).fetchone()
    return json.loads(row[0]).get("command_id") if row else None


def _cleared(system: System, command_id: str) -> bool:
    rows = centre_commands.listing(system.app.state.catalog.conn)
    return any(c["command_id"] == command_id and c["cleared_at"] for c in rows)


def _retained(broker: Mosquitto, topic: str) -> list[bytes]:
    """What a client connecting now receives retained on ``topic``."""
    sub = Subscriber(broker, topic, client_id="probe", identity=STATION)
    try:
        sub.client.publish(topic, b"marker", qos=1).wait_for_publish(10)
        wait_for(lambda: (b"marker", False) in sub.on(topic), what="the marker")
        return [p for p, retained in sub.on(topic) if retained]
    finally:
        sub.close()
