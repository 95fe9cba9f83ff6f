"""Helpers for the crash and unplug tests: what a recorder held, what the store must hold.

``check_invariants`` states, in code, what rules 1 and 2 promise after any
crash, and the tests call it after every kill:

- every original recording is either still on the recorder, byte for byte, or in
  the store with the right SHA-256 *and* a catalog row (a verified copy without a
  row may exist only while the recording is still on the recorder: the next run
  adopts it; after a completed run every store file is catalogued);
- every catalog row points at a store file that exists, is read-only and re-hashes
  to the catalogued SHA-256;
- a temp file (``.recdock-partial-*``) is never media: no catalog row and no
  manifest line names one;
- one catalog row per recording: a (device, source path, sha256) appears once, since
  a re-run either finds the catalogued copy ("already") or adopts the verified copy
  a dead run left uncatalogued; it never copies it a second time.

Run as a module (``python -m tests.crash_tools POINT -- recdock ARGS``) it runs the
CLI with a hook that SIGKILLs the process at one named moment, so the tests can
crash it exactly between two steps instead of hoping a random delay hits them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.recorder.simulated import MEDIA_DIR as RECORDER_MEDIA_DIR
from agent.recorder.simulated import content_chunks
from agent.store import MANIFEST, MEDIA_DIR, SESSION_RECORD, TEMP_PREFIX
from tests.recorders import BIN

REPO = Path(__file__).resolve().parent.parent

#: moments the hook can crash at (see _install_hook)
CRASH_POINTS = (
    "marker",
    "after-link",
    "after-commit",
    "after-unlink",
    "finalize",
    "purge-after-unlink",
)


@dataclass(frozen=True)
class Original:
    relpath: str  # as on the recorder, e.g. DCIM/100RDSIM/RD_..._0001.MP4
    size: int
    sha256: str


def originals(root: Path, serial: str, files: int, size: int) -> dict[str, Original]:
    """The recordings of a freshly built simulated recorder, with their true hashes.

    Names come from the recorder's listing (they carry the build time); content
    from agent.recorder.simulated.content_chunks, so the hash is known independently of
    any read through the recorder's file system.
    """
    names = sorted(os.listdir(root / RECORDER_MEDIA_DIR))
    assert len(names) == files, f"{root}: expected {files} media files, found {names}"
    out = {}
    for i, name in enumerate(names):
        h = hashlib.sha256()
        for chunk in content_chunks(serial, i, size):
            h.update(chunk)
        rel = f"{RECORDER_MEDIA_DIR}/{name}"
        out[rel] = Original(rel, size, h.hexdigest())
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def temp_files(store: Path) -> set[Path]:
    found: set[Path] = set()
    if store.exists():
        for dirpath, _dirs, files in os.walk(store):
            found.update(Path(dirpath, n) for n in files if n.startswith(TEMP_PREFIX))
    return found


def catalog_rows(home: Path, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, object]]:
    """Read the catalog as an outsider (read-only; no migration, no creation)."""
    path = home / "catalog.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # killed before the first migration committed
                return []
            raise
    finally:
        conn.close()


@dataclass
class State:
    on_recorder: int = 0
    catalogued: int = 0
    temps: set[Path] = field(default_factory=set)
    open_sessions: int = 0
    orphans: int = 0  # verified copies in the store a dead run left uncatalogued
    catalogued_not_cleared: int = 0  # catalogued, still on the recorder

    def moment(self, total: int) -> str:
        """Which stage the kill interrupted, from what it left behind."""
        if not (self.temps or self.orphans or self.catalogued):
            return "before any copy"
        if self.on_recorder == 0:
            return "after clearing the recorder"
        if self.orphans:
            return "between link and catalog commit"
        if self.catalogued_not_cleared:
            return "between catalog commit and clearing"
        if self.temps:
            return "during a copy"
        return "between files"


def check_invariants(
    home: Path,
    recorder: Path,
    serial: str,
    expected: dict[str, Original],
    *,
    final: bool = False,
    context: str = "",
) -> State:
    """Assert the crash-safety invariants for one recorder; see the module doc.

    ``final``: after an offload that exited 0 — additionally nothing is left on
    the recorder, every recording is catalogued, no temp file is left anywhere in
    the store, every session has ended and has its manifest and record.
    """
    where = f" [{context}]" if context else ""
    store = home / "store"
    state = State()
    rows = catalog_rows(home, "SELECT * FROM recordings WHERE device_serial = ?", (serial,))

    # every catalog row: a real, read-only, intact store file, never a temp file
    for row in rows:
        rel = str(row["store_path"])
        assert not Path(rel).name.startswith(TEMP_PREFIX), f"temp file catalogued: {rel}{where}"
        path = store / rel
        assert path.is_file() and not path.is_symlink(), f"row points at nothing: {rel}{where}"
        assert not os.stat(path).st_mode & 0o222, f"store file writable: {rel}{where}"
        assert sha256_file(path) == row["sha256"], f"row points at a wrong file: {rel}{where}"
        orig = expected.get(str(row["source_path"]))
        assert orig is not None, f"row for a file the recorder never had: {row}{where}"
        assert (row["sha256"], row["size"]) == (orig.sha256, orig.size), (
            f"row's hash is not the recording's: {rel}{where}"
        )
    # one row per recording
    dups = {
        k: n for k, n in Counter((r["source_path"], r["sha256"]) for r in rows).items() if n > 1
    }
    assert not dups, f"recordings catalogued more than once: {dups}{where}"
    state.catalogued = len(rows)

    # every original: on the recorder unchanged, or in the store with a row
    by_source = {(r["source_path"], r["sha256"]) for r in rows}
    for rel, orig in expected.items():
        on_rec = recorder / rel
        if on_rec.exists():
            state.on_recorder += 1
            st = os.lstat(on_rec)
            assert stat.S_ISREG(st.st_mode) and st.st_size == orig.size, (
                f"{rel}: changed on the recorder{where}"
            )
            assert sha256_file(on_rec) == orig.sha256, f"{rel}: changed on the recorder{where}"
            if (rel, orig.sha256) in by_source:
                state.catalogued_not_cleared += 1
        else:
            assert (rel, orig.sha256) in by_source, (
                f"{rel}: LOST: gone from the recorder but not catalogued{where}"
            )
    known = {str(r["store_path"]) for r in rows}
    if store.exists():
        for path in store.glob(f"*/*/*/{serial}/*/{MEDIA_DIR}/**/*"):
            rel = path.relative_to(store).as_posix()
            if path.is_file() and not path.name.startswith(TEMP_PREFIX) and rel not in known:
                state.orphans += 1

    # a temp file is never media: no manifest names one
    state.temps = temp_files(store)
    for manifest in store.rglob(MANIFEST) if store.exists() else []:
        text = manifest.read_text(encoding="utf-8")
        assert TEMP_PREFIX not in text, f"{manifest}: lists a temp file{where}"
    open_sessions = catalog_rows(
        home,
        "SELECT id, store_dir FROM sessions WHERE ended_at IS NULL AND device_serial = ?",
        (serial,),
    )
    state.open_sessions = len(open_sessions)

    if final:
        assert state.on_recorder == 0, f"{state.on_recorder} files left on the recorder{where}"
        assert state.catalogued == len(expected), f"not all catalogued{where}"
        assert not state.temps, f"temp files left after a completed offload: {state.temps}{where}"
        assert not state.orphans, f"{state.orphans} store files not catalogued{where}"
        assert not open_sessions, f"sessions left open: {open_sessions}{where}"
        sessions = catalog_rows(
            home,
            "SELECT s.store_dir FROM sessions s WHERE s.device_serial = ? AND EXISTS"
            " (SELECT 1 FROM recordings r WHERE r.session_id = s.id)",
            (serial,),
        )
        for s in sessions:
            sdir = store / str(s["store_dir"])
            assert (sdir / MANIFEST).is_file(), f"{sdir}: no manifest{where}"
            assert (sdir / SESSION_RECORD).is_file(), f"{sdir}: no session record{where}"
            # anyone can check a session with coreutils alone
            done = subprocess.run(
                ["sha256sum", "--quiet", "-c", MANIFEST], cwd=sdir, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{sdir}: sha256sum -c failed: {done.stdout}{where}"
    return state


def recdock_cmd(home: Path, config: Path, *args: str) -> list[str]:
    return [str(BIN / "recdock"), "--home", str(home), "--config", str(config), *args]


def hooked_cmd(point: str, home: Path, config: Path, *args: str) -> list[str]:
    """The CLI, run with a hook that SIGKILLs it at ``point``."""
    assert point in CRASH_POINTS
    return [
        sys.executable,
        "-m",
        "tests.crash_tools",
        point,
        "--",
        "--home",
        str(home),
        "--config",
        str(config),
        *args,
    ]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RECDOCK_CONFIG", None)
    env.pop("RECDOCK_HOME", None)
    return env


# -- the crash hook (runs inside the child process) ------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_hook(point: str, argv: list[str]) -> None:
    import agent.store as store
    from agent.store import MARKER

    if point in ("marker", "finalize"):
        # a small store file is written as a temp file, then linked to its name: die
        # before the link of the store's catalog marker ("marker": a new station's
        # first run), or of a session's record ("finalize": its manifest written, the
        # session not ended)
        name = MARKER if point == "marker" else SESSION_RECORD
        real_link = os.link

        def link(src: object, dst: object, *a: object, **kw: object) -> None:
            if os.path.basename(os.fsdecode(dst)) == name:  # type: ignore[arg-type]
                _die()
            real_link(src, dst, *a, **kw)  # type: ignore[arg-type]

        os.link = link  # type: ignore[assignment]
    elif point == "after-link":
        # file 1 linked into the store but not catalogued; file 2 half written (a temp).
        # The offload verifies and links one file (Store.finish, in its verifier thread)
        # while it writes the next (Store.write_temp): die in file 2's copy once file 1
        # is linked.
        real_write_temp = store.Store.write_temp
        real_finish = store.Store.finish
        calls = {"n": 0}
        linked = threading.Event()

        def finish(self, temp, buf, **kw):  # type: ignore[no-untyped-def]
            digest = real_finish(self, temp, buf, **kw)
            linked.set()
            return digest

        def die_once_linked(_n: int) -> None:
            linked.wait(timeout=30)
            _die()

        def write_temp(self, src_fd, dest, buf, **kw):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:
                kw["progress"] = die_once_linked
            return real_write_temp(self, src_fd, dest, buf, **kw)

        store.Store.write_temp = write_temp  # type: ignore[method-assign]
        store.Store.finish = finish  # type: ignore[method-assign]
    elif point in ("after-commit", "after-unlink"):
        # a file is unlinked only on the recorder (the store and the locks live under
        # --home): "after-commit" dies just before the first removal from the recorder
        # (its catalog row committed), "after-unlink" just after it (not yet recorded)
        home = os.path.abspath(argv[argv.index("--home") + 1])
        real_unlink = os.unlink

        def unlink(path, *a, **kw):  # type: ignore[no-untyped-def]
            on_recorder = not os.path.abspath(os.fsdecode(path)).startswith(home + os.sep)
            if on_recorder and point == "after-commit":
                _die()
            real_unlink(path, *a, **kw)
            if on_recorder:
                _die()

        os.unlink = unlink
    elif point == "purge-after-unlink":
        # a purge pass dies just after removing its first store recording: its batch marked
        # purged and listed, that file gone, the rest still there, nothing settled
        home = os.path.abspath(argv[argv.index("--home") + 1])
        real_unlink = os.unlink

        def purge_unlink(path, *a, **kw):  # type: ignore[no-untyped-def]
            real_unlink(path, *a, **kw)
            full = os.path.abspath(os.fsdecode(path))
            if full.startswith(os.path.join(home, "store") + os.sep) and "/media/" in full:
                _die()

        os.unlink = purge_unlink


def _main(argv: list[str]) -> None:
    point, sep, *rest = argv
    assert sep == "--", "usage: python -m tests.crash_tools POINT -- RECDOCK-ARGS"
    _install_hook(point, rest)
    from agent.cli.main import cli

    cli.main(args=rest, prog_name="recdock")


if __name__ == "__main__":
    _main(sys.argv[1:])
