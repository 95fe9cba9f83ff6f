"""A recorder is untrusted (rule 6): each kind of bad input gets a clear error or a correct
offload, the rest of the recorder still offloads, nothing is written outside the store and
nothing is lost. Real FAT32 images through fusefat where the case allows, folders otherwise."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.catalog import open_catalog
from agent.config import SHIPPED_PROFILES, Config, StoreConfig
from agent.errors import EXIT_CANTCREAT
from agent.offload import Offloader
from agent.recorder.names import decode_text, encode_relpath
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import MEDIA_DIR, content_chunks
from agent.store import TEMP_PREFIX
from tests.conftest import needs_fusefat
from tests.recorders import fat_mount, make_fat_recorder, make_folder_recorder, recdock, wait_for

SIZE = 200_000
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, mount)")


def write_config(tmp_path: Path, store: str = "reserve_bytes = 0\n") -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(f"[store]\n{store}")
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_sha(serial: str, index: int, size: int) -> str:
    return sha(b"".join(content_chunks(serial, index, size)))


def rows(home: Path) -> list[dict]:
    db = sqlite3.connect(home / "catalog.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM recordings ORDER BY id")]
    finally:
        db.close()


def media(rec: Path) -> list[str]:
    return sorted(os.listdir(rec / MEDIA_DIR))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")]


def assert_rows_verified(home: Path) -> None:
    for row in rows(home):
        path = home / "store" / row["store_path"]
        assert path.resolve().is_relative_to((home / "store").resolve())
        assert sha(path.read_bytes()) == row["sha256"]


# -- names and identity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "officer", "unit"),
    [
        ("../../../../x", "../../etc/x", "/abs"),
        ("/abs", "/", ".."),
        ("..", "..\\..\\win", "a/../../b"),
        ("a\nb\0c", "\x1b[31m", "%2F..%2F"),
    ],
)
def test_hostile_status_file_writes_nothing_outside_the_store(
    tmp_path: Path, home: Path, serial: str, officer: str, unit: str
) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "PLACEHOLDER", files=2, size=SIZE)
    doc = json.loads((rec / "DEVICE.JSN").read_text())
    doc.update(serial=serial, officer=officer, unit=unit)
    (rec / "DEVICE.JSN").write_text(json.dumps(doc))
    config = write_config(tmp_path)
    outside_before = tree(tmp_path) - {p for p in tree(tmp_path) if p.startswith("home")}
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == 0, result.stderr
    outside_after = tree(tmp_path) - {p for p in tree(tmp_path) if p.startswith("home")}
    assert outside_after <= outside_before
    assert media(rec) == []  # offloaded and removed
    assert set(os.listdir(home)) <= {
        "catalog.db",
        "catalog.db-wal",
        "catalog.db-shm",
        "store",
        "run",
    }
    store = (home / "store").resolve()
    for path in (home / "store").rglob("*"):
        assert path.resolve().is_relative_to(store), path
    # YYYY/MM/DD/<one safe serial component>/<session>/media/DCIM/100RDSIM/<file>
    for row in rows(home):
        parts = row["store_path"].split("/")
        assert len(parts) == 9 and parts[5] == "media", parts
        assert "/" not in parts[3] and parts[3] not in (".", "..")
    assert not Path("/abs").exists() and not Path("/etc/x").exists()


@pytest.mark.parametrize(
    ("raw", "rel"),
    [
        (b"../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        (b"/etc/shadow", "etc/shadow"),
        (b"DCIM//../x.MP4", "DCIM/%2E%2E/x.MP4"),
    ],
)
def test_dot_dot_and_absolute_relpaths_stay_inside(tmp_path: Path, raw: bytes, rel: str) -> None:
    assert encode_relpath(raw) == rel
    root = tmp_path / "media"
    assert Path(os.path.normpath(root / encode_relpath(raw))).is_relative_to(root)


def test_non_utf8_names_are_stored_and_round_trip(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "GBK01", files=1, size=SIZE)
    folder = os.fsencode(rec / MEDIA_DIR)
    names = [b"RD_\xb2\xe2\xca\xd4_0001.MP4", b"\xff\xfe%41.MP4", "执法_0001.MP4".encode()]
    for i, name in enumerate(names):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(b"clip %d " % i + name)
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    by_source = {decode_text(r["source_path"]): r for r in rows(home)}
    for i, name in enumerate(names):
        row = by_source[f"{MEDIA_DIR}/".encode() + name]
        stored = home / "store" / row["store_path"]
        assert stored.read_bytes() == b"clip %d " % i + name
        assert row["store_path"].endswith(encode_relpath(f"{MEDIA_DIR}/".encode() + name))
    assert by_source[f"{MEDIA_DIR}/执法_0001.MP4".encode()]["source_path"].endswith("执法_0001.MP4")
    assert os.listdir(folder) == []


def test_names_differing_only_in_case_are_both_stored(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "CASE01", files=0, size=SIZE)
    (rec / MEDIA_DIR / "CLIP.MP4").write_bytes(b"upper")
    (rec / MEDIA_DIR / "clip.mp4").write_bytes(b"lower")
    (rec / MEDIA_DIR / "Clip.Mp4").write_bytes(b"mixed")
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    stored = {Path(r["store_path"]).name: r["sha256"] for r in rows(home)}
    assert stored == {
        "CLIP.MP4": sha(b"upper"),
        "clip.mp4": sha(b"lower"),
        "Clip.Mp4": sha(b"mixed"),
    }
    assert_rows_verified(home)


def test_zero_byte_files(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "ZERO01", files=2, size=SIZE)
    (rec / MEDIA_DIR / "RD_20261127090000_0100.MP4").write_bytes(b"")
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    (empty,) = [r for r in rows(home) if r["size"] == 0]
    assert empty["sha256"] == sha(b"")
    assert (home / "store" / empty["store_path"]).stat().st_size == 0
    assert media(rec) == []
    assert recdock("verify", home=home, config=write_config(tmp_path)).returncode == 0


def mcopy_into(image: Path, data: bytes, dest: str, tmp_path: Path) -> None:
    src = tmp_path / "mcopy-src"
    src.write_bytes(data)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(
        ["mcopy", "-i", str(image), str(src), f"::/{dest}"],
        check=True,
        env=env,
        capture_output=True,
    )
    src.unlink()


@needs_fusefat
def test_zero_byte_file_on_fat32(tmp_path: Path, home: Path) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "ZEROFAT", files=2, size=SIZE)
    mcopy_into(image, b"", f"{MEDIA_DIR}/RD_20261127090000_0100.MP4", tmp_path)
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        result = recdock("offload", str(m.mountpoint), home=home, config=write_config(tmp_path))
        assert result.returncode == 0, result.stderr
        assert media(m.mountpoint) == []
    assert sorted(r["size"] for r in rows(home)) == [0, SIZE, SIZE]
    assert_rows_verified(home)


# -- things that are not regular files ------------------------------------------------------


def test_symlinks_are_never_followed_nor_copied(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "LINK01", files=2, size=SIZE)
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    secret = outside / "secret.MP4"
    secret.write_bytes(b"secret outside the recorder")
    (outside / "sub" / "other.MP4").write_bytes(b"another file outside")
    os.symlink(secret, rec / MEDIA_DIR / "RD_20261127090000_0300.MP4")
    os.symlink("../../../outside/secret.MP4", rec / MEDIA_DIR / "RD_20261127090000_0301.MP4")
    os.symlink(outside / "sub", rec / "DCIM" / "200LINK")
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path), timeout=60)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    for name in ("RD_20261127090000_0300.MP4", "RD_20261127090000_0301.MP4", "DCIM/200LINK"):
        assert any(name in line and "symbolic link" in line for line in lines), (name, lines)
    catalogued = {r["sha256"] for r in rows(home)}
    assert len(catalogued) == 2
    assert sha(secret.read_bytes()) not in catalogued
    assert sha(b"another file outside") not in catalogued
    # the targets are untouched, the links stay on the recorder
    assert secret.read_bytes() == b"secret outside the recorder"
    assert (outside / "sub" / "other.MP4").exists()
    assert media(rec) == ["RD_20261127090000_0300.MP4", "RD_20261127090000_0301.MP4"]
    for path in (home / "store").rglob("*"):
        assert not path.is_symlink()


@needs_root
def test_fifos_and_device_files_are_skipped_without_hanging(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "FIFO01", files=2, size=SIZE)
    fifo = rec / MEDIA_DIR / "RD_20261127090000_0400.MP4"
    os.mkfifo(fifo)
    dev = rec / MEDIA_DIR / "RD_20261127090000_0401.MP4"
    os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    zero = rec / "DCIM" / "ZERO.MP4"
    os.mknod(zero, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero: endless
    start = time.monotonic()
    result = recdock("offload", str(rec), home=home, config=write_config(tmp_path), timeout=60)
    assert time.monotonic() - start < 60
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any(fifo.name in line and "FIFO" in line for line in lines)
    assert any(dev.name in line and "device file" in line for line in lines)
    assert any("ZERO.MP4" in line and "device file" in line for line in lines)
    assert len(rows(home)) == 2
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_ISCHR(dev.lstat().st_mode)


# -- files that change or cannot be read ----------------------------------------------------


def test_file_growing_during_the_copy_is_kept(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "GROW01", files=3, size=SIZE)
    growing = rec / MEDIA_DIR / "A_GROWING.MP4"  # sorts first: copied while the writer runs
    growing.write_bytes(os.urandom(8 * 1024 * 1024))
    stop = threading.Event()
    appended = [0]

    def writer() -> None:
        fd = os.open(growing, os.O_WRONLY | os.O_APPEND)
        try:
            while not stop.is_set():
                appended[0] += os.write(fd, b"x" * 4096)
                stop.wait(0.0005)  # a steady trickle, like a recorder still writing
        finally:
            os.close(fd)

    first_call = [True]

    def progress(_n: int) -> None:
        # the copy of the growing file has begun (it is open): make sure it grows now
        if first_call[0]:
            first_call[0] = False
            seen = growing.stat().st_size
            wait_for(lambda: growing.stat().st_size > seen, 10, "the file to grow")

    config = Config(store=StoreConfig(reserve_bytes=0, buffer_bytes=64 * 1024))
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    catalog = open_catalog(home, config.station_id)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        report = Offloader(config, home, catalog, progress=progress).run(rec, profile)
    finally:
        stop.set()
        thread.join(10)
        catalog.close()
    assert appended[0] > 0
    by_name = {Path(f.source_path).name: f for f in report.files}
    bad = by_name[growing.name]
    assert bad.status == "failed" and not bad.removed
    assert "changed on the recorder during the copy" in bad.message
    assert any(growing.name in line and "changed" in line for line in report.failures)
    assert not report.ok
    assert [f.status for n, f in sorted(by_name.items()) if n != growing.name] == ["stored"] * 3
    assert media(rec) == [growing.name]
    assert len(rows(home)) == 3 and not temp_files(home / "store")
    assert_rows_verified(home)


def fat_cluster_range(image: Path, path: str) -> tuple[int, int]:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    out = subprocess.run(
        ["mshowfat", "-i", str(image), f"::/{path}"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    first, last = re.search(r"<(\d+)-(\d+)>", out).groups()
    return int(first), int(last)


def mark_bad_cluster(image: Path, cluster: int) -> None:
    """Write the FAT32 'bad cluster' value into every FAT copy's entry for ``cluster``."""
    import struct

    with image.open("r+b") as fh:
        boot = fh.read(512)
        bytes_per_sector = struct.unpack_from("<H", boot, 11)[0]
        reserved = struct.unpack_from("<H", boot, 14)[0]
        fats = boot[16]
        fat_sectors = struct.unpack_from("<I", boot, 36)[0]
        for n in range(fats):
            fh.seek((reserved + n * fat_sectors) * bytes_per_sector + cluster * 4)
            fh.write(struct.pack("<I", 0x0FFFFFF7))


