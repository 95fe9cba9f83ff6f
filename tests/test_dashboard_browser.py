"""The dashboard as a person sees it: Debian's chromium, driven by Playwright, against a real
recdock-central fed by a real Mosquitto (the shipped configuration, TLS, the ACL) and a
station that signs what it sends.

A fault the station raises appears on the open page within seconds (live updates, no
reload); a station killed with SIGKILL shows offline (its Last Will); a viewer has no fault
buttons and a forged POST from their page is refused; the pages pass an axe-core scan with no
serious or critical violation; screenshots of the overview, a recorder and a fault, in
Chinese and English, are kept as test artefacts (``$RECDOCK_ARTEFACTS``, else
``<pytest basetemp>/artefacts``) and, with ``RECDOCK_DOCS_SCREENSHOTS=1``, written to
docs/dashboard/ by the same code.

Playwright never downloads a browser here: ``executable_path`` is Debian's chromium; axe-core
is the pinned npm tarball scripts/setup unpacks (``AXE``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.catalog import holds
from sync.wire import commands
from tests.central_server import serve_app
from tests.dashboard_tools import (
    PASSWORDS,
    SERIAL,
    STATION,
    dashboard_app,
    dock,
    pending,
    raise_fault,
    station_catalog,
    status,
)
from tests.mosquitto import MOSQUITTO, Mosquitto, Subscriber
from tests.recorders import wait_for
from tests.signing_keys import new_key, register

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE_VERSION = "4.10.3"  # scripts/setup unpacks this version's axe.min.js here
AXE = Path(os.environ.get("RECDOCK_AXE", ROOT / ".venv" / f"axe-core-{AXE_VERSION}.min.js"))
KEY = new_key()
CENTRE_KEY = new_key()  # the centre's: signs its commands to stations
SECONDS = 15_000  # what "within seconds" allows, in Playwright's milliseconds

pytestmark = [
    pytest.mark.skipif(
        (CHROMIUM is None or MOSQUITTO is None) and not os.environ.get("CI"),
        reason="Debian's chromium or mosquitto is not installed (scripts/setup installs them)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # root (CI) cannot use chromium's sandbox; the pages are our own
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class System:
    """Mosquitto, recdock-central with its dashboard, and station ST-A's signed messages."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.broker = Mosquitto(tmp_path / "broker")
        self.station = station_catalog(tmp_path / "station")
        self.sender = self.broker.client(STATION, "st-a-test")
        self.url = ""

    def send(self, messages: list[tuple[str, bytes, bool]]) -> None:
        for topic, payload, retain in messages:
            self.sender.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def send_queued(self) -> None:
        self.send(pending(self.station, KEY))


@pytest.fixture
def system(tmp_path: Path, central_db: str) -> Iterator[System]:
    s = System(tmp_path)
    with s.broker:
        app = dashboard_app(
            tmp_path,
            database=central_db,
            poll_seconds=1,
            mqtt=s.broker.consumer_settings(),
            station_keys=register({STATION: KEY}),
            signing_key=CENTRE_KEY,
        )
        with serve_app(app) as url:
            s.url = url
            assert app.state.consumer.wait_subscribed(10)
            s.sender.connect("127.0.0.1", s.broker.port)
            s.sender.loop_start()
            try:
                yield s
            finally:
                s.sender.disconnect()
                s.sender.loop_stop()
                s.station.close()


def logged_in(browser, system: System, user: str, **context: object):  # -> Page
    page = browser.new_context(**context).new_page()
    page.goto(f"{system.url}/login")
    page.fill("#user", user)
    page.fill("#password", PASSWORDS[user])
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{system.url}/")
    return page


def test_a_fault_a_station_raises_shows_on_the_open_page_within_seconds(browser, system) -> None:
    system.send([status(KEY, "online")])
    page = logged_in(browser, system, "view")
    assert page.locator("tr.fault").count() == 0
    fault_id = raise_fault(system.station)
    system.send_queued()
    row = page.locator(f'tr.fault[data-fault="{fault_id}"]')
    row.wait_for(timeout=SECONDS)  # the page updated itself: no reload
    assert SERIAL in row.inner_text()
    assert row.locator('[data-level="open"] .shape').inner_text() == "●"


