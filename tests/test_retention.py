"""Retention (rule clause 11; rule 4, docs/architecture.md; docs/retention.md): a recording
leaves the station store only when the centre's receipt confirmed its hash, its retention ran
out and no hold covers it. Real offloads into a real store and catalog, real uploads to a real
central store over HTTP; the clock is moved forward (SimulatedClock's offset), never slept."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import faults, holds, open_catalog, recordings
from agent.cli.main import cli
from agent.config import load_config
from agent.errors import CatalogError
from agent.seams.clock.simulated import SimulatedClock
from agent.station.retention import FAULT_KIND, SUBJECT, PurgeReport, purge
from agent.store import Store
from agent.store.purged import purged_listed
from central.app import create_app
from sync.upload.worker import UploadWorker
from tests.central_server import TOKEN_A, TOKENS, serve_app
from tests.recorders import make_folder_recorder

STATION = "ST-A"  # the station TOKEN_A belongs to at the central store
DAY = 24 * 3600
MiB = 1024 * 1024
CONFIG = """
station_id = "ST-A"
[store]
reserve_bytes = 0
[retention]
low_disk_free_bytes = {low}
[upload]
enabled = true
endpoint = "{endpoint}/files/"
insecure_lab = true
token = "{token}"
retries = 1
"""


@pytest.fixture
def central(tmp_path: Path) -> Iterator[str]:
    with serve_app(create_app(tmp_path / "central", TOKENS)) as url:
        yield url


class Station:
    def __init__(self, tmp_path: Path, central: str, low: int = 0) -> None:
        self.home = tmp_path / "home"
        self.tmp = tmp_path
        self.config_path = tmp_path / "recdock.toml"
        self.config_path.write_text(CONFIG.format(endpoint=central, token=TOKEN_A, low=low))
        self.config = load_config(self.config_path)
        self.docked = 0

    def offload(self, serial: str, files: int = 2, size: int = 20_000) -> None:
        self.docked += 1
        rec = make_folder_recorder(self.tmp / f"rec{self.docked}", serial, files=files, size=size)
        result = self.cli("offload", str(rec))
        assert result.exit_code == 0, result.output

    def cli(self, *args: str):
        return CliRunner().invoke(
            cli, ["--home", str(self.home), "--config", str(self.config_path), *args]
        )

    def upload(self) -> None:
        worker = UploadWorker(self.config, self.home, stop=threading.Event())
        try:
            worker.run_once()
        finally:
            worker.close()

    def catalog(self):
        return open_catalog(self.home, STATION, create=False)

    @property
    def store(self) -> Store:
        return Store(self.home / "store", reserve_bytes=0)

    def purge(self, days: float, **kw: object) -> PurgeReport:
        now = SimulatedClock(offset_s=days * DAY).now()
        return purge(self.catalog(), self.store, self.config, now=now, by="test", **kw)

    def rows(self) -> list[dict]:
        return recordings.listing(self.catalog())

    def present(self) -> list[bool]:
        return [(self.store.root / r["store_path"]).exists() for r in self.rows()]


@pytest.fixture
def station(tmp_path: Path, central: str) -> Station:
    """Two files offloaded and confirmed by the centre."""
    st = Station(tmp_path, central)
    st.offload("RET001")
    st.upload()
    assert all(r["synced_at"] for r in st.rows())
    return st


def test_a_confirmed_expired_unheld_recording_is_purged_and_kept_as_a_row(station) -> None:
    assert station.purge(days=170).purged == []  # within its 6 months: kept
    assert station.present() == [True, True]
    report = station.purge(days=190)
    assert len(report.purged) == 2
    assert station.present() == [False, False]
    rows = station.rows()
    assert all(r["purged_at"] and r["purged_by"] == "test" for r in rows)
    assert {r["purge_reason"] for r in rows} == {"retention"}
    assert all(r["purge_intent_at"] is None for r in rows)
    cat = station.catalog()
    entries = cat.query("SELECT subject FROM audit WHERE kind = 'recording.purged' ORDER BY seq")
    assert [e["subject"] for e in entries] == [r["store_path"] for r in rows]
    # the session's purge list names them beside the manifest, in its lines' form
    sdir = rows[0]["store_path"].split("/media/")[0]
    listed = purged_listed(station.store.root, sdir)
    assert listed == {r["store_path"][len(sdir) + 1 :]: r["sha256"] for r in rows}


def test_a_hold_protects_a_recording_past_its_retention_until_released(station) -> None:
    rows = station.rows()
    hold_id = holds.place(
        station.catalog(), {"scope": "recording", "recording_id": rows[0]["id"],
                            "reason": "complaint", "placed_by": "t"},
    )  # fmt: skip
    assert [r["id"] for r in station.purge(days=400).purged] == [rows[1]["id"]]
    assert station.present() == [True, False]
    assert holds.lift(station.catalog(), hold_id, by="t", reason="closed")
    assert [r["id"] for r in station.purge(days=400).purged] == [rows[0]["id"]]
    assert station.present() == [False, False]


def test_a_unit_or_category_keeps_its_recordings_longer(tmp_path: Path, central: str) -> None:
    st = Station(tmp_path, central)
    text = st.config_path.read_text().replace(
        "[retention]\n",
        '[retention]\nunits = { "patrol-1" = 12 }\n',
    )
    st.config_path.write_text(text)
    st.config = load_config(st.config_path)
    st.offload("RET002")
    st.upload()
    assert st.purge(days=300).purged == []  # patrol-1 keeps 12 months
    assert len(st.purge(days=370).purged) == 2


@pytest.mark.parametrize(
    "receipt",
    [None, "other-hash", "other-station", "unverified"],
    ids=["missing", "hash-differs", "other-station", "unverified"],
)
def test_a_purge_is_refused_without_a_receipt_confirming_the_hash(station, receipt) -> None:
    db = sqlite3.connect(station.home / "catalog.db", isolation_level=None)
    for rid, raw in db.execute("SELECT id, receipt FROM recordings").fetchall():
        doc = json.loads(raw)
        if receipt is None:
            db.execute(
                "UPDATE recordings SET synced_at = NULL, receipt = NULL WHERE id = ?", (rid,)
            )
            continue
        if receipt == "other-hash":
            doc["sha256"] = "0" * 64
        elif receipt == "other-station":
            doc["station"] = "ST-B"
        else:
            doc["verified"] = False
        db.execute("UPDATE recordings SET receipt = ? WHERE id = ?", (json.dumps(doc), rid))
    db.close()
    assert station.purge(days=400).purged == []
    assert station.present() == [True, True]


def test_a_purge_is_refused_when_the_catalog_is_new(station) -> None:
    (station.home / "catalog.db").rename(station.home / "catalog.db.lost")
    for extra in ("-wal", "-shm"):
        (station.home / f"catalog.db{extra}").unlink(missing_ok=True)
    result = station.cli("purge")
    assert result.exit_code != 0 and "catalog not found" in result.output
    open_catalog(station.home, STATION).close()  # a new, empty catalog
    with pytest.raises(CatalogError, match="the catalog is new"):
        station.purge(days=400)
    files = [p for p in (station.home / "store").rglob("*.MP4")]
    assert len(files) == 2


def test_a_purge_is_refused_when_the_store_belongs_to_another_catalog(station) -> None:
    marker = station.home / "store" / ".catalog-id"
    os.chmod(marker, 0o644)
    marker.write_text("f" * 32 + "\n")
    with pytest.raises(CatalogError, match="belongs to catalog"):
        station.purge(days=400)
    result = station.cli("purge", "--json")
    assert result.exit_code == 74 and "nothing is purged" in result.output
    assert station.present() == [True, True]


def test_disk_pressure_purges_only_confirmed_unheld_files_oldest_first_then_opens_a_fault(
    tmp_path: Path, central: str
) -> None:
    st = Station(tmp_path, central)
    with tmpfs(st.home / "store", "size=32m,mode=0755"):  # free space only we change
        pressure(st)


@contextlib.contextmanager
def tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def pressure(st: Station) -> None:
    for serial in ("OLD001", "MID001", "NEW001"):
        st.offload(serial, files=1, size=MiB)
    st.upload()
    st.offload("UNSENT", files=1, size=MiB)  # never confirmed by the centre
    rows = st.rows()
    holds.place(st.catalog(), {"scope": "recording", "recording_id": rows[1]["id"],
                               "reason": "major_case", "placed_by": "t"})  # fmt: skip
    free = st.store.free_bytes()
    # just above what freeing one file brings: the oldest confirmed, unheld file goes first
    st.config = st.config.model_copy(
        update={"retention": st.config.retention.model_copy(
            update={"low_disk_free_bytes": free + MiB // 2})}
    )  # fmt: skip
    report = st.purge(days=1)
    assert [r["id"] for r in report.purged] == [rows[0]["id"]]
    assert {r["purge_reason"] for r in st.rows() if r["purged_at"]} == {"disk_pressure"}
    assert st.present() == [False, True, True, True]
    assert faults.open_subjects(st.catalog(), FAULT_KIND) == set()
    # a threshold nothing can reach: the last confirmed, unheld file goes, the held one and the
    # unconfirmed one stay, and the fault opens with its evidence
    st.config = st.config.model_copy(
        update={"retention": st.config.retention.model_copy(
            update={"low_disk_free_bytes": free + 10**15})}
    )  # fmt: skip
    report = st.purge(days=1)
    assert [r["id"] for r in report.purged] == [rows[2]["id"]]
    assert st.present() == [False, True, False, True]
    assert faults.open_subjects(st.catalog(), FAULT_KIND) == {SUBJECT}
    evidence = report.unpurgeable or {}
    assert evidence["bytes_held"] == rows[1]["size"]
    assert evidence["bytes_unconfirmed"] == rows[3]["size"]
    # the condition gone: the fault resolves
    st.config = st.config.model_copy(
        update={"retention": st.config.retention.model_copy(update={"low_disk_free_bytes": 0})}
    )
    st.purge(days=1)
    assert faults.open_subjects(st.catalog(), FAULT_KIND) == set()


def test_verify_tells_a_purged_file_from_a_missing_one(station) -> None:
    rows = station.rows()
    holds.place(station.catalog(), {"scope": "recording", "recording_id": rows[1]["id"],
                                    "reason": "complaint", "placed_by": "t"})  # fmt: skip
    assert len(station.purge(days=400).purged) == 1
    ok = station.cli("verify", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["files_purged"] == 1
    kept = station.store.root / rows[1]["store_path"]
    os.chmod(kept.parent, 0o755)
    kept.unlink()
    bad = station.cli("verify")
    assert bad.exit_code == 1
    assert f"{rows[1]['store_path']}: missing from the store (removed)" in bad.output
    assert rows[0]["store_path"] not in bad.output


def test_sha256sum_on_the_manifest_names_exactly_the_purged_files_as_missing(station) -> None:
    rows = station.rows()
    station.purge(days=400)
    sdir = station.store.root / rows[0]["store_path"].split("/media/")[0]
    result = subprocess.run(
        ["sha256sum", "-c", "manifest-sha256.txt"], cwd=sdir, capture_output=True, text=True
    )
    failed = sorted(
        line.split(": FAILED")[0] for line in result.stdout.splitlines() if "FAILED" in line
    )
    listed = sorted(
        line.split("  ", 1)[1]
        for p in sdir.glob("purged-sha256-*.txt")
        for line in p.read_text().splitlines()
    )
    assert failed == listed and len(listed) == 2
    quiet = subprocess.run(
        ["sha256sum", "-c", "--ignore-missing", "manifest-sha256.txt"], cwd=sdir,
        capture_output=True, text=True,
    )  # fmt: skip
    assert "FAILED" not in quiet.stdout


def test_a_dry_run_removes_nothing(station) -> None:
    report = station.purge(days=400, dry_run=True)
    assert len(report.purged) == 2 and station.present() == [True, True]
    assert not any(r["purged_at"] for r in station.rows())


def test_the_retention_cutoff_moves_by_calendar_months() -> None:
    from agent.station.retention import minus_months

    assert minus_months(datetime(2026, 8, 31, 12), 6) == datetime(2026, 2, 28, 12)
    assert minus_months(datetime(2026, 1, 15), 13) == datetime(2024, 12, 15)


def test_a_purge_killed_half_way_loses_nothing_and_the_next_pass_finishes_it(
    tmp_path: Path, central: str
) -> None:
    from tests.crash_tools import cli_env, hooked_cmd

    st = Station(tmp_path, central, low=10**15)  # pressure: every confirmed file may go
    st.offload("KILL01", files=3)
    st.upload()
    before = {r["id"]: r for r in st.rows()}
    cmd = hooked_cmd("purge-after-unlink", st.home, st.config_path, "purge")
    killed = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    rows = st.rows()
    # the batch is marked purged in one transaction, each with its audit entry; one file went
    assert all(r["purged_at"] and r["purge_intent_at"] for r in rows)
    assert st.present().count(False) == 1
    cat = st.catalog()
    audited = cat.query("SELECT subject FROM audit WHERE kind = 'recording.purged'")
    assert sorted(a["subject"] for a in audited) == sorted(r["store_path"] for r in rows)
    for r in rows:  # nothing lost: each file is still here, or the centre confirmed it
        path = st.store.root / r["store_path"]
        assert path.exists() or json.loads(r["receipt"])["sha256"] == before[r["id"]]["sha256"]
    assert st.cli("verify").exit_code == 0  # purged-and-present is a note, not a problem
    again = st.purge(days=0)
    assert again.finished == 3 and again.purged == []
    assert st.present() == [False, False, False]
    assert all(r["purge_intent_at"] is None for r in st.rows())
    sdir = rows[0]["store_path"].split("/media/")[0]
    assert set(purged_listed(st.store.root, sdir)) == {
        r["store_path"][len(sdir) + 1 :] for r in rows
    }
    result = st.cli("verify", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["files_purged"] == 3
