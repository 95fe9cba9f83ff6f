"""Crash and unplug safety: SIGKILL at random and at named moments, a yanked recorder, SIGTERM.

Rules 1-3 (docs/architecture.md) after any interruption, checked by
tests.crash_tools.check_invariants after every kill: each recording is still on
the recorder unchanged or verified in the store with a catalog row; no catalog
row points at a missing or wrong file; no temp file is taken for media; one
catalog row per recording. The next offload always completes and `recdock
verify` finds the store intact.

The random kills are seeded: RECDOCK_CRASH_SEED overrides the default seed, and
every failure message names the seed and the delay, so a failing run can be
replayed. RECDOCK_CRASH_KILLS scales the number of kills (default: 52 in all).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import EXIT_UNAVAILABLE
from agent.recorder.simulated import MEDIA_DIR as RECORDER_MEDIA_DIR
from agent.store import MEDIA_DIR, TEMP_PREFIX
from tests.conftest import needs_fusefat
from tests.crash_tools import (
    Original,
    catalog_rows,
    check_invariants,
    cli_env,
    hooked_cmd,
    originals,
    recdock_cmd,
    temp_files,
)
from tests.recorders import fat_mount, make_fat_recorder, make_folder_recorder, recdock, wait_for

DEFAULT_SEED = 20261127
SEED = int(os.environ.get("RECDOCK_CRASH_SEED", DEFAULT_SEED))
KILL_SCALE = float(os.environ.get("RECDOCK_CRASH_KILLS", "52")) / 52
MiB = 1024 * 1024


def write_config(
    tmp_path: Path,
    commit_every_files: int,
    buffer_bytes: int = MiB,
    commit_every_seconds: float = 2.0,
) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(
        'station_id = "crash-st"\n'
        "[store]\n"
        "reserve_bytes = 0\n"
        f"commit_every_files = {commit_every_files}\n"
        f"commit_every_seconds = {commit_every_seconds}\n"
        f"buffer_bytes = {buffer_bytes}\n",
        encoding="utf-8",
    )
    return path


def run_cli(cmd: list[str], log: Path, timeout: float = 120) -> int:
    with log.open("ab") as out:
        return subprocess.run(
            cmd, stdout=out, stderr=out, env=cli_env(), timeout=timeout
        ).returncode


def run_and_kill(cmd: list[str], delay: float, log: Path) -> tuple[bool, int]:
    """Start the offload; SIGKILL it after ``delay`` seconds unless it finished first."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=cli_env())
        try:
            return False, proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            return True, proc.wait(timeout=30)


# -- 1. SIGKILL at random moments ----------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    fat: bool
    files: int
    size: int
    commit_every_files: int
    kills: int


SHAPES = [
    # many small files, rows committed in groups of 8: kills land between copies,
    # links, group commits and removals
    Shape("folder-many-small", False, 240, 32 * 1024, 8, 14),
    # a few large files, one commit per file: kills land mid-copy, mid-verify
    Shape("folder-few-large", False, 3, 32 * MiB, 1, 12),
    # FAT32 through fusefat rw+, large files, commits in pairs
    Shape("fat-large", True, 3, 24 * MiB, 2, 12),
    # FAT32, small files, the default group of 64: every kill leaves uncatalogued
    # verified copies for the next run to adopt
    Shape("fat-small", True, 60, 96 * 1024, 64, 14),
]


@dataclass
class Recorder:
    serial: str
    root: Path
    expected: dict[str, Original]


@contextlib.contextmanager
def docked(tmp_path: Path, shape: Shape, serial: str) -> Iterator[Recorder]:
    """One docked recorder of a shape: a folder, or a FAT32 image mounted rw+."""
    base = tmp_path / "recorders" / serial
    if shape.fat:
        image = make_fat_recorder(
            base.with_suffix(".img"), serial, files=shape.files, size=shape.size
        )
        try:
            with fat_mount(image, base, rw=True):
                yield Recorder(serial, base, originals(base, serial, shape.files, shape.size))
        finally:
            image.unlink()
    else:
        root = make_folder_recorder(base, serial, files=shape.files, size=shape.size)
        yield Recorder(serial, root, originals(root, serial, shape.files, shape.size))


