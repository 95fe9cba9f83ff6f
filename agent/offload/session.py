"""An offload session: its lock, its row and audit entries, and its end (manifest and record).

A session's lock is an ``flock`` on ``run/locks/<session>.lock``: a dead process's locks vanish
with it, so a session without ``ended_at`` whose lock nobody holds was interrupted
(agent/offload/recovery.py finishes it).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, now_utc, recordings, sessions
from agent.store import Store


class SessionLock:
    """An flock held while a session runs; a dead process's locks vanish with it."""

    def __init__(self, home: Path, session_id: str, *, blocking: bool = True):
        self.path = home / "run" / "locks" / f"{session_id}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(self.fd)
            raise

    @classmethod
    def try_acquire(cls, home: Path, session_id: str) -> SessionLock | None:
        """The session's lock, or None when a live process (or a recovering one) holds it."""
        try:
            return cls(home, session_id, blocking=False)
        except BlockingIOError:
            return None

    @staticmethod
    def held(home: Path, session_id: str) -> bool:
        """Whether a live process holds the session's lock now (for `recdock verify`: it
        takes nothing and removes nothing; its shared lock lasts only the test)."""
        path = home / "run" / "locks" / f"{session_id}.lock"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def new_session_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def open_session(
    catalog: Catalog,
    row: dict[str, Any],
    start_entry: dict[str, Any],
) -> None:
    """The session's row and its ``session.start`` entry, in one transaction."""
    with catalog.tx() as conn:
        sessions.insert(conn, row)
        audit.append(catalog, "session.start", row["id"], start_entry)


def finalize_session(catalog: Catalog, store: Store, session_id: str, state: str) -> None:
    """Write the session's manifest and record (once), then mark it ended."""
    sess = sessions.get(catalog, session_id)
    if sess is None:
        return
    recs = recordings.of_session(catalog, session_id)
    ended = now_utc()
    if recs:
        prefix = sess["store_dir"] + "/"
        manifest = [(r["sha256"], r["store_path"][len(prefix) :]) for r in recs]
        store.write_session_files(
            store.root / sess["store_dir"], manifest, session_record(sess, recs, ended, state)
        )
    with catalog.tx() as conn:
        if not sessions.end(conn, session_id, state, ended):
            return  # already ended: one session.end entry per session
        audit.append(
            catalog,
            "session.end",
            session_id,
            {"state": state, "files_stored": len(recs), "device_serial": sess["device_serial"]},
        )


def session_record(
    sess: dict[str, Any], recs: list[dict[str, Any]], ended: str, state: str
) -> dict[str, Any]:
    """``session.json``: who, what and when, readable without recdock."""
    prefix = sess["store_dir"] + "/"
    return {
        "session_id": sess["id"],
        "station_id": sess["station_id"],
        "device_serial": sess["device_serial"],
        "officer_id": sess["officer_id"],
        "unit": sess["unit"],
        "profile": sess["profile"],
        "device": json.loads(sess["device_info"] or "{}"),
        "started_at": sess["started_at"],
        "ended_at": ended,
        "state": state,
        "clock_offset_s": sess["clock_offset_s"],
        "files": [
            {
                "path": r["store_path"][len(prefix) :],
                "source_path": r["source_path"],
                "sha256": r["sha256"],
                "size": r["size"],
                "recorded_start": r["recorded_start"],
                "recorded_end": r["recorded_end"],
                "late": bool(r["late"]),
            }
            for r in recs
        ],
    }
