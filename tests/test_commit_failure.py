"""A catalog commit that fails leaves nothing unaccounted for.

When a group's catalog commit fails (disk full under the catalog, an I/O error), its
copies are already verified and linked into the store. The session must stay open so
the next offload adopts them; an ended session is never searched for orphans, so they
would otherwise sit in the store uncatalogued and `recdock verify` would report them
as added files for ever.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from agent.catalog import Catalog, open_catalog
from agent.config import Config, StoreConfig
from agent.errors import CatalogError
from agent.offload import Offloader
from agent.recorder.profiles import Profile, ProfileSet
from agent.store import Store
from agent.verify import verify
from tests.recorders import make_folder_recorder


def offload_failing_second_commit(
    monkeypatch: pytest.MonkeyPatch,
    config: Config,
    home: Path,
    catalog: Catalog,
    rec: Path,
    profile: Profile,
) -> None:
    """Offload ``rec`` with the second non-empty group's catalog commit failing."""
    real_commit = Offloader._commit
    groups = {"n": 0}

    def failing_commit(self, group, *args, **kwargs):  # type: ignore[no-untyped-def]
        if group:
            groups["n"] += 1
            if groups["n"] == 2:
                raise CatalogError("catalog.db: disk I/O error (injected)")
        return real_commit(self, group, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Offloader, "_commit", failing_commit)
        with pytest.raises(CatalogError):
            Offloader(config, home, catalog).run(rec, profile)


def test_failed_commit_keeps_the_session_open_and_the_next_run_adopts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Config(store=StoreConfig(reserve_bytes=0, commit_every_files=2))
    home = tmp_path / "home"
    rec = make_folder_recorder(tmp_path / "rec", "CF0001", files=5, size=64 * 1024)
    profile = ProfileSet.load(config.profiles.dirs).get("simulated")

    # the second group's copies are linked, its rows never land
    catalog = open_catalog(home, config.station_id)
    offload_failing_second_commit(monkeypatch, config, home, catalog, rec, profile)
    (open_session,) = catalog.query("SELECT * FROM sessions WHERE ended_at IS NULL")
    linked = [p for p in (home / "store").rglob("*.MP4") if not p.name.startswith(".recdock-")]
    catalogued = catalog.query("SELECT store_path FROM recordings")
    assert len(linked) > len(catalogued), "the test must leave linked copies without rows"
    catalog.close()

    # the next offload adopts them and finishes the job
    catalog = open_catalog(home, config.station_id)
    report = Offloader(config, home, catalog).run(rec, profile)
    assert report.ok, report.failures
    rows = catalog.query("SELECT * FROM recordings WHERE session_id = ?", (open_session["id"],))
    assert any(r["adopted"] for r in rows)
    assert list((rec / "DCIM" / "100RDSIM").iterdir()) == []
    result = verify(catalog, Store(home / "store", reserve_bytes=0))
    assert result.ok, result.problems
    conn = sqlite3.connect(home / "catalog.db")
    per_sha = conn.execute(
        "SELECT sha256, count(*) FROM recordings GROUP BY sha256 HAVING count(*) > 1"
    ).fetchall()
    assert per_sha == [], "a file was catalogued twice"


