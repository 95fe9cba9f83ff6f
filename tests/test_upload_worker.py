"""The upload worker against a real central store over HTTP on 127.0.0.1, with store files
made by a real offload of a folder recorder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import uvicorn

from agent.catalog import Catalog, audit, holds, open_catalog, outbox, recordings
from agent.catalog.faults import fault_id, list_faults, resolve_fault
from agent.config import SHIPPED_PROFILES, Config, StoreConfig
from agent.config.links import UploadConfig
from agent.errors import EXIT_CONFIG, EXIT_UNAVAILABLE
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from central.app import create_app
from central.catalog import uploads
from sync.upload.tus import TusUploader
from sync.upload.worker import FAULT_UPLOAD, UploadWorker
from tests.central_server import TOKEN_A, TOKENS, FaultProxy, serve_app, wait_for
from tests.recorders import BIN, make_folder_recorder, recdock
from tests.signal_tools import deadlock_alarm, signal_inside

STATION = "ST-A"  # the station TOKEN_A belongs to at the central store
KiB = 1024
MiB = 1024 * KiB
CHUNK = 64 * KiB


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "central"
    with serve_app(create_app(data, TOKENS)) as url:
        yield url, data


def offload(home: Path, tmp_path: Path, *, files: int = 3, size: int = 300_000) -> Catalog:
    """A real offload of a folder recorder into ``home``; returns the (open) catalog."""
    config = station_config()
    rec = make_folder_recorder(tmp_path / "rec", serial="SIM0042", files=files, size=size)
    catalog = open_catalog(home, STATION)
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    report = Offloader(config, home, catalog, keep_source=True).run(rec, profile)
    assert report.ok, report.failures
    assert len(recordings.listing(catalog)) == files
    return catalog


def station_config() -> Config:
    return Config(station_id=STATION, store=StoreConfig(reserve_bytes=0))


def upload_config(endpoint: str, **kw) -> UploadConfig:
    kw.setdefault("retries", 1)
    kw.setdefault("chunk_bytes", CHUNK)
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("insecure_lab", True)  # the test centre is plain http:// on loopback
    return UploadConfig(enabled=True, endpoint=endpoint, token=TOKEN_A, **kw)


def worker(home: Path, endpoint: str, *, stop: threading.Event | None = None, **kw) -> UploadWorker:
    upload_kw = {k: kw.pop(k) for k in list(kw) if k in UploadConfig.model_fields}
    return UploadWorker(
        station_config(),
        home,
        stop=stop or threading.Event(),
        upload=upload_config(endpoint, **upload_kw),
        backoff=0.01,
        **kw,
    )


def object_path(data: Path, sha: str) -> Path:
    return data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def subjects_of(catalog: Catalog, kind: str) -> list[str]:
    return [e.subject for e in audit.entries(catalog) if e.kind == kind]


def outbox_kinds(catalog: Catalog) -> list[tuple[str, str]]:
    rows = outbox.pending(catalog.conn, limit=1_000_000)
    events = [json.loads(m.payload) for m in rows]
    return [(e["kind"], e["subject"]) for e in events if "kind" in e and "subject" in e]


def central_receipts(data: Path) -> list[dict]:
    db = sqlite3.connect(data / "receipts.sqlite")
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM receipts ORDER BY received_at")]
    finally:
        db.close()


def by_path(catalog: Catalog) -> dict[str, dict]:
    return {r["store_path"]: r for r in recordings.listing(catalog)}


# --------------------------------------------------------------------------------------------


def test_an_offloaded_session_uploads_completely(central, home, tmp_path):
    url, data = central
    catalog = offload(home, tmp_path, files=3)
    summary = worker(home, f"{url}/files/").run_once()
    assert summary["synced"] == 3 and summary["remaining"] == 0 and summary["error"] is None
    rows = recordings.listing(catalog)
    for row in rows:
        assert row["synced_at"] is not None
        receipt = json.loads(row["receipt"])
        assert receipt["verified"] is True
        assert receipt["sha256"] == row["sha256"] and receipt["size"] == row["size"]
        assert receipt["object_id"] == f"sha256:{row['sha256']}"
        stored = object_path(data, row["sha256"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == row["sha256"]
        # the metadata that travelled with the file
        meta = receipt["metadata"]
        assert meta["station"] == STATION and meta["device_serial"] == "SIM0042"
        assert meta["session_id"] == row["session_id"]
        assert meta["source_path"] == row["source_path"]
        assert meta["recorded_start"] == row["recorded_start"]
    synced = subjects_of(catalog, "file.synced")
    assert sorted(synced) == sorted(r["store_path"] for r in rows)
    assert [k for k in outbox_kinds(catalog) if k[0] == "file.synced"] == [
        ("file.synced", s) for s in synced
    ]
    assert audit.check_chain(catalog) == []
    # a second pass has nothing to do and sends nothing
    again = worker(home, f"{url}/files/").run_once()
    assert again["candidates"] == 0 and again["bytes_sent"] == 0


def test_held_then_late_recordings_go_first(central, home, tmp_path):
    url, data = central
    catalog = offload(home, tmp_path, files=4, size=100_000)
    rows = recordings.listing(catalog)  # in offload order
    held, late = rows[3], rows[2]
    holds.place(
        catalog,
        {
            "scope": "recording",
            "recording_id": held["id"],
            "reason": "complaint",
            "placed_at": "2026-01-03T00:00:00+00:00",
        },
    )
    with catalog.tx() as conn:
        conn.execute("UPDATE recordings SET late = 1 WHERE id = ?", (late["id"],))
    summary = worker(home, f"{url}/files/").run_once()
    assert summary["synced"] == 4
    expected = [held, late, rows[0], rows[1]]
    assert subjects_of(catalog, "file.synced") == [r["store_path"] for r in expected]
    assert [r["sha256"] for r in central_receipts(data)] == [r["sha256"] for r in expected]


def test_an_interrupted_upload_resumes_from_the_server_offset(central, home, tmp_path):
    url, data = central
    size = 2 * MiB
    catalog = offload(home, tmp_path, files=1, size=size)
    stop = threading.Event()
    stopped_at: list[int] = []

    def hook(_store_path: str, offset: int, _size: int) -> None:
        if offset >= size // 2 and not stop.is_set():
            stopped_at.append(offset)
            stop.set()

    first = worker(home, f"{url}/files/", stop=stop, on_progress=hook).run_once()
    assert first["stopped"] and first["files"][0]["status"] == "stopped"
    row = recordings.listing(catalog)[0]
    assert row["synced_at"] is None and row["upload_url"]
    saved_url = row["upload_url"]
    head = requests.head(
        saved_url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKEN_A}"}
    )
    assert int(head.headers["Upload-Offset"]) == stopped_at[0]
    assert first["bytes_sent"] == stopped_at[0]

    second = worker(home, f"{url}/files/").run_once()
    assert second["synced"] == 1
    assert second["bytes_sent"] == size - stopped_at[0] < size
    row = recordings.listing(catalog)[0]
    assert json.loads(row["receipt"])["upload_url"] == saved_url  # the same upload, resumed
    assert len(central_receipts(data)) == 1
    assert (
        hashlib.sha256(object_path(data, row["sha256"]).read_bytes()).hexdigest() == row["sha256"]
    )


def test_bit_rot_in_the_store_is_rejected_and_never_synced(central, home, tmp_path):
    url, data = central
    catalog = offload(home, tmp_path, files=2)
    rotten = recordings.listing(catalog)[0]
    path = home / "store" / rotten["store_path"]
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(1234)
        byte = f.read(1)
        f.seek(1234)
        f.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, 0o444)

    summary = worker(home, f"{url}/files/").run_once()
    assert summary["synced"] == 1 and summary["rejected"] == 1
    rows = by_path(catalog)
    assert rows[rotten["store_path"]]["synced_at"] is None
    assert rows[rotten["store_path"]]["receipt"] is None
    assert rows[rotten["store_path"]]["upload_url"] is None
    entries = [e for e in audit.entries(catalog) if e.kind == "file.upload_rejected"]
    assert [e.subject for e in entries] == [rotten["store_path"]]
    assert entries[0].data["store_copy_intact"] is False
    assert not object_path(data, rotten["sha256"]).exists()
    # the copy itself is damaged: re-sending cannot help, a fault is open at once
    faults = [f for f in list_faults(catalog) if f.kind == FAULT_UPLOAD]
    assert [f.subject for f in faults] == [rotten["store_path"]]
    assert "recdock verify" in faults[0].detail
    # and the recording is set aside while the fault is open
    again = worker(home, f"{url}/files/").run_once()
    assert again["candidates"] == 0 and again["set_aside"] == 1 and again["bytes_sent"] == 0
    assert by_path(catalog)[rotten["store_path"]]["synced_at"] is None


def test_corruption_on_the_way_is_re_sent_then_a_fault_after_the_bound(central, home, tmp_path):
    url, data = central
    size = 300_000
    catalog = offload(home, tmp_path, files=1, size=size)
    row = recordings.listing(catalog)[0]
    port = int(url.rsplit(":", 1)[1])
    # one flipped byte in the body of the first attempt, one in the second's
    with FaultProxy(port, flips=[50_000, 400_000]) as proxy:
        w = worker(home, f"{proxy.url}/files/", max_rejections=2)
        first = w.run_once()
        assert first["rejected"] == 1 and first["synced"] == 0
        assert list_faults(catalog) == []  # the copy is intact: just send it again
        assert by_path(catalog)[row["store_path"]]["upload_url"] is None
        second = w.run_once()
        assert second["rejected"] == 1 and second["bytes_sent"] >= size  # from zero
        faults = list_faults(catalog)
        assert [(f.kind, f.subject) for f in faults] == [(FAULT_UPLOAD, row["store_path"])]
        assert "network" in faults[0].detail
        assert w.run_once()["set_aside"] == 1
        entries = [e for e in audit.entries(catalog) if e.kind == "file.upload_rejected"]
        assert [e.data["store_copy_intact"] for e in entries] == [True, True]
        # the operator fixed the path and resolved the fault: it goes again, and arrives
        assert resolve_fault(catalog, FAULT_UPLOAD, row["store_path"], "NIC replaced")
        last = w.run_once()
    assert last["synced"] == 1
    assert by_path(catalog)[row["store_path"]]["synced_at"] is not None
    assert fault_id(FAULT_UPLOAD, row["store_path"]) not in {f.id for f in list_faults(catalog)}


class Clock:
    def __init__(self, at: datetime):
        self.at = at
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return self.at


def test_nothing_is_uploaded_outside_the_allowed_hours(central, home, tmp_path):
    url, data = central
    catalog = offload(home, tmp_path, files=2)
    clock = Clock(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    w = worker(home, f"{url}/files/", allowed_hours="22:00-06:00", clock=clock)
    summary = w.run_once()
    assert not summary["window_open"] and summary["opens_in_s"] == 10 * 3600
    assert summary["bytes_sent"] == 0 and summary["remaining"] == 2
    assert all(
        r["synced_at"] is None and r["upload_url"] is None for r in recordings.listing(catalog)
    )
    assert central_receipts(data) == [] and list((data / "uploads").iterdir()) == []

    # run_forever sleeps until the window opens, and wakes at once on stop
    stop = threading.Event()
    sleeper = worker(home, f"{url}/files/", allowed_hours="22:00-06:00", clock=clock, stop=stop)
    thread = threading.Thread(target=sleeper.run_forever)
    looked = clock.calls
    thread.start()
    wait_for(lambda: clock.calls > looked, 5)  # its first pass saw the window closed
    assert thread.is_alive()  # and now it waits (10 hours, re-reading the clock every 10 min)
    stop.set()
    woke = time.monotonic()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - woke < 2
    assert central_receipts(data) == []

    clock.at = datetime(2024, 6, 1, 23, 30, tzinfo=UTC)  # inside the window (wraps midnight)
    assert w.run_once()["synced"] == 2


@contextlib.contextmanager
def serve_on(app, sock: socket.socket) -> Iterator[str]:
    """uvicorn on an already bound socket (the port was refusing connections until now)."""
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 10)
        assert server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_central_store_that_is_down_then_back(home, tmp_path, caplog):
    catalog = offload(home, tmp_path, files=3)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/files/"
    with caplog.at_level(logging.WARNING, logger="sync.upload"):
        down = worker(home, endpoint).run_once()
    assert down["synced"] == 0 and down["failed"] == 1 and "unreachable" in down["error"]
    assert len(down["files"]) == 1  # the pass ended at the first failure
    assert all(r["synced_at"] is None for r in recordings.listing(catalog))
    assert "unreachable" in caplog.text or "retries" in caplog.text

    stop = threading.Event()
    w = worker(home, endpoint, stop=stop, idle_s=30)
    thread = threading.Thread(target=w.run_forever)
    thread.start()
    try:
        with serve_on(create_app(tmp_path / "central", TOKENS), sock):
            wait_for(lambda: all(r["synced_at"] for r in recordings.listing(catalog)), 30)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert sorted(subjects_of(catalog, "file.synced")) == sorted(
        r["store_path"] for r in recordings.listing(catalog)
    )


def test_a_server_without_receipts_leaves_files_unsynced(home, tmp_path, caplog):
    from fastapi import FastAPI
    from tuspyserver import create_tus_router

    catalog = offload(home, tmp_path, files=1)
    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=str(tmp_path / "tuspy")))
    with serve_app(app) as url, caplog.at_level(logging.WARNING, logger="sync.upload"):
        w = worker(home, f"{url}/files")
        first = w.run_once()
        assert first["unconfirmed"] == 1 and first["synced"] == 0
        assert "no receipt" in caplog.text and "not marked synced" in caplog.text
        row = recordings.listing(catalog)[0]
        assert row["synced_at"] is None and row["receipt"] is None and row["upload_url"]
        # the next pass finds the upload complete and sends nothing again
        second = w.run_once()
        assert second["unconfirmed"] == 1 and second["bytes_sent"] == 0
    assert subjects_of(catalog, "file.synced") == []


def test_uploader_factory_is_used(central, home, tmp_path):
    url, _ = central
    offload(home, tmp_path, files=1)
    made: list[TusUploader] = []

    def factory(cfg: UploadConfig) -> TusUploader:
        up = TusUploader(cfg.endpoint, cfg.token, chunk_size=cfg.chunk_bytes)
        made.append(up)
        return up

    summary = worker(home, f"{url}/files/", uploader_factory=factory).run_once()
    assert summary["synced"] == 1 and len(made) == 1 and made[0].bytes_sent == 300_000


def test_the_uploader_outlives_a_pass_that_crashes(central, home, tmp_path):
    """An unexpected error in one pass is logged and backed off, not the end of uploads."""
    url, _ = central
    catalog = offload(home, tmp_path, files=2)
    calls = {"n": 0}

    def factory(cfg: UploadConfig) -> TusUploader:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected: the first pass crashes")
        return TusUploader(cfg.endpoint, cfg.token, chunk_size=cfg.chunk_bytes)

    stop = threading.Event()
    w = worker(home, f"{url}/files/", stop=stop, uploader_factory=factory, idle_s=0.05)
    thread = threading.Thread(target=w.run_forever, daemon=True)
    thread.start()
    try:
        # both recordings synced after the crashed pass
        wait_for(lambda: all(r["synced_at"] for r in recordings.listing(catalog)), 30)
        assert calls["n"] >= 2 and thread.is_alive()
    finally:
        stop.set()
        w.wake()
        thread.join(30)


def test_the_bandwidth_limit_paces_uploads(central, home, tmp_path):
    url, _ = central
    offload(home, tmp_path, files=1, size=600_000)
    w = worker(home, f"{url}/files/", bandwidth_bytes_per_s=512 * KiB)
    started = time.monotonic()
    assert w.run_once()["synced"] == 1
    # 600 000 bytes at 512 KiB/s with a 256 KiB burst: at least 0.64 s
    assert time.monotonic() - started >= 0.6


def write_config(tmp_path: Path, endpoint: str, enabled: bool = True) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(
        f'station_id = "{STATION}"\n[store]\nreserve_bytes = 0\n'
        f'[upload]\nenabled = {str(enabled).lower()}\nendpoint = "{endpoint}"\n'
        f'token = "{TOKEN_A}"\nretries = 0\nchunk_bytes = {CHUNK}\ninsecure_lab = true\n'
    )
    return path


def test_recdock_sync_once(central, home, tmp_path):
    url, _ = central
    catalog = offload(home, tmp_path, files=2)
    result = recdock("sync", "--once", home=home, config=write_config(tmp_path, f"{url}/files/"))
    assert result.returncode == 0, result.stderr
    assert "2 synced" in result.stdout and "0 not yet synced" in result.stdout
    assert all(r["synced_at"] for r in recordings.listing(catalog))


def test_recdock_sync_once_says_when_the_store_is_unreachable(home, tmp_path):
    offload(home, tmp_path, files=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # refuses connections
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/files/"
        result = recdock("sync", "--once", home=home, config=write_config(tmp_path, endpoint))
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "unreachable" in result.stderr and "1 not yet synced" in result.stdout


def test_recdock_sync_refuses_when_uploads_are_off(home, tmp_path):
    offload(home, tmp_path, files=1)
    config = write_config(tmp_path, "http://127.0.0.1:9/files/", enabled=False)
    result = recdock("sync", "--once", home=home, config=config)
    assert result.returncode == EXIT_CONFIG
    assert "[upload] enabled = true" in result.stderr


def test_a_killed_sync_resumes_from_the_server_offset(central, home, tmp_path):
    url, data = central
    size = 2 * MiB
    catalog = offload(home, tmp_path, files=1, size=size)
    config = write_config(tmp_path, f"{url}/files/")
    with config.open("a") as f:
        f.write(f"bandwidth_bytes_per_s = {256 * KiB}\n")  # slow enough to kill it mid-way
    proc = subprocess.Popen(
        [str(BIN / "recdock"), "--home", str(home), "--config", str(config), "sync", "--once"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def server_offset() -> int:
        infos = uploads.records(data / "receipts.sqlite")
        return infos[0]["offset"] if infos else 0

    try:
        wait_for(lambda: server_offset() >= 512 * KiB, 30)
    finally:
        proc.kill()
        proc.wait(10)
    row = recordings.listing(catalog)[0]
    assert row["synced_at"] is None and row["upload_url"]  # kept before the first byte went
    # HEAD waits for the PATCH the kill cut short: its offset is the server's durable one
    head = requests.head(
        row["upload_url"], headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKEN_A}"}
    )
    acknowledged = int(head.headers["Upload-Offset"])
    assert 512 * KiB <= acknowledged < size
    summary = worker(home, f"{url}/files/").run_once()
    assert summary["synced"] == 1
    assert summary["bytes_sent"] == size - acknowledged
    assert json.loads(recordings.listing(catalog)[0]["receipt"])["upload_url"] == row["upload_url"]


def test_a_stop_is_not_held_up_by_a_receipt_the_centre_is_still_verifying(home, tmp_path):
    """The centre answers 202 (still verifying) for a long time: a stop ends the wait at once."""
    catalog = offload(home, tmp_path, files=1)
    app = create_app(tmp_path / "central", TOKENS)
    slow = threading.Event()
    slow.set()
    asked = threading.Event()

    @app.middleware("http")
    async def verifying_for_a_long_time(request, call_next):  # a centre with a slow verifier
        if slow.is_set() and request.url.path.endswith("/receipt"):
            asked.set()
            from fastapi.responses import Response

            return Response(status_code=202, headers={"Retry-After": "30"})
        return await call_next(request)

    stop = threading.Event()
    with serve_app(app) as url:
        w = worker(home, f"{url}/files/", stop=stop)
        result: list[dict] = []
        runner = threading.Thread(target=lambda: result.append(w.run_once()))
        runner.start()
        assert asked.wait(30), "the uploader never asked for its receipt"
        t0 = time.monotonic()
        stop.set()
        runner.join(10)
        assert not runner.is_alive(), "the stop waited for the receipt"
        assert time.monotonic() - t0 < 5
        assert result[0]["synced"] == 0 and result[0]["stopped"] is True
        row = recordings.listing(catalog)[0]
        assert row["synced_at"] is None and row["receipt"] is None and row["upload_url"]
        # the centre finished verifying: the next pass asks for the receipt, sends nothing again
        slow.clear()
        stop.clear()
        again = w.run_once()
        assert again["synced"] == 1 and again["bytes_sent"] == 0
    assert recordings.listing(catalog)[0]["synced_at"] is not None


def test_a_stop_signal_landing_inside_the_sync_command_wait_does_not_deadlock(
    home, tmp_path, monkeypatch
):
    """`recdock sync` (no --once) waits between passes in ``stop.wait()`` on the main
    thread, and Python runs a signal handler on that thread between two bytecodes, also while
    ``wait()`` holds the event's lock. The SIGTERM handler must not wait for that lock: the
    uploader would hang instead of stopping. The signal is sent from inside ``wait()`` (a
    real signal, the real handler); a SIGALRM ends the test instead of hanging it."""
    import sync.upload.worker
    from agent.cli.main import cli

    open_catalog(home, STATION).close()
    config = write_config(tmp_path, "http://127.0.0.1:9/files/")
    signalled: list[list[bool]] = []

    class SignalledWorker(UploadWorker):
        def __init__(self, *args, stop: threading.Event, **kwargs) -> None:
            super().__init__(*args, stop=stop, **kwargs)
            signalled.append(signal_inside(stop, "wait"))

    monkeypatch.setattr(sync.upload.worker, "UploadWorker", SignalledWorker)
    with deadlock_alarm(10):
        cli.main(["--home", str(home), "--config", str(config), "sync"], standalone_mode=False)
    assert signalled == [[True]]
