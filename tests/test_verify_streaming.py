"""`recdock verify` at any size: one session, one device, a day range or only the audit chain;
an interrupted full check resumes where it stopped; memory does not grow with the catalog.

Recorders are offloaded for real (folder recorders); tampering is done on the real files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from agent.catalog import Catalog, audit, open_catalog, recordings, sessions
from agent.config import Config
from agent.errors import EXIT_FAILED, EXIT_USAGE
from agent.store import Store
from agent.verify import PROBLEM, Scope, verify
from agent.verify import run as verify_run
from agent.verify import store as verify_store
from tests.recorders import BIN, make_folder_recorder, recdock

SERIALS = ("SCOPE1", "SCOPE2", "SCOPE3")


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, Path]:
    """A home with three recorders offloaded, one session each; returns (home, config)."""
    home = tmp_path / "home"
    config = tmp_path / "recdock.toml"
    config.write_text("[store]\nreserve_bytes = 0\n")
    for serial in SERIALS:
        rec = make_folder_recorder(tmp_path / serial, serial, files=2, size=20_000)
        done = recdock("offload", str(rec), home=home, config=config)
        assert done.returncode == 0, done.stderr
    return home, config


def rows(home: Path, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(home / "catalog.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def damage(home: Path, serial: str) -> str:
    """Flip a byte of one of ``serial``'s store files; returns its store path."""
    (rec,) = rows(
        home, "SELECT store_path FROM recordings WHERE device_serial = ? LIMIT 1", (serial,)
    )
    path = home / "store" / rec["store_path"]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    return rec["store_path"]


