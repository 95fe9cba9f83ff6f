"""`recdock offload`: every recording lands verified in the store, then (only then) leaves the
recorder. Folder recorders and real FAT32 images mounted with fusefat."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.catalog import open_catalog
from agent.config import SHIPPED_PROFILES, Config, OffloadConfig, StoreConfig
from agent.errors import EXIT_IOERR
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import MEDIA_DIR, RecorderSpec, content_chunks
from tests.conftest import needs_fusefat
from tests.recorders import (
    BIN,
    fat_mount,
    make_fat_recorder,
    make_folder_recorder,
    recdock,
)

SIZE = 300_000
REQUIRED = (
    "sha256",
    "size",
    "device_serial",
    "officer_id",
    "source_path",
    "store_path",
    "recorded_start",
    "offloaded_at",
)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(f"[store]\nreserve_bytes = 0\n{extra}")
    return path


def expected_sha(serial: str, index: int, size: int) -> str:
    h = hashlib.sha256()
    for chunk in content_chunks(serial, index, size):
        h.update(chunk)
    return h.hexdigest()


def media_names(root: Path) -> list[str]:
    folder = root / MEDIA_DIR
    return sorted(os.listdir(folder)) if folder.exists() else []


def catalog_rows(home: Path, config: Path | None = None) -> list[dict]:
    result = recdock("catalog", "--json", home=home, config=config)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def session_dirs(home: Path) -> list[Path]:
    return sorted(p.parent for p in (home / "store").rglob("session.json"))


def assert_offloaded(home: Path, serial: str, files: int, size: int, officer: str) -> list[dict]:
    """Every file of the simulated recorder is in the store, verified and catalogued."""
    rows = catalog_rows(home)
    assert len(rows) == files
    want = {expected_sha(serial, i, size) for i in range(files)}
    assert {r["sha256"] for r in rows} == want
    for row in rows:
        for key in REQUIRED:
            assert row.get(key) not in (None, ""), (key, row)
        assert row["size"] == size
        assert row["device_serial"] == serial and row["officer_id"] == officer
        assert row["source_path"].startswith(MEDIA_DIR + "/")
        path = home / "store" / row["store_path"]
        assert stat.S_IMODE(path.lstat().st_mode) == 0o444
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert row["recorded_start"][:4].isdigit() and "+08:00" in row["recorded_start"]
    return rows


def check_session_dir(session: Path, serial: str, officer: str, unit: str, files: int) -> None:
    result = subprocess.run(
        ["sha256sum", "--strict", "-c", "manifest-sha256.txt"],
        cwd=session,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == files
    record = json.loads((session / "session.json").read_text())
    assert record["station_id"] == "station-01"
    assert record["device_serial"] == serial
    assert record["officer_id"] == officer
    assert record["unit"] == unit
    assert record["profile"] == "simulated"
    assert (
        record["started_at"] and record["ended_at"] and record["started_at"] <= record["ended_at"]
    )
    assert len(record["files"]) == files


def test_folder_recorder_offloads_verified(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "SIM0001", files=5, size=SIZE, unit="交警一中队")
    config = write_config(tmp_path)
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == 0, result.stderr
    assert "5 stored" in result.stdout and "5 removed" in result.stdout
    assert_offloaded(home, "SIM0001", 5, SIZE, "100001")
    (session,) = session_dirs(home)
    check_session_dir(session, "SIM0001", "100001", "交警一中队", 5)
    assert media_names(rec) == []
    assert (rec / "DEVICE.JSN").exists(), "only media files are removed"
    assert recdock("verify", home=home, config=config).returncode == 0


@needs_fusefat
def test_fat32_recorder_offloads_verified(tmp_path: Path, home: Path) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "FAT0001", files=4, size=SIZE)
    config = write_config(tmp_path)
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        assert len(media_names(m.mountpoint)) == 4
        result = recdock("offload", str(m.mountpoint), home=home, config=config)
        assert result.returncode == 0, result.stderr
        assert media_names(m.mountpoint) == []
    assert_offloaded(home, "FAT0001", 4, SIZE, "100001")
    (session,) = session_dirs(home)
    check_session_dir(session, "FAT0001", "100001", "patrol-1", 4)
    # the files really left the image, not only the mount's cache
    with fat_mount(image, tmp_path / "mnt2") as m:
        assert media_names(m.mountpoint) == []


def test_sources_removed_only_after_the_catalog_row(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "ORD01", files=3, size=SIZE)
    recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    db = sqlite3.connect(home / "catalog.db")
    audit = db.execute("SELECT seq, kind, subject, data FROM audit ORDER BY seq").fetchall()
    stored = {json.loads(d)["source_path"]: seq for seq, k, _s, d in audit if k == "file.stored"}
    removed = {s: seq for seq, k, s, _d in audit if k == "file.removed_from_recorder"}
    assert set(removed) == set(stored) and len(stored) == 3
    assert all(stored[name] < removed[name] for name in stored)
    for offloaded, removed_at in db.execute(
        "SELECT offloaded_at, source_removed_at FROM recordings"
    ):
        assert removed_at is not None and offloaded <= removed_at


def test_keep_source_flag(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "KEEP1", files=3, size=SIZE)
    before = media_names(rec)
    result = recdock("offload", str(rec), "--keep-source", home=home, config=write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "keep-source" in result.stdout
    assert media_names(rec) == before
    assert len(catalog_rows(home)) == 3
    assert all(r["source_removed_at"] is None for r in catalog_rows(home))


def test_keep_source_setting(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "KEEP2", files=2, size=SIZE)
    before = media_names(rec)
    config = write_config(tmp_path, "[offload]\nkeep_source = true\n")
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == 0, result.stderr
    assert media_names(rec) == before
    assert len(catalog_rows(home)) == 2


def test_redock_adds_no_duplicates_and_loses_nothing(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "REDOCK", files=4, size=SIZE)
    config = write_config(tmp_path)
    first = recdock("offload", str(rec), "--keep-source", "--json", home=home, config=config)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["stored"] == 4
    second = recdock("offload", str(rec), "--json", home=home, config=config)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["stored"], report["already"], report["removed"]) == (0, 4, 4)
    assert media_names(rec) == []
    rows = assert_offloaded(home, "REDOCK", 4, SIZE, "100001")
    assert len({r["store_path"] for r in rows}) == 4
    assert all(r["source_removed_at"] for r in rows)
    # a third docking of the now empty recorder changes nothing
    third = recdock("offload", str(rec), "--json", home=home, config=config)
    assert third.returncode == 0 and json.loads(third.stdout)["stored"] == 0
    assert len(catalog_rows(home)) == 4
    assert recdock("verify", home=home, config=config).returncode == 0


def test_redock_with_a_new_recording_stores_only_that(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "REDOCK2", files=2, size=SIZE)
    config = write_config(tmp_path)
    assert recdock("offload", str(rec), "--keep-source", home=home, config=config).returncode == 0
    (rec / MEDIA_DIR / "RD_20261127090000_0099.MP4").write_bytes(b"new recording")
    second = recdock("offload", str(rec), "--json", home=home, config=config)
    report = json.loads(second.stdout)
    assert (report["stored"], report["already"], report["removed"]) == (1, 2, 3)
    assert len(catalog_rows(home)) == 3


def test_sm3_digest_recorded(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "SM3DEV", files=2, size=SIZE)
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path, "sm3 = true\n"))
    assert result.returncode == 0, result.stderr
    rows = catalog_rows(home)
    assert len(rows) == 2
    for row in rows:
        data = (home / "store" / row["store_path"]).read_bytes()
        assert row["sm3"] == hashlib.new("sm3", data).hexdigest()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()


def test_no_sm3_unless_configured(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "NOSM3", files=1, size=SIZE)
    recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    assert [r["sm3"] for r in catalog_rows(home)] == [None]


def test_exit_code_names_each_failed_file(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "EXIT01", files=3, size=SIZE)
    os.mkfifo(rec / MEDIA_DIR / "RD_20261127090000_0050.MP4")
    os.symlink("/etc/passwd", rec / MEDIA_DIR / "RD_20261127090000_0051.MP4")
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path), timeout=60)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert any("RD_20261127090000_0050.MP4" in line and "FIFO" in line for line in lines)
    assert any("RD_20261127090000_0051.MP4" in line and "symbolic link" in line for line in lines)
    assert len(catalog_rows(home)) == 3  # the rest was offloaded


def test_catalog_deleted_between_runs_refuses(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "LOST01", files=3, size=SIZE)
    config = write_config(tmp_path)
    assert recdock("offload", str(rec), "--keep-source", home=home, config=config).returncode == 0
    before = media_names(rec)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == EXIT_IOERR, result
    assert "Traceback" not in result.stderr
    assert "catalog" in result.stderr and str(home / "store") in result.stderr
    assert media_names(rec) == before


def test_catalog_replaced_by_another_stations_refuses(tmp_path: Path, home: Path) -> None:
    config = write_config(tmp_path)
    rec = make_folder_recorder(tmp_path / "rec", "LOST02", files=2, size=SIZE)
    other = make_folder_recorder(tmp_path / "other", "OTHER", files=1, size=SIZE)
    assert recdock("offload", str(rec), "--keep-source", home=home, config=config).returncode == 0
    home2 = tmp_path / "home2"
    assert recdock("offload", str(other), home=home2, config=config).returncode == 0
    # the catalog file of another station is put in place of ours
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    (home / "catalog.db").write_bytes((home2 / "catalog.db").read_bytes())
    before = media_names(rec)
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == EXIT_IOERR, result
    assert "belongs to catalog" in result.stderr
    assert media_names(rec) == before


def test_garbage_catalog_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    config = write_config(tmp_path)
    rec = make_folder_recorder(tmp_path / "rec", "GARBLE", files=2, size=SIZE)
    assert recdock("offload", str(rec), "--keep-source", home=home, config=config).returncode == 0
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    (home / "catalog.db").write_bytes(os.urandom(64 * 1024))
    before = media_names(rec)
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == EXIT_IOERR, result
    assert "Traceback" not in result.stderr
    assert f"{home / 'catalog.db'}: catalog unreadable" in result.stderr
    assert media_names(rec) == before
    for command in ("catalog", "verify"):
        result = recdock(command, home=home, config=config)
        assert result.returncode == EXIT_IOERR and "Traceback" not in result.stderr, result


def test_library_report(tmp_path: Path, home: Path) -> None:
    """The Offloader's report as the daemon sees it."""
    rec = make_folder_recorder(tmp_path / "rec", "LIB01", files=2, size=SIZE)
    config = Config(store=StoreConfig(reserve_bytes=0), offload=OffloadConfig(keep_source=True))
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    catalog = open_catalog(home, config.station_id)
    report = Offloader(config, home, catalog).run(rec, profile)
    assert report.ok and not report.failures
    assert [f.status for f in report.files] == ["stored", "stored"]
    assert report.bytes_copied == 2 * SIZE
    assert report.as_dict()["removed"] == 0
    again = Offloader(config, home, catalog, keep_source=False).run(rec, profile)
    assert [f.status for f in again.files] == ["already", "already"]
    assert all(f.removed for f in again.files)
    catalog.close()


