"""The central store's reachability (issue 12, docs/faults.md): the uploader keeps each contact
in ``<home>/run/centre-link.json`` (sync/upload/centrelink.py) and probes an idle centre; the
``station.centre`` rule (agent/station/health.py) reads it; `recdock status` shows both links.
Real parts: ``recdock-central`` as a process, stopped and started again on its port; sockets
that refuse, never answer, or answer in plain HTTP where TLS is expected; a name that does not
resolve. The rule's clock is moved by the test (never slept on)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.catalog import Catalog
from agent.catalog.faults import get_fault, list_faults
from agent.config import Config
from agent.config.faults import FaultsConfig
from agent.config.links import UploadConfig
from agent.seams.clock.simulated import SimulatedClock
from agent.seams.health.simulated import SimulatedSensors
from agent.station.health import StationHealth
from agent.station.linkstate import CENTRE_LINK, LinkState, read_link_state
from sync.mqtt.linkstate import LinkStateFile
from sync.upload.centrelink import CentreLink, without_credentials
from sync.upload.worker import UploadWorker
from tests.central_server import TOKEN_A, free_port, live_central, wait_for
from tests.recorders import recdock
from tests.test_upload_worker import offload

STATION = "ST-1"


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    c = Catalog(home / "catalog.db", station_id=STATION)
    yield c
    c.close()


def centre(home: Path) -> LinkState | None:
    return read_link_state(home, CENTRE_LINK)


def upload(endpoint: str, **kw: object) -> UploadConfig:
    kw = {"token": TOKEN_A, "insecure_lab": True, "timeout_s": 2.0, "retries": 0, **kw}
    return UploadConfig(enabled=True, endpoint=endpoint, **kw)  # type: ignore[arg-type]


@contextmanager
def running(worker: UploadWorker) -> Iterator[UploadWorker]:
    """The worker's loop in its thread, as sync/services.py runs it; stopped at the end."""
    thread = threading.Thread(target=worker.run_forever, name="uploader")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        worker.wake()
        thread.join(30)
        worker.close()
        assert not thread.is_alive()


def test_a_centre_unreachable_too_long_opens_a_fault_that_clears_after_it_answers_again(
    home: Path, catalog: Catalog, tmp_path: Path
) -> None:
    port = free_port()
    data = tmp_path / "central" / "data"
    tokens = {TOKEN_A: STATION}
    config = Config(
        station_id=STATION,
        upload=upload(f"http://probe:secret@127.0.0.1:{port}/files/", probe_every_minutes=0.005),
        faults=FaultsConfig(centre_unreachable_hours=1, clear_after_minutes=60),
    )
    shown = f"http://127.0.0.1:{port}/files/"
    station = StationHealth(config, home, SimulatedSensors(), SimulatedClock(True))
    worker = UploadWorker(config, home, stop=threading.Event(), idle_s=0.1)
    with running(worker):
        with live_central(data, tokens=tokens, port=port):
            wait_for(lambda: (s := centre(home)) and s.connected, 30)
            assert centre(home).peer == shown  # never the credentials
            station.check(catalog, datetime.fromisoformat(centre(home).since) + timedelta(hours=3))
            assert "station.centre" not in kinds(catalog)  # answering: however long

        wait_for(lambda: not centre(home).connected, 30)  # stopped: the idle probe notices
        down = centre(home)
        assert down.failure == "refused" and "refused" in down.last_error
        assert "secret" not in (home / "run" / CENTRE_LINK).read_text()
        since = datetime.fromisoformat(down.since)
        station.check(catalog, since + timedelta(minutes=59))
        assert "station.centre" not in kinds(catalog)
        station.check(catalog, since + timedelta(minutes=61))
        fault = kinds(catalog)["station.centre"]
        ev = fault.evidence
        assert ev["unreachable_since"] == down.since and ev["endpoint"] == shown
        assert ev["failure"] == "refused" and "refused" in ev["last_error"]
        assert ev["limit_hours"] == 1 and ev["last_reachable_at"] and fault.severity == "error"
        assert shown in fault.detail and "secret" not in json.dumps(ev) + fault.detail

        # a restart while it is still away keeps the time it went away
        again = CentreLink(home, config.upload)
        assert not again.probe() and centre(home).since == down.since

        with live_central(data, tokens=tokens, port=port):
            wait_for(lambda: centre(home).connected, 30)
            up = datetime.fromisoformat(centre(home).since)
            station.check(catalog, up + timedelta(minutes=1))  # answering: the hold starts
            assert get_fault(catalog, fault.id).state != "resolved"
            station.check(catalog, up + timedelta(minutes=62))
            assert get_fault(catalog, fault.id).state == "resolved"


def kinds(catalog: Catalog) -> dict[str, object]:
    return {f.kind: f for f in list_faults(catalog)}