@needs_fusefat
def test_unreadable_file_on_a_damaged_fat32(tmp_path: Path, home: Path) -> None:
    """A real read error: a cluster in the file's chain is marked bad in the FAT, so fusefat's
    read fails (it answers EPERM, not EIO: the closest real error fusefat produces)."""
    image = make_fat_recorder(tmp_path / "rec.img", "DAMAGED", files=3, size=SIZE)
    with fat_mount(image, tmp_path / "probe") as m:
        names = media(m.mountpoint)
    victim = names[1]
    first, last = fat_cluster_range(image, f"{MEDIA_DIR}/{victim}")
    mark_bad_cluster(image, (first + last) // 2)
    with fat_mount(image, tmp_path / "mnt", rw=True) as m:
        with pytest.raises(OSError):  # the damage is real: a plain read fails too
            (m.mountpoint / MEDIA_DIR / victim).read_bytes()
        result = recdock("offload", str(m.mountpoint), home=home, config=write_config(tmp_path))
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        (line,) = lines
        assert victim in line and "read error on the recorder" in line, line
        assert media(m.mountpoint) == [victim]
    assert len(rows(home)) == 2
    assert not temp_files(home / "store")
    assert_rows_verified(home)


# -- scale ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_thousand_files(tmp_path: Path, home: Path) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "TENK01", files=0)
    folder = rec / MEDIA_DIR
    for i in range(10_000):
        fd = os.open(folder / f"RD_20261127080000_{i:05d}.MP4", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"%d" % i)
        os.close(fd)
    start = time.monotonic()
    result = recdock("offload", str(rec), "--json", home=home, config=write_config(tmp_path))
    took = time.monotonic() - start
    print(f"10,000 files offloaded in {took:.1f} s")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["stored"], report["removed"]) == (10_000, 10_000)
    catalogued = rows(home)
    assert len(catalogued) == 10_000
    assert {r["sha256"] for r in catalogued} == {sha(b"%d" % i) for i in range(10_000)}
    assert os.listdir(folder) == []
    assert took < 180, f"10,000 files took {took:.1f} s"  # ~10 s on an idle 2-core VM