@pytest.mark.parametrize(
    "shape",
    [pytest.param(s, id=s.name, marks=[needs_fusefat] if s.fat else []) for s in SHAPES],
)
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, shape: Shape) -> None:
    rng = random.Random(f"{SEED}/{shape.name}")
    home = tmp_path / "home"
    config = write_config(tmp_path, shape.commit_every_files)
    log = tmp_path / "recdock.log"
    target = max(1, round(shape.kills * KILL_SCALE))

    # an uninterrupted run first: its duration scales the kill delays
    with docked(tmp_path, shape, f"{shape.name[:4].upper()}00") as rec:
        t0 = time.monotonic()
        rc = run_cli(recdock_cmd(home, config, "offload", str(rec.root)), log)
        duration = time.monotonic() - t0
        assert rc == 0, log.read_text(errors="replace")
        check_invariants(home, rec.root, rec.serial, rec.expected, final=True, context="clean")

    kills, rounds, history = 0, 0, []
    moments: Counter[str] = Counter()

    def none_after_copying_began() -> bool:
        return all(m == "before any copy" for m in moments)

    # the delays span the whole run; on a small recorder most of it is start-up, and a loaded
    # machine can put every kill there: then more rounds, aimed at the run's last part
    while kills < target or none_after_copying_began():
        rounds += 1
        assert rounds <= 4 * target + 20, f"only {kills} kills in {rounds} rounds (seed {SEED})"
        low = 0.0 if kills < target else 0.6
        with docked(tmp_path, shape, f"{shape.name[:4].upper()}{rounds:02d}") as rec:
            cmd = recdock_cmd(home, config, "offload", str(rec.root))
            seen_temps: set[Path] = set()
            # one to three kills in a row on the same recorder, then a run to completion
            for attempt in range(rng.randint(1, 3)):
                delay = rng.uniform(low, 1.0) * duration
                context = (
                    f"seed {SEED}, {shape.name}, round {rounds}, attempt {attempt}, "
                    f"delay {delay:.3f}s of {duration:.3f}s"
                )
                killed, rc = run_and_kill(cmd, delay, log)
                history.append((rounds, attempt, round(delay, 3), killed))
                if not killed:
                    assert rc == 0, f"{context}: {log.read_text(errors='replace')[-3000:]}"
                    break
                kills += 1
                state = check_invariants(home, rec.root, rec.serial, rec.expected, context=context)
                seen_temps |= state.temps
                moments[state.moment(len(rec.expected))] += 1
            context = f"seed {SEED}, {shape.name}, round {rounds}, final run"
            rc = run_cli(cmd, log)
            assert rc == 0, f"{context}: {log.read_text(errors='replace')[-3000:]}"
            check_invariants(home, rec.root, rec.serial, rec.expected, final=True, context=context)
            assert not any(p.exists() for p in seen_temps), context

    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "temp file" not in done.stdout, done.stdout
    print(
        f"\n{shape.name}: seed {SEED}: {kills} SIGKILLs in {rounds} rounds, uninterrupted run "
        f"{duration:.2f}s; what the kills interrupted: {dict(moments)}; "
        f"(round, attempt, delay, killed): {history}"
    )
    # the kills did land after copying had begun
    assert not none_after_copying_began(), moments


# -- 2. the recorder yanked ----------------------------------------------------------------