def fresher(home: Path, than: LinkState) -> LinkState | None:
    state = centre(home)
    return state if state is not None and state.checked_at > than.checked_at else None


def test_the_idle_probe_keeps_the_file_fresh_and_status_shows_both_links(
    home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "central" / "data"
    config = Config(station_id=STATION)
    with live_central(data, tokens={TOKEN_A: STATION}) as url:
        up = upload(f"{url}/files/", probe_every_minutes=0.005)
        worker = UploadWorker(config, home, stop=threading.Event(), upload=up, idle_s=30)
        with running(worker):
            first = wait_for(lambda: centre(home), 30)
            # idle_s is 30 s: only the probe, every 0.3 s, can write it again meanwhile
            later = wait_for(lambda: fresher(home, first), 10)
            assert later.connected and later.since == first.since
            assert later.last_connected_at == later.checked_at

            # the MQTT service's own writer, its broker away since it started
            LinkStateFile(home, "broker.example:8883", lambda: "connection refused").started()
            done = recdock("status", "--json", home=home)
            assert done.returncode == 0, done.stderr
            links = json.loads(done.stdout)["links"]
            assert links["centre"]["connected"] and links["centre"]["peer"] == f"{url}/files/"
            assert links["centre"]["since"] == first.since and links["centre"]["current"]
            assert links["broker"]["connected"] is False
            assert links["broker"]["peer"] == "broker.example:8883"
            text = recdock("status", home=home).stdout
            assert f"central store {url}/files/: reachable since {first.since}" in text
            assert "broker broker.example:8883: UNREACHABLE since" in text
            assert "(connection refused)" in text


def test_a_centre_answering_4xx_is_reachable(home: Path, tmp_path: Path) -> None:
    """Any HTTP answer says the centre is there: a token it refuses (401, through the tus
    client's own requests) and a path it does not serve (404, the probe)."""
    offload(home, tmp_path, files=1)  # a recording to send
    config = Config(station_id=STATION)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    with refused:
        port = refused.getsockname()[1]
        down = UploadWorker(
            config, home, stop=threading.Event(), upload=upload(f"http://127.0.0.1:{port}/files/")
        )
        assert down.run_once()["error"]
        down.close()
    assert centre(home).connected is False and centre(home).failure == "refused"

    with live_central(
        tmp_path / "central" / "data", tokens={"another-token-0123456789": STATION}
    ) as url:
        worker = UploadWorker(config, home, stop=threading.Event(), upload=upload(f"{url}/files/"))
        summary = worker.run_once()
        worker.close()
        assert "refused the station token" in summary["error"]  # 401
        state = centre(home)
        assert state.connected and state.failure is None

        (home / "run" / CENTRE_LINK).unlink()
        assert CentreLink(home, upload(f"{url}/nowhere/")).probe()  # 404 is an answer
        assert centre(home).connected


def silent_listener() -> socket.socket:
    """Accepts connections (the kernel's backlog) and never answers: a hung centre."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


@pytest.mark.parametrize("kind", ["refused", "timeout", "tls", "dns"])
def test_each_kind_of_unreachable_is_named(home: Path, tmp_path: Path, kind: str) -> None:
    with socket.socket() as refused, silent_listener() as silent:
        refused.bind(("127.0.0.1", 0))
        endpoints = {
            "refused": f"http://127.0.0.1:{refused.getsockname()[1]}/files/",
            "timeout": f"http://127.0.0.1:{silent.getsockname()[1]}/files/",
            "dns": "https://centre.recdock.invalid/files/",
        }
        if kind == "tls":
            with live_central(tmp_path / "central" / "data") as url:  # plain HTTP there
                link = CentreLink(home, upload(url.replace("http:", "https:") + "/files/"))
                assert not link.probe()
        else:
            link = CentreLink(home, upload(endpoints[kind], timeout_s=0.5))
            assert not link.probe()
    state = centre(home)
    assert not state.connected and state.failure == kind
    assert state.last_error.startswith(f"{kind}: ") and state.peer == without_credentials(
        link.endpoint
    )


def test_without_a_centre_there_is_no_probe_no_file_and_no_rule(
    home: Path, catalog: Catalog
) -> None:
    from sync.services import configured_services

    config = Config(station_id=STATION)  # the embedded default: no [upload]
    assert not config.upload.enabled and configured_services(config, home) == []
    assert UploadWorker(config, home, stop=threading.Event()).link is None
    # a file left from when uploads were on says nothing once they are off
    (home / "run").mkdir(parents=True, exist_ok=True)
    old = LinkState(False, "2020-01-01T00:00:00+00:00", "https://c.example/files/")
    (home / "run" / CENTRE_LINK).write_text(json.dumps(old.__dict__))
    StationHealth(config, home, SimulatedSensors(), SimulatedClock(True)).check(catalog)
    assert "station.centre" not in kinds(catalog)