MEM_SCRIPT = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(r.stderr)
"""


@pytest.mark.slow
def test_memory_is_bounded_whatever_the_file_size(tmp_path: Path, home: Path) -> None:
    size = 300 * 1024 * 1024
    rec = make_folder_recorder(tmp_path / "rec", "BIG300", files=1, size=size)
    config = write_config(tmp_path)
    cmd = [str(BIN / "recdock"), "--home", str(home), "--config", str(config), "offload", str(rec)]
    out = subprocess.run(
        [sys.executable, "-c", MEM_SCRIPT, *cmd],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    rc, maxrss_kib = (int(x) for x in out.stdout.split())
    assert rc == 0, out.stderr
    assert maxrss_kib * 1024 < 100 * 1000 * 1000, f"peak RSS {maxrss_kib} KiB"
    (row,) = catalog_rows(home)
    assert row["size"] == size and row["sha256"] == expected_sha("BIG300", 0, size)


def test_spec_is_deterministic() -> None:
    spec = RecorderSpec(serial="X")
    a = b"".join(content_chunks(spec.serial, 1, 3 * 1024 * 1024 + 5))
    b = b"".join(content_chunks(spec.serial, 1, 3 * 1024 * 1024 + 5))
    assert a == b and len(a) == 3 * 1024 * 1024 + 5
    assert a != b"".join(content_chunks(spec.serial, 2, 3 * 1024 * 1024 + 5))


@needs_fusefat
def test_redock_fat32_read_only_then_read_write(tmp_path: Path, home: Path) -> None:
    """The station's way: offload from a read-only mount, then clear after a remount."""
    image = make_fat_recorder(tmp_path / "rec.img", "FATRO1", files=3, size=SIZE)
    config = write_config(tmp_path)
    with fat_mount(image, tmp_path / "ro") as m:
        result = recdock("offload", str(m.mountpoint), "--json", home=home, config=config)
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stderr
        assert (report["stored"], report["removed"]) == (3, 0)
        assert len(media_names(m.mountpoint)) == 3
    with fat_mount(image, tmp_path / "rw", rw=True) as m:
        result = recdock("offload", str(m.mountpoint), "--json", home=home, config=config)
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stderr
        assert (report["stored"], report["already"], report["removed"]) == (0, 3, 3)
        assert media_names(m.mountpoint) == []
    assert len(catalog_rows(home)) == 3


def test_redock_does_not_trust_a_damaged_store_copy(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "DAMAGE", files=2, size=SIZE)
    config = write_config(tmp_path)
    assert recdock("offload", str(rec), "--keep-source", home=home, config=config).returncode == 0
    first = catalog_rows(home)[0]
    damaged = home / "store" / first["store_path"]
    damaged.chmod(0o644)
    with damaged.open("r+b") as fh:
        fh.write(b"rot")
    damaged.chmod(0o444)
    result = recdock("offload", str(rec), "--json", home=home, config=config)
    report = json.loads(result.stdout)
    # the damaged copy is not taken as proof: the file is stored again, then removed
    assert (report["stored"], report["already"], report["removed"]) == (1, 1, 2)
    rows = catalog_rows(home)
    again = [r for r in rows if r["source_path"] == first["source_path"]]
    assert len(again) == 2 and again[1]["store_path"] != first["store_path"]
    path = home / "store" / again[1]["store_path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first["sha256"]
    assert media_names(rec) == []
    # and verify still names the damaged first copy
    verify = recdock("verify", home=home, config=config)
    assert verify.returncode == 1 and first["store_path"] in verify.stdout