STATION_PROCESS = """
import ssl, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, ca, cert, key, topic, online, will = sys.argv[1:]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="st-a-killed")
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
c.will_set(topic, bytes.fromhex(will), qos=1, retain=True)
c.connect("127.0.0.1", int(port), keepalive=30)
c.loop_start()
c.publish(topic, bytes.fromhex(online), qos=1, retain=True).wait_for_publish(10)
print("up", flush=True)
time.sleep(600)
"""


def test_a_killed_station_shows_offline(browser, system, tmp_path: Path) -> None:
    tls = system.broker.tls(STATION)
    topic, online, _ = status(KEY, "online")
    _, will, _ = status(KEY, "offline")
    proc = subprocess.Popen(
        [sys.executable, "-c", STATION_PROCESS, str(system.broker.port), str(tls.ca_file)]
        + [str(tls.cert_file), str(tls.key_file), topic, online.hex(), will.hex()],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        page = logged_in(browser, system, "view")
        page.goto(f"{system.url}/stations")
        cell = page.locator(f'tr.station[data-station="{STATION}"] td[data-status]')
        cell.and_(page.locator('[data-status="online"]')).wait_for(timeout=SECONDS)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        cell.and_(page.locator('[data-status="offline"]')).wait_for(timeout=SECONDS)
        row = page.locator(f'tr.station[data-station="{STATION}"]').inner_text()
        assert "离线" in row and "✖" in row, "offline in words, unhealthy with its shape"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_viewer_has_no_fault_buttons_and_a_forged_post_is_refused(browser, system) -> None:
    fault_id = raise_fault(system.station)
    system.send_queued()
    page = logged_in(browser, system, "view")
    fault_url = f"{system.url}/faults/{STATION}/{fault_id}"
    page.goto(fault_url)
    page.locator("[data-state]").wait_for(timeout=SECONDS)
    assert page.locator("#acknowledge").count() == 0 and page.locator("#resolve").count() == 0
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    for action in ("acknowledge", "resolve"):
        r = page.request.post(f"{fault_url}/{action}", form={"csrf": token, "note": "forged"})
        assert r.status == 403, action
    sup = logged_in(browser, system, "sup")
    sup.goto(fault_url)
    assert sup.locator("#acknowledge").count() == 1, "a supervisor has the button"


def test_a_supervisor_acknowledges_on_the_page_and_the_station_gets_the_signed_command(
    browser, system
) -> None:
    fault_id = raise_fault(system.station)
    topic = commands.topic(STATION, "fault", fault_id)
    inbox = Subscriber(system.broker, topic, client_id="st-a-inbox", identity=STATION)
    try:
        system.send_queued()
        page = logged_in(browser, system, "sup")
        page.goto(f"{system.url}/faults/{STATION}/{fault_id}?lang=en")
        page.locator('[data-state="reported"]').wait_for(timeout=SECONDS)
        page.click("#acknowledge")
        state = page.locator('[data-state="acknowledged"]')
        state.wait_for(timeout=SECONDS)
        assert "sup" in state.inner_text(), "who acknowledged it is shown"

        def signed(action: str) -> dict | None:
            for payload, _retained in inbox.on(topic):
                if payload:
                    doc = commands.verify_command(CENTRE_KEY.public_key(), topic, payload)
                    if doc["action"] == action:
                        return doc
            return None

        acked = wait_for(lambda: signed("acknowledge"), 15, "the acknowledge command")
        assert (acked["by"], acked["fault_id"]) == ("sup", fault_id)
        page.fill("#note", "battery replaced")
        page.click("#resolve")
        page.locator('[data-state="resolved"]').wait_for(timeout=SECONDS)
        resolved = wait_for(lambda: signed("resolve"), 15, "the resolve command")
        assert (resolved["by"], resolved["note"]) == ("sup", "battery replaced")
    finally:
        inbox.close()


def _artefacts(request) -> Path:  # noqa: ANN001
    base = os.environ.get("RECDOCK_ARTEFACTS")
    folder = Path(base) if base else request.config._tmp_path_factory.getbasetemp() / "artefacts"
    folder = folder / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fill(system: System) -> str:
    """A station with three recorders (one docked three times with a falling battery) and an
    open fault: what the screenshots show."""
    system.send([status(KEY, "online")])
    for days, pct, drift in ((2, 96.0, 0.4), (1, 81.0, 1.1), (0, 42.0, 2.9)):
        dock(system.station, SERIAL, battery=pct, offset=drift, days_ago=days)
    dock(system.station, "SIM0007", battery=88.0, offset=0.2)
    dock(system.station, "SIM0013", battery=91.0, offset=-0.5, days_ago=2)
    fault_id = raise_fault(system.station)
    holds.place(
        system.station,
        {
            "scope": "device",
            "device_serial": SERIAL,
            "reason": "complaint",
            "case_name": "张某投诉",
            "case_number": "2026-017",
            "placed_by": "王警官",
        },
    )
    system.send_queued()
    wait_for(lambda: len(system_faults(system)) == 1, 10, "the fault at the centre")
    return fault_id


def system_faults(system: System) -> list[dict]:
    from tests.dashboard_tools import login

    return login(system.url, "view").get(f"{system.url}/?format=json", timeout=10).json()["faults"]


SERIOUS = ("serious", "critical")


@pytest.mark.skipif(not AXE.is_file() and not os.environ.get("CI"), reason=f"{AXE} missing")
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_pages_pass_axe_and_their_screenshots_are_kept(browser, system, lang, request) -> None:
    fault_id = _fill(system)
    page = logged_in(
        browser, system, "sup", bypass_csp=True, viewport={"width": 1280, "height": 800}
    )
    folder = _artefacts(request)
    docs = os.environ.get("RECDOCK_DOCS_SCREENSHOTS") == "1"
    pages = {
        "overview": "/",
        "recorder": f"/recorders/{SERIAL}",
        "fault": f"/faults/{STATION}/{fault_id}",
        "holds": "/holds",
        "access": "/access",
        "access-log": "/access/log",
        "report": "/report",
    }
    found = {}
    for name, path in pages.items():
        page.goto(f"{system.url}{path}?lang={lang}")
        page.locator("main h1").wait_for()
        shot = folder / f"{name}-{lang}.png"
        page.screenshot(path=shot, full_page=True)
        if docs:
            shutil.copyfile(shot, ROOT / "docs" / "dashboard" / shot.name)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => await axe.run(document)")
        found[name] = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"]
            if v["impact"] in SERIOUS
        ]
    assert found == {name: [] for name in pages}
    assert all((folder / f"{n}-{lang}.png").stat().st_size > 10_000 for n in pages)


def test_on_a_phone_no_page_is_wider_than_the_screen(browser, system, request) -> None:
    """Readable on a phone: the page itself never scrolls sideways (wide tables scroll in
    their own box); the overview's screenshot is kept."""
    fault_id = _fill(system)
    phone = {"width": 390, "height": 844}
    page = logged_in(browser, system, "sup", viewport=phone, device_scale_factor=2)
    for path in (
        "/",
        "/stations",
        "/recorders",
        f"/recorders/{SERIAL}",
        f"/faults/{STATION}/{fault_id}",
        "/holds",
        "/access",
        "/access/log",
        "/report",
    ):
        page.goto(f"{system.url}{path}")
        page.locator("main h1").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= phone["width"], f"{path} is {width} px wide on a {phone['width']} px phone"
    page.goto(f"{system.url}/")
    shot = _artefacts(request) / "overview-phone-zh-CN.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("RECDOCK_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "dashboard" / shot.name)