def check(home: Path, config: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = recdock("verify", "--json", *args, home=home, config=config)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_one_session_one_device_one_day_range(three: tuple[Path, Path]) -> None:
    home, config = three
    bad = damage(home, "SCOPE2")
    (s1,) = rows(home, "SELECT id FROM sessions WHERE device_serial = 'SCOPE1'")
    (s2,) = rows(home, "SELECT id FROM sessions WHERE device_serial = 'SCOPE2'")

    code, report = check(home, config, "--session", s1["id"])
    assert code == 0 and report["files_checked"] == 2, report
    code, report = check(home, config, "--session", s2["id"])
    assert code == EXIT_FAILED and report["files_checked"] == 2
    assert any(p.startswith(bad) and "changed in the store" in p for p in report["problems"])
    code, report = check(home, config, "--device", "SCOPE3")
    assert code == 0 and report["files_checked"] == 2 and report["scope"] == "device SCOPE3"
    # every session started today (station time): the whole store, the damage included
    (days,) = rows(
        home,
        "SELECT min(date(started_at, 'localtime')) AS first, max(date(started_at, 'localtime'))"
        " AS last FROM sessions",
    )
    code, report = check(home, config, "--since", days["first"], "--until", days["last"])
    assert code == EXIT_FAILED and report["files_checked"] == 6, report
    code, report = check(home, config, "--until", "2000-01-01")
    assert code == 0 and report["files_checked"] == 0, report


def test_a_partial_check_still_checks_the_whole_chain_and_its_sessions_entries(
    three: tuple[Path, Path],
) -> None:
    home, config = three
    (s3,) = rows(home, "SELECT id FROM sessions WHERE device_serial = 'SCOPE3'")
    with sqlite3.connect(home / "catalog.db") as conn:
        conn.execute("UPDATE audit SET subject = 'x' WHERE seq = 1")  # SCOPE1's session.start
        conn.execute("DELETE FROM audit WHERE kind = 'session.end' AND subject = ?", (s3["id"],))
    code, report = check(home, config, "--device", "SCOPE3")
    assert code == EXIT_FAILED
    assert any("entry 1 (session.start x) was altered" in p for p in report["problems"])
    assert any(
        p.startswith(f"session {s3['id']}: the catalog says it ended") for p in report["problems"]
    )


def test_chain_only_reads_no_store_file(three: tuple[Path, Path]) -> None:
    home, config = three
    damage(home, "SCOPE1")
    code, report = check(home, config, "--chain-only")
    assert code == 0 and report["files_checked"] == 0 and report["scope"] == "audit chain only"
    assert report["audit_entries"] >= 3 * 6  # each session: start, 2 stored, 2 removed, end
    with sqlite3.connect(home / "catalog.db") as conn:
        conn.execute("UPDATE audit SET at = '2000-01-01' WHERE seq = 5")
    code, report = check(home, config, "--chain-only")
    assert code == EXIT_FAILED and any(
        "entry 5 " in p and "altered" in p for p in report["problems"]
    )


def test_an_interrupted_full_check_resumes_where_it_stopped(
    three: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _config = three
    bad = damage(home, "SCOPE1")  # in the first session: found before the interruption
    monkeypatch.setattr(verify_run, "SAVE_EVERY_S", 0.0)
    hashed: list[str] = []
    real_hash = verify_store.hash_file

    def counting_hash(path: Path, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        hashed.append(path.relative_to(home / "store").as_posix())
        return real_hash(path, *args, **kw)

    monkeypatch.setattr(verify_store, "hash_file", counting_hash)
    real_session = verify_store.StoreCheck.session
    done: list[str] = []

    def interrupted(self, sess):  # type: ignore[no-untyped-def]
        if len(done) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third session
        real_session(self, sess)
        done.append(sess["id"])

    catalog = open_catalog(home, Config().station_id)
    store = Store(home / "store", reserve_bytes=0)
    with monkeypatch.context() as m:
        m.setattr(verify_store.StoreCheck, "session", interrupted)
        with pytest.raises(KeyboardInterrupt):
            verify(catalog, store)
    assert len(hashed) == 4
    first = list(hashed)

    hashed.clear()
    report = verify(catalog, store, resume=True)
    assert report.resumed and report.files_checked == 6
    assert set(hashed).isdisjoint(first) and len(hashed) == 2  # only the third session
    assert [p for p in report.problems if p.startswith(bad)], report.problems
    assert not report.ok
    with pytest.raises(verify_run.NothingToResumeError):  # that check is finished
        verify(catalog, store, resume=True)
    catalog.close()


def test_resume_without_an_interrupted_check_is_a_clear_error(three: tuple[Path, Path]) -> None:
    home, config = three
    done = recdock("verify", "--resume", home=home, config=config)
    assert done.returncode == EXIT_USAGE, done
    assert "no interrupted full check of this catalog to resume" in done.stderr
    done = recdock("verify", "--resume", "--device", "X", home=home, config=config)
    assert done.returncode == EXIT_USAGE and "--resume continues a full check" in done.stderr


# -- memory ----------------------------------------------------------------------------------


def synthetic(home: Path, n: int) -> None:
    """``n`` recordings in sessions of 500 with their audit entries; no store files (each
    is reported missing: the findings must not pile up in memory either)."""
    catalog = open_catalog(home, "station-01")
    for s in range(0, n, 500):
        sid = f"S{s:08d}"
        with catalog.tx() as conn:
            sessions.insert(conn, session_row(sid))
            audit.append(catalog, "session.start", sid, {})
            for i in range(500):
                path = f"2026/12/01/DEV1/{sid}/media/F{i:04d}.MP4"
                entry = audit.append(catalog, "file.stored", path, {"sha256": "0" * 64})
                recordings.insert(conn, recording_row(sid, path, entry.seq))
    catalog.close()


def session_row(sid: str) -> dict[str, object]:
    return {
        "id": sid,
        "station_id": "station-01",
        "device_serial": "DEV1",
        "profile": "simulated",
        "source": "/mnt/rec",
        "store_dir": f"2026/12/01/DEV1/{sid}",
        "started_at": "2026-12-01T10:00:00+00:00",
    }


def recording_row(sid: str, path: str, seq: int) -> dict[str, object]:
    return {
        "session_id": sid,
        "station_id": "station-01",
        "device_serial": "DEV1",
        "profile": "simulated",
        "source_path": path.rpartition("/")[2],
        "source_size": 1,
        "store_path": path,
        "size": 1,
        "sha256": "0" * 64,
        "offloaded_at": "2026-12-01T10:00:00+00:00",
        "audit_seq": seq,
    }


def peak_rss(home: Path, *args: str) -> int:
    with open(os.devnull, "w") as sink:
        proc = subprocess.Popen(
            [str(BIN / "recdock"), "--home", str(home), "verify", *args], stdout=sink
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == EXIT_FAILED  # every file is missing
    return usage.ru_maxrss


def test_verify_streams_its_memory_does_not_grow_with_the_catalog(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    synthetic(small, 1_000)
    synthetic(large, 40_000)
    grown = peak_rss(large) - peak_rss(small)
    # 39,000 more recordings and entries held together would add 60 MiB and more
    assert grown < 12 * 1024, f"peak RSS grew by {grown} KiB"
    assert stat.S_ISREG(os.stat(large / "run" / "verify-full.db").st_mode)


def test_the_check_keeps_every_finding_but_holds_only_the_first_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    synthetic(home, 1_000)
    monkeypatch.setattr("agent.verify.report.KEPT", 10)
    catalog: Catalog = open_catalog(home, "station-01")
    seen: list[str] = []
    report = verify(
        catalog,
        Store(home / "store", reserve_bytes=0),
        scope=Scope(),
        on_finding=lambda level, text: seen.append(text) if level == PROBLEM else None,
    )
    catalog.close()
    assert report.problem_count == len(seen) >= 1_000 and len(report.problems) == 10
    done = recdock("verify", "--json", home=home)
    assert len(json.loads(done.stdout)["problems"]) == len(seen)


# -- the progress bar ----------------------------------------------------------------------------


def run_with_stderr(home: Path, config: Path, terminal: bool) -> tuple[int, str, str]:
    """`recdock verify` with its stderr on a pseudo-terminal or on a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    cmd = [str(BIN / "recdock"), "--home", str(home), "--config", str(config), "verify"]
    if not terminal:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_a_progress_bar_on_a_terminal_and_none_in_a_pipe(three: tuple[Path, Path]) -> None:
    home, config = three
    code, out, err = run_with_stderr(home, config, terminal=True)
    assert code == 0, out + err
    assert "audit log" in err and "store" in err and "100%" in err, err
    assert out.splitlines()[-1].startswith("intact: 6 files"), out  # stdout stays clean
    code, out, err = run_with_stderr(home, config, terminal=False)
    assert code == 0 and err == "", err