def test_two_bays_recovering_the_same_session_at_once_do_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a power cut two bays start offloading together: one recovers, one skips."""
    import threading

    from agent.offload import recover_interrupted

    config = Config(store=StoreConfig(reserve_bytes=0, commit_every_files=2))
    home = tmp_path / "home"
    rec = make_folder_recorder(tmp_path / "rec", "CF0002", files=6, size=64 * 1024)
    profile = ProfileSet.load(config.profiles.dirs).get("simulated")
    real_commit = Offloader._commit

    def failing_commit(self, group, *args, **kwargs):  # type: ignore[no-untyped-def]
        if group and self.catalog.query("SELECT count(*) AS n FROM recordings")[0]["n"] >= 2:
            raise CatalogError("catalog.db: disk I/O error (injected)")
        return real_commit(self, group, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Offloader, "_commit", failing_commit)
        with pytest.raises(CatalogError):
            Offloader(config, home, open_catalog(home, config.station_id)).run(rec, profile)

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    counts: list[int] = []

    def recover() -> None:
        catalog = open_catalog(home, config.station_id)
        try:
            barrier.wait()
            counts.append(
                recover_interrupted(
                    catalog,
                    Store(home / "store", reserve_bytes=0),
                    home,
                    memoryview(bytearray(1 << 20)),
                )
            )
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            catalog.close()

    threads = [threading.Thread(target=recover) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(counts) == [0, 1]
    catalog = open_catalog(home, config.station_id)
    ends = catalog.query("SELECT count(*) AS n FROM audit WHERE kind = 'session.end'")[0]["n"]
    assert ends == 1
    dup = catalog.query("SELECT store_path FROM recordings GROUP BY store_path HAVING count(*) > 1")
    assert dup == []
    result = verify(catalog, Store(home / "store", reserve_bytes=0))
    assert result.ok, result.problems


def test_a_copy_whose_store_name_was_cut_is_adopted_under_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorder name escaped past 255 bytes (here GBK bytes, as a recorder with a Chinese
    code page writes them) is cut in the store; adoption after a crash must still know the
    recorder's name, or the next offload copies the file a second time."""
    config = Config(store=StoreConfig(reserve_bytes=0, commit_every_files=1))
    home = tmp_path / "home"
    rec = make_folder_recorder(tmp_path / "rec", "CF0002", files=3, size=64 * 1024)
    folder = rec / "DCIM" / "100RDSIM"
    first = sorted(folder.iterdir())[0]
    long_name = "执法记录".encode("gbk") * 20 + b"_" + first.name.encode()  # ~190 bytes
    os.rename(first, os.path.join(os.fsencode(folder), long_name))
    profile = ProfileSet.load(config.profiles.dirs).get("simulated")

    # the long name sorts last: its copy is linked in the second group, its row never lands
    catalog = open_catalog(home, config.station_id)
    offload_failing_second_commit(monkeypatch, config, home, catalog, rec, profile)
    linked = [p for p in (home / "store").rglob("*") if p.is_file() and "~" in p.name]
    assert linked, "the long name must have been cut in the store and the copy linked"
    catalog.close()

    catalog = open_catalog(home, config.station_id)
    report = Offloader(config, home, catalog).run(rec, profile)
    assert report.ok, report.failures
    rows = catalog.query("SELECT source_path, sha256, adopted FROM recordings")
    assert len(rows) == 3 and len({r["sha256"] for r in rows}) == 3, rows
    adopted = [r for r in rows if r["adopted"]]
    assert len(adopted) == 1 and adopted[0]["source_path"].endswith(first.name), adopted
    assert list(folder.iterdir()) == []
    result = verify(catalog, Store(home / "store", reserve_bytes=0))
    assert result.ok, result.problems


def test_a_store_without_extended_attributes_still_takes_a_cut_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """FAT or an old tmpfs as the store: the name cannot be kept on the copy; the offload
    says so for that file and goes on."""
    config = Config(store=StoreConfig(reserve_bytes=0))
    home = tmp_path / "home"
    rec = make_folder_recorder(tmp_path / "rec", "CF0003", files=2, size=64 * 1024)
    folder = rec / "DCIM" / "100RDSIM"
    first = sorted(folder.iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(folder), "执法记录".encode("gbk") * 20 + b".MP4"))
    profile = ProfileSet.load(config.profiles.dirs).get("simulated")

    def no_xattrs(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    catalog = open_catalog(home, config.station_id)
    report = Offloader(config, home, catalog).run(rec, profile)
    assert report.ok, report.failures
    assert len(catalog.query("SELECT * FROM recordings")) == 2
    (warning,) = [r.getMessage() for r in caplog.records if "extended attribute" in r.getMessage()]
    assert warning.startswith("DCIM/100RDSIM/") and "%B7%A8%BC%C7" in warning
    assert "stores it once more" in warning
