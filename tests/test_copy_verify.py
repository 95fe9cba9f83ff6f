"""The copy is read back from disk and must match what was read from the recorder.

The verifier reads a large copy back range by range while the rest is still being
written (Store.finish following Store.write_temp), with O_DIRECT where the store's
file system has it. These tests damage the copy on the store disk at the moments the
verifier could miss it, and feed the writer reads O_DIRECT cannot take.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest

import agent.store as store_mod
from agent.catalog import open_catalog, recordings
from agent.config import SHIPPED_PROFILES, Config, OffloadConfig, StoreConfig
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from agent.recorder.simulated import MEDIA_DIR
from agent.store import TEMP_PREFIX, Store
from agent.store.follower import Follower, TempCopy
from agent.store.hashing import hash_range
from agent.store.io import WRITEBACK_EVERY, aligned_buffer, set_direct
from tests.recorders import make_folder_recorder

BIG = 2 * WRITEBACK_EVERY + 1_000_003  # three ranges, the last one not page aligned
MiB = 1024 * 1024


def damage(path: Path, offset: int) -> None:
    """Flip a byte of a store file on disk, as a failing disk or controller would."""
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([old[0] ^ 0xFF]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def offload(tmp_path: Path, home: Path, rec: Path):  # type: ignore[no-untyped-def]
    config = Config(store=StoreConfig(reserve_bytes=0), offload=OffloadConfig(keep_source=False))
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    catalog = open_catalog(home, config.station_id)
    try:
        report = Offloader(config, home, catalog).run(rec, profile)
        return report, len(recordings.listing(catalog))
    finally:
        catalog.close()


def store_files(home: Path) -> tuple[list[Path], list[Path]]:
    files = [p for p in (home / "store").rglob("*") if p.is_file()]
    media = [p for p in files if p.parent.name == "100RDSIM" or MEDIA_DIR in p.parts]
    temps = [p for p in files if p.name.startswith(TEMP_PREFIX)]
    return [p for p in media if not p.name.startswith(TEMP_PREFIX)], temps


@pytest.mark.parametrize("when", ["first range", "after the last write"])
def test_a_copy_damaged_on_disk_is_refused_and_the_recorder_keeps_it(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    rec = make_folder_recorder(tmp_path / "rec", "VFY01", files=2, size=BIG)
    on_recorder = sorted(p.name for p in rec.rglob("*.MP4"))
    damaged: list[Path] = []

    if when == "first range":
        # the first 32 MiB are written and handed to the verifier; the disk got them wrong
        real = Follower.written

        def written(self: Follower, n: int) -> None:
            if not damaged:
                assert self._tmp is not None
                damage(self._tmp, 12345)
                damaged.append(self._tmp)
            real(self, n)

        monkeypatch.setattr(Follower, "written", written)
    else:
        # the whole copy written and fsynced; its last, unaligned page is wrong on disk
        real_complete = Follower.complete

        def complete(self: Follower, temp: TempCopy) -> None:
            if not damaged:
                damage(temp.tmp, temp.digest.size - 7)
                damaged.append(temp.tmp)
            real_complete(self, temp)

        monkeypatch.setattr(Follower, "complete", complete)

    report, rows = offload(tmp_path, home, rec)
    assert damaged
    assert not report.ok
    bad = [f for f in report.files if f.status == "failed" and "does not match" in f.message]
    assert len(bad) == 1, report.as_dict()
    assert "the recorder keeps the file" in bad[0].message
    # nothing damaged entered the store or the catalog; nothing left the recorder unverified
    media, temps = store_files(home)
    assert temps == []
    assert not damaged[0].exists()
    assert rows == len(media)
    assert sorted(p.name for p in rec.rglob("*.MP4")) == sorted(
        set(on_recorder) - {p.name for p in media}
    )
    assert bad[0].source_path.rsplit("/", 1)[-1] in {p.name for p in rec.rglob("*.MP4")}

    # the disk behaves again: the next docking stores everything, verified
    monkeypatch.undo()
    again, rows = offload(tmp_path, home, rec)
    assert again.ok, again.as_dict()
    assert rows == 2
    assert list(rec.rglob("*.MP4")) == []


def _verify_in_thread(store: Store, follow: Follower) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(store.finish(follow, aligned_buffer(MiB)))
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_reads_o_direct_cannot_take_are_written_through_the_page_cache(tmp_path: Path) -> None:
    """A recorder that answers with short, unaligned reads mid-file (a socket here)."""
    data = os.urandom(3 * MiB + 4321)
    pieces = [data[:12388], data[12388 : 2 * MiB + 5], data[2 * MiB + 5 :]]
    a, b = socket.socketpair()

    def send() -> None:
        for piece in pieces:
            b.sendall(piece)
            threading.Event().wait(0.05)  # each piece a read of its own
        b.close()

    sender = threading.Thread(target=send)
    sender.start()
    store = Store(tmp_path / "store", reserve_bytes=0)
    dest = tmp_path / "store" / "s" / "media" / "X.MP4"
    follow = Follower()
    thread, out = _verify_in_thread(store, follow)
    temp = store.write_temp(
        a.fileno(),
        dest,
        aligned_buffer(MiB),
        size_hint=len(data),
        source_name="X.MP4",
        read_ahead=aligned_buffer(MiB),
        follow=follow,
    )
    follow.complete(temp)
    thread.join(timeout=30)
    sender.join(timeout=30)
    a.close()
    assert temp.digest.sha256 == hashlib.sha256(data).hexdigest()
    assert out == [temp.digest]
    assert dest.read_bytes() == data
    assert oct(dest.stat().st_mode & 0o777) == "0o444"


def test_an_abandoned_copy_is_never_linked(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", reserve_bytes=0)
    dest = tmp_path / "store" / "s" / "media" / "Y.MP4"
    src = tmp_path / "Y.MP4"
    src.write_bytes(os.urandom(WRITEBACK_EVERY + 5))
    follow = Follower()
    thread, out = _verify_in_thread(store, follow)
    fd = os.open(src, os.O_RDONLY)
    try:
        temp = store.write_temp(
            fd,
            dest,
            aligned_buffer(MiB),
            size_hint=src.stat().st_size,
            source_name="Y.MP4",
            follow=follow,
        )
    finally:
        os.close(fd)
    follow.abandon()  # e.g. the recorder's file changed during the copy
    store_mod.discard_temp(temp)
    thread.join(timeout=30)
    assert out == [None]
    assert not dest.exists() and not temp.tmp.exists()


def test_unaligned_direct_reads_fall_back(tmp_path: Path) -> None:
    """The verifier's O_DIRECT read of a range O_DIRECT refuses is read again, cached."""
    path = tmp_path / "f"
    data = os.urandom(3 * 4096 + 11)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        if not set_direct(fd, True):
            pytest.skip(f"{tmp_path}: this file system has no O_DIRECT")
        h = hashlib.sha256()
        pos = hash_range(fd, [aligned_buffer(8192)], [h], 5, 5 + 4099)
        pos = hash_range(fd, [aligned_buffer(8192)], [h], pos, None)
    finally:
        os.close(fd)
    assert pos == len(data)
    assert h.hexdigest() == hashlib.sha256(data[5:]).hexdigest()