@pytest.mark.slow
def test_file_over_4_gib(tmp_path: Path, home: Path) -> None:
    size = 4 * 1024**3 + 4097
    rec = make_folder_recorder(tmp_path / "rec", "HUGE01", files=1, size=size, sparse=True)
    (name,) = media(rec)
    with open(rec / MEDIA_DIR / name, "r+b") as fh:  # some data past 4 GiB
        fh.seek(4 * 1024**3 + 1)
        fh.write(b"past the 32-bit limit")
    h = hashlib.sha256()
    with open(rec / MEDIA_DIR / name, "rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            h.update(chunk)
    try:
        result = recdock("offload", str(rec), home=home, config=write_config(tmp_path))
        assert result.returncode == 0, result.stderr
        (row,) = rows(home)
        assert row["size"] == size and row["sha256"] == h.hexdigest()
        assert (home / "store" / row["store_path"]).stat().st_size == size
        assert media(rec) == []
    finally:  # pytest keeps old tmp dirs: do not leave 4 GiB behind
        shutil.rmtree(home / "store", ignore_errors=True)


# -- a store disk that fills up -------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def all_accounted_for(rec: Path, home: Path, serial: str, files: int, size: int) -> list[str]:
    """Every original file is either still on the recorder or verified in the store."""
    left = media(rec)
    by_sha = {r["sha256"]: r for r in rows(home)}
    for i in range(files):
        want = expected_sha(serial, i, size)
        if want in by_sha:
            stored = home / "store" / by_sha[want]["store_path"]
            assert sha(stored.read_bytes()) == want
        else:
            still = [n for n in left if sha((rec / MEDIA_DIR / n).read_bytes()) == want]
            assert still, f"file {i} is neither on the recorder nor in the store"
    return left


@needs_root
def test_store_fills_up_stops_at_the_reserve(tmp_path: Path, home: Path) -> None:
    size, files = 4 * 1024 * 1024, 10
    rec = make_folder_recorder(tmp_path / "rec", "FULL01", files=files, size=size)
    config = write_config(tmp_path, f"reserve_bytes = {8 * 1024 * 1024}\n")
    with tmpfs(home / "store", "size=40m,mode=0755"):
        result = recdock("offload", str(rec), home=home, config=config)
        assert result.returncode == EXIT_CANTCREAT, result
        assert "Traceback" not in result.stderr
        assert str(home / "store") in result.stderr and "reserve" in result.stderr
        fitted = rows(home)
        assert 0 < len(fitted) < files
        assert not temp_files(home / "store")
        left = all_accounted_for(rec, home, "FULL01", files, size)
        assert len(left) == files - len(fitted)
        assert all(r["source_removed_at"] for r in fitted)
        assert_rows_verified(home)
        free = os.statvfs(home / "store")
        assert free.f_bavail * free.f_frsize >= 8 * 1024 * 1024 - 64 * 1024
        verify = recdock("verify", home=home, config=config)
        assert verify.returncode == 0, verify.stdout


@needs_root
def test_store_out_of_inodes_is_a_full_store(tmp_path: Path, home: Path) -> None:
    """ENOSPC from the file system itself (no inodes left), not from our reserve check."""
    files = 40
    rec = make_folder_recorder(tmp_path / "rec", "INODE1", files=files, size=1000)
    config = write_config(tmp_path)
    with tmpfs(home / "store", "size=40m,nr_inodes=40,mode=0755"):
        result = recdock("offload", str(rec), home=home, config=config)
        assert result.returncode == EXIT_CANTCREAT, result
        assert "Traceback" not in result.stderr
        assert "full" in result.stderr
        assert not temp_files(home / "store")
        all_accounted_for(rec, home, "INODE1", files, 1000)
        assert_rows_verified(home)


@pytest.mark.parametrize("errno_name", ["ECONNABORTED", "ENOTCONN", "EIO"])
def test_a_recorder_file_whose_status_cannot_be_read_is_a_clear_error(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, errno_name: str
) -> None:
    """fstat of a recorder file failing (a yanked fusefat mount answers ECONNABORTED or
    ENOTCONN; a failing medium EIO) is the recorder gone, or that file's error: never an
    unexpected exception (exit 70), and nothing is removed from the recorder."""
    import errno

    from agent.errors import RecorderGoneError

    rec = make_folder_recorder(tmp_path / "rec", "ABORT01", files=3, size=4096)
    before = media(rec)
    code = getattr(errno, errno_name)
    real_fstat = os.fstat
    root = str(rec.resolve())

    def fstat(fd: int) -> os.stat_result:
        target = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else ""
        if target.startswith(root) and target.endswith("0002.MP4"):
            raise OSError(code, os.strerror(code))
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", fstat)  # opening and copying the file both fstat it
    config = Config(store=StoreConfig(reserve_bytes=0))
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    report = Offloader(config, home, open_catalog(home, config.station_id)).run(rec, profile)
    failed = [f for f in report.files if f.status == "failed"]
    assert [f.source_path.rsplit("/", 1)[-1] for f in failed] == [before[1]]
    if errno_name == "EIO":
        assert "Input/output error" in failed[0].message and report.exception is None
    else:
        assert isinstance(report.exception, RecorderGoneError), report.exception
        assert "went away" in str(report.exception)
    assert before[1] in media(rec)  # the file that failed stays on the recorder
    assert_rows_verified(home)
