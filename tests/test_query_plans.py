"""Every query the daemon, the uploader and the publisher run per docking or per pass searches
an index: none slows down as the catalog grows over the years (issue 11).

The queries are not listed by hand: a real docking at an in-process station (the simulated
dock, mock GPIO pins, a folder recorder), an upload pass to a real central store over HTTP,
a publisher pass through the in-memory MQTT link and `recdock status` run with every catalog
connection traced, and each statement they ran is put through EXPLAIN QUERY PLAN against the
migrated catalog. A plan fails when it scans a table that grows with the station's history
(unless through a partial index, which holds only what is pending), or searches it only by a
column shared by a device's whole history (``device_serial``, ``kind``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.catalog import Catalog, open_catalog
from agent.config import load_config
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import apply_firmware
from agent.seams.clock import make_clock
from agent.seams.dock.simulated import SimulatedDock, send_request
from agent.seams.indicators.devices import Indicators
from agent.seams.mount import Mounter
from agent.station.daemon import Station
from agent.station.retention import purge
from agent.station.status import snapshot
from agent.store import Store
from central.app import create_app
from sync.mqtt.publisher import OutboxPublisher
from sync.upload import ledger
from sync.upload.worker import UploadWorker
from tests.central_server import TOKEN_A, TOKENS, serve_app
from tests.memory_link import MemoryLink
from tests.recorders import make_folder_recorder, wait_for
from tests.signing_keys import new_key

STATION = "ST-A"  # the station TOKEN_A belongs to at the central store
CONFIG = """
station_id = "ST-A"
[store]
reserve_bytes = 0
buffer_bytes = 65536
[checks]
shift_hours = 0.01
approved_firmware = ["2.1.0", "2.2.0"]
[indicators.bays.1]
led = 17
[upload]
enabled = true
endpoint = "{endpoint}/files/"
insecure_lab = true
token = "{token}"
retries = 1
"""
#: Tables whose rows pile up over a station's life.
GROWING = {"recordings", "audit", "outbox", "sessions", "checks", "faults"}
#: Columns every row of a device's (or a kind's) whole history shares: a search by them alone
#: grows with that history.
UNSELECTIVE = {"device_serial", "kind", "officer_id", "unit", "station_id", "profile", "state"}
PLAN = re.compile(
    r"^(?P<how>SCAN|SEARCH) (?P<table>\w+)"
    r"(?: USING (?:COVERING )?INDEX (?P<index>\w+))?(?: \((?P<terms>[^)]*)\))?"
)
NOT_QUERIES = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE")


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement any Catalog connection runs from now on (all threads)."""
    statements: list[str] = []
    real_init = Catalog.__init__

    def init(self: Catalog, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        self.conn.set_trace_callback(statements.append)

    monkeypatch.setattr(Catalog, "__init__", init)
    return statements


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    with serve_app(create_app(tmp_path / "central", TOKENS)) as url:
        yield url


def partial_indexes(conn: sqlite3.Connection) -> set[str]:
    return {
        name
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        if sql and " WHERE " in sql.upper()
    }


def offences(conn: sqlite3.Connection, statement: str, partial: set[str]) -> list[str]:
    """What in the statement's plan grows with the catalog (empty: it is fine).

    A search by unselective columns alone grows with a device's history, unless the index
    also gives the statement's order and the statement has a LIMIT: then no temporary B-tree
    sorts the history, and the search stops after LIMIT rows (``... WHERE device_serial = ?
    ORDER BY at DESC LIMIT 2`` on an index of (device_serial, at))."""
    found = []
    details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
    bounded = bool(re.search(r"\bLIMIT\b", statement, re.IGNORECASE)) and not any(
        "TEMP B-TREE" in d for d in details
    )
    for detail in details:
        m = PLAN.match(detail)
        if m is None or m["table"] not in GROWING:
            continue
        if m["how"] == "SCAN" and m["index"] not in partial:
            found.append(detail)
        terms = {
            t.split("=")[0].split(">")[0].split("<")[0] for t in (m["terms"] or "").split(" AND ")
        }
        unselective = terms and terms <= UNSELECTIVE
        if m["how"] == "SEARCH" and m["index"] not in partial and unselective and not bounded:
            found.append(detail)
    return found


def check_plans(home: Path, statements: list[str]) -> dict[str, list[str]]:
    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    try:
        partial = partial_indexes(conn)
        bad = {}
        for statement in dict.fromkeys(s.strip() for s in statements):
            if statement.upper().startswith(NOT_QUERIES):
                continue
            if found := offences(conn, statement, partial):
                bad[statement] = found
        return bad
    finally:
        conn.close()


# -- what runs per docking, per upload pass, per publisher pass ---------------------------------


def dock_once(home: Path, config_path: Path, recorder: Path) -> None:
    """One docking at an in-process station, to its verdict and the unplug after it."""
    config = load_config(config_path)
    station = Station(
        config,
        home,
        dock=SimulatedDock(home, {1}),
        indicators=Indicators(config.indicators, MockFactory()),
        clock=make_clock("simulated", synchronised=True),
        profiles=ProfileSet.load(config.profiles.dirs),
        mounter=Mounter(home / "run" / "mnt"),
        simulate=True,
        apply_firmware=apply_firmware,
    )
    runner = threading.Thread(target=station.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: (home / "run" / "dock.sock").exists(), 30, "the dock to listen")
        send_request(home, {"op": "plug", "bay": 1, "source": str(recorder)})
        wait_for(lambda: bay_state(home) in ("ready", "not_ready"), 60, "a verdict")
        send_request(home, {"op": "unplug", "bay": 1})
        wait_for(lambda: bay_state(home) == "idle", 30, "the bay to go idle")
    finally:
        station.request_stop()
        runner.join(60)
    assert not runner.is_alive()


def bay_state(home: Path) -> str | None:
    catalog = open_catalog(home, STATION, create=False)
    try:
        rows = catalog.query("SELECT state FROM bays WHERE bay = 1")
        return rows[0]["state"] if rows else None
    finally:
        catalog.close()


def upload_pass(home: Path, config_path: Path) -> dict[str, object]:
    worker = UploadWorker(load_config(config_path), home, stop=threading.Event())
    try:
        return worker.run_once()
    finally:
        worker.close()


def publisher_pass(home: Path) -> None:
    link = MemoryLink()
    publisher = OutboxPublisher(
        home / "catalog.db", STATION, link, idle_poll_s=0.05, signing_key=new_key()
    )
    link.connect()
    publisher.start()
    try:
        assert publisher.wait_drained(30), "the outbox did not drain"
    finally:
        publisher.stop()
    assert publisher.error is None


def purge_passes(home: Path, config_path: Path) -> None:
    """The daemon's purge pass: one that finds nothing yet, one under disk pressure (a
    threshold the oldest file reaches), and one at +200 days that purges the rest the centre
    confirmed."""
    config = load_config(config_path)
    catalog = open_catalog(home, STATION)
    store = Store(home / "store", reserve_bytes=0)
    try:
        assert purge(catalog, store, config, now=datetime.now(UTC), by="t").purged == []
        # far above what is free, so other tests freeing space meanwhile (the suite runs in
        # several processes) cannot lift the pressure before the pass looks
        low = store.free_bytes() + 2**40
        pressed = config.model_copy(
            update={"retention": config.retention.model_copy(update={"low_disk_free_bytes": low})}
        )
        first = purge(catalog, store, pressed, now=datetime.now(UTC), by="t").purged
        assert len(first) >= 1
        later = datetime.now(UTC) + timedelta(days=200)
        assert len(first) + len(purge(catalog, store, config, now=later, by="t").purged) == 6
    finally:
        catalog.close()


@pytest.fixture
def station_home(tmp_path: Path, central: str) -> tuple[Path, Path]:
    """A home after one docking (an earlier one too, so the recorder has a history)."""
    home = tmp_path / "home"
    config = tmp_path / "recdock.toml"
    config.write_text(CONFIG.format(endpoint=central, token=TOKEN_A))
    for n in range(2):
        rec = make_folder_recorder(tmp_path / f"rec{n}", "PLAN01", files=2, size=64 * 1024)
        dock_once(home, config, rec)
    return home, config


def test_a_docking_an_upload_pass_and_a_publisher_pass_search_indexes_only(
    station_home: tuple[Path, Path], traced: list[str]
) -> None:
    home, config = station_home
    rec = make_folder_recorder(home.parent / "rec-traced", "PLAN01", files=2, size=64 * 1024)
    dock_once(home, config, rec)
    docking = len(traced)
    summary = upload_pass(home, config)
    assert summary["synced"] == 6, summary  # the pass did upload the three dockings' files
    upload_pass(home, config)  # and a pass with nothing to do
    catalog = open_catalog(home, STATION)
    store_path = catalog.query("SELECT store_path FROM recordings WHERE id = 1")[0]["store_path"]
    ledger.rejections_since_resolved(catalog, store_path)  # a rejection's count
    snapshot(catalog, load_config(config), home)  # `recdock status`
    catalog.close()
    purge_passes(home, config)
    publisher_pass(home)
    assert docking > 50 and len(traced) > docking + 20, "the tracing must have seen the work"
    assert check_plans(home, traced) == {}


def test_the_plan_check_catches_a_scan_and_a_search_by_device_alone(tmp_path: Path) -> None:
    open_catalog(tmp_path / "home", STATION).close()
    statements = [
        "SELECT * FROM outbox WHERE topic = 'x'",
        "SELECT * FROM recordings WHERE device_serial = 'S' AND removal_intent_at IS NULL",
        "SELECT * FROM checks WHERE device_serial = 'S' ORDER BY ready LIMIT 2",  # sorts it all
        "SELECT * FROM recordings WHERE store_path = 'a/b'",
        "SELECT n FROM outbox_size",
        # the index gives the order: at most LIMIT rows are read, whatever the history
        "SELECT id FROM checks WHERE device_serial = 'S' ORDER BY at DESC, id DESC LIMIT 2",
    ]
    bad = check_plans(tmp_path / "home", statements)
    assert sorted(bad) == sorted(statements[:3]), bad