@needs_fusefat
def test_yanked_recorder_clear_error_nothing_lost_next_offload_completes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # no commit before the yank: the linked copy is catalogued by the stopping run
    config = write_config(tmp_path, commit_every_files=64, commit_every_seconds=60)
    serial = "YANK01"
    image = make_fat_recorder(tmp_path / "yank.img", serial, files=4, size=24 * MiB)
    mnt = tmp_path / "mnt"
    store = home / "store"

    def first_copy_linked_and_next_in_flight() -> bool:
        linked = (
            [
                p
                for p in store.rglob(f"{MEDIA_DIR}/**/*")
                if p.is_file() and not p.name.startswith(TEMP_PREFIX)
            ]
            if store.exists()
            else []
        )
        return bool(linked) and bool(temp_files(store))

    with fat_mount(image, mnt, rw=True) as m:
        expected = originals(mnt, serial, 4, 24 * MiB)
        proc = subprocess.Popen(
            recdock_cmd(home, config, "offload", str(mnt)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        try:
            wait_for(first_copy_linked_and_next_in_flight, 60, "a copy in the store")
        finally:
            m.yank()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_UNAVAILABLE, (proc.returncode, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    # one line for the user says it (the other lines are the log's, with timestamps)
    said = [ln for ln in err.splitlines() if ln.startswith("recdock: ") and "went away" in ln]
    assert len(said) == 1 and "Dock it again" in said[0], err

    # nothing lost: each file on the image unchanged, or verified in store + catalog
    with fat_mount(image, mnt, rw=False):
        state = check_invariants(home, mnt, serial, expected, context="after the yank")
    assert state.catalogued >= 1  # the copy linked before the yank was catalogued
    assert state.on_recorder == 4  # nothing removed: the recorder was gone before clearing

    with fat_mount(image, mnt, rw=True):
        again = recdock("offload", str(mnt), home=home, config=config)
        assert again.returncode == 0, again.stdout + again.stderr
        check_invariants(home, mnt, serial, expected, final=True, context="after re-dock")
        assert not list((mnt / RECORDER_MEDIA_DIR).iterdir())
    # what the yanked run catalogued is found, not copied again; the rest is copied once
    assert f"{4 - state.catalogued} stored, {state.catalogued} already" in again.stdout
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0, done.stdout + done.stderr


# -- 3. SIGTERM: a clean stop --------------------------------------------------------------


def test_sigterm_stops_promptly_and_the_next_run_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = write_config(tmp_path, commit_every_files=1)
    serial = "TERM01"
    rec = make_folder_recorder(tmp_path / "rec", serial, files=4, size=40 * MiB)
    expected = originals(rec, serial, 4, 40 * MiB)
    store = home / "store"
    proc = subprocess.Popen(
        recdock_cmd(home, config, "offload", str(rec)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    wait_for(lambda: temp_files(store), 60, "a copy in flight")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    stopped_in = time.monotonic() - t0
    assert stopped_in < 5, stopped_in
    assert proc.returncode not in (0, -signal.SIGTERM), (proc.returncode, out, err)
    assert "Traceback" not in err, err
    assert "stopped on request" in err, err
    # a clean stop leaves no temp file and no open session behind
    assert not temp_files(store)
    state = check_invariants(home, rec, serial, expected, context="after SIGTERM")
    assert state.open_sessions == 0
    assert state.on_recorder >= 1  # it did stop before the end

    again = recdock("offload", str(rec), home=home, config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    check_invariants(home, rec, serial, expected, final=True, context="after the resume")
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0, done.stdout + done.stderr


# -- 4. kills at named moments (deterministic) ---------------------------------------------


def crash_then_complete(tmp_path: Path, point: str, files: int = 5, size: int = MiB):
    home = tmp_path / "home"
    config = write_config(
        tmp_path, commit_every_files=64, buffer_bytes=64 * 1024, commit_every_seconds=60
    )
    serial = "HOOK01"
    rec = make_folder_recorder(tmp_path / "rec", serial, files=files, size=size)
    expected = originals(rec, serial, files, size)
    log = tmp_path / "recdock.log"
    rc = run_cli(hooked_cmd(point, home, config, "offload", str(rec)), log)
    assert rc == -signal.SIGKILL, log.read_text()
    crashed = check_invariants(home, rec, serial, expected, context=f"killed at {point}")
    return home, config, rec, serial, expected, crashed


def test_crash_between_store_link_and_catalog_commit_is_adopted(tmp_path: Path) -> None:
    home, config, rec, serial, expected, crashed = crash_then_complete(tmp_path, "after-link")
    store = home / "store"
    # the state a crash there leaves: an unfinished session, one verified copy in
    # its media folder with no catalog row, and the next file's temp file
    (sess,) = catalog_rows(home, "SELECT * FROM sessions")
    assert sess["ended_at"] is None
    media = store / sess["store_dir"] / MEDIA_DIR
    orphans = [p for p in media.rglob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX)]
    assert len(orphans) == 1 and crashed.catalogued == 0
    assert len(crashed.temps) == 1 and crashed.on_recorder == 5
    orphan_rel = orphans[0].relative_to(store).as_posix()

    again = recdock("offload", str(rec), home=home, config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already in the store" in again.stdout, again.stdout
    check_invariants(home, rec, serial, expected, final=True, context="after adoption")
    (row,) = catalog_rows(home, "SELECT * FROM recordings WHERE store_path = ?", (orphan_rel,))
    assert row["adopted"] == 1 and row["session_id"] == sess["id"]
    assert row["source_removed_at"] is not None  # cleared: the source hash matched
    (audit,) = catalog_rows(home, "SELECT * FROM audit WHERE kind = 'file.recovered'")
    assert audit["subject"] == orphan_rel and audit["seq"] == row["audit_seq"]
    # the same event went to the outbox, in the same transaction (rule 3)
    assert catalog_rows(
        home, "SELECT 1 FROM outbox WHERE payload LIKE ?", ('%"kind":"file.recovered"%',)
    )
    (ended,) = catalog_rows(home, "SELECT * FROM sessions WHERE id = ?", (sess["id"],))
    assert ended["state"] == "interrupted" and ended["ended_at"] is not None
    assert not crashed.temps.pop().exists()
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0 and "temp file" not in done.stdout, done.stdout + done.stderr


def test_verify_after_a_crash_calls_the_copy_to_adopt_recoverable_not_added(
    tmp_path: Path,
) -> None:
    """Between the crash and the next offload, the verified copy without a row is no
    tampering: verify says what it is and what adopts it (issue 10, item 8)."""
    home, config, rec, *_ = crash_then_complete(tmp_path, "after-link")
    store = home / "store"
    (sess,) = catalog_rows(home, "SELECT * FROM sessions")
    media = store / sess["store_dir"] / MEDIA_DIR
    (orphan,) = [p for p in media.rglob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX)]
    rel = orphan.relative_to(store).as_posix()
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "added" not in done.stdout and "PROBLEM" not in done.stdout, done.stdout
    (note,) = [ln for ln in done.stdout.splitlines() if ln.startswith(f"note: {rel}: ")]
    assert f"recoverable copy of interrupted session {sess['id']}" in note, note
    assert "the next offload at this station" in note and "adopts it" in note, note

    again = recdock("offload", str(rec), home=home, config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    (row,) = catalog_rows(home, "SELECT adopted FROM recordings WHERE store_path = ?", (rel,))
    assert row["adopted"] == 1  # the next offload did adopt it, as the note said
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0 and rel not in done.stdout, done.stdout


@pytest.mark.parametrize("point", ["marker", "after-commit", "after-unlink", "finalize"])
def test_crash_at_a_named_moment_then_offload_completes(tmp_path: Path, point: str) -> None:
    home, config, rec, serial, expected, crashed = crash_then_complete(tmp_path, point)
    if point == "after-commit":
        assert crashed.catalogued == 5 and crashed.on_recorder == 5
    if point == "after-unlink":
        assert crashed.catalogued == 5 and crashed.on_recorder == 4
    if point == "finalize":
        assert crashed.catalogued == 5 and crashed.on_recorder == 0
        assert crashed.open_sessions == 1
    again = recdock("offload", str(rec), home=home, config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    check_invariants(home, rec, serial, expected, final=True, context=f"after {point}")
    # every file that left the recorder has exactly one removal in the audit log, also the
    # one whose removal the crash interrupted before it was recorded
    removals = catalog_rows(
        home,
        "SELECT json_extract(data, '$.sha256') AS sha FROM audit"
        " WHERE kind = 'file.removed_from_recorder'",
    )
    assert sorted(r["sha"] for r in removals) == sorted(o.sha256 for o in expected.values())
    done = recdock("verify", home=home, config=config)
    assert done.returncode == 0 and "temp file" not in done.stdout, done.stdout + done.stderr
