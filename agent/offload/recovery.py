"""After a crash: finish the sessions a dead process left, adopting its verified copies.

A session whose process died (``ended_at`` empty, its lock not held) is recovered by the next
run: temp files are removed; a complete, verified copy without a catalog row (the process died
between the link and the commit) is an *orphan*: it is hashed from disk and catalogued as
adopted (audit ``file.recovered``), under the recorder's path decoded from its store name (or,
for a name cut to fit, read from its ``user.recdock.source`` extended attribute). The source of
an adopted copy is still on the recorder (removal only follows a commit): the next offload finds
it "already stored" and clears it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, now_utc, recordings, sessions
from agent.offload.session import SessionLock, finalize_session
from agent.recorder.names import decode_relpath, display
from agent.store import MEDIA_DIR, TEMP_PREFIX, Store, source_name_of
from agent.store.hashing import hash_file

log = logging.getLogger(__name__)


def recover_interrupted(catalog: Catalog, store: Store, home: Path, buf: memoryview) -> int:
    """Finish sessions a dead process left running; returns how many were recovered."""
    recovered = 0
    for sess in sessions.unfinished(catalog):
        sid = sess["id"]
        # holding the session's lock while recovering it: two bays starting at once after
        # a power cut must not both clean up and adopt the same session
        lock = SessionLock.try_acquire(home, sid)
        if lock is None:
            continue  # a live process owns it, or another one is recovering it
        try:
            if not sessions.is_open(catalog, sid):
                continue  # recovered meanwhile by another process
            session_dir = store.root / sess["store_dir"]
            removed = store.remove_temp_files(session_dir)
            adopted = _adopt_orphans(catalog, store, sess, session_dir, buf)
            log.warning(
                "session %s (%s) was interrupted: %d temp files removed, "
                "%d verified copies adopted",
                sid,
                sess["device_serial"],
                removed,
                adopted,
            )
            finalize_session(catalog, store, sid, "interrupted")
            recovered += 1
        finally:
            lock.release()
    return recovered


def _adopt_orphans(
    catalog: Catalog, store: Store, sess: dict[str, Any], session_dir: Path, buf: memoryview
) -> int:
    media_root = session_dir / MEDIA_DIR
    if not media_root.is_dir():
        return 0
    known = {r["store_path"] for r in recordings.of_session(catalog, sess["id"])}
    adopted = 0
    for dirpath, _dirs, files in os.walk(media_root):
        for name in sorted(files):
            if name.startswith(TEMP_PREFIX):
                continue
            full = Path(dirpath) / name
            if full.relative_to(store.root).as_posix() in known:
                continue
            _adopt(catalog, store, sess, full, media_root, buf)
            adopted += 1
    return adopted


def _adopt(
    catalog: Catalog,
    store: Store,
    sess: dict[str, Any],
    full: Path,
    media_root: Path,
    buf: memoryview,
) -> None:
    """Catalogue one verified copy that has no row: hashed from disk, audited as recovered."""
    rel_store = full.relative_to(store.root).as_posix()
    # the recorder's path: kept on the file when its store name was cut
    raw = source_name_of(full) or decode_relpath(full.relative_to(media_root).as_posix())
    digest = hash_file(full, buf, sm3=store.sm3)
    st = full.stat()
    with catalog.tx() as conn:
        entry = audit.append(
            catalog,
            "file.recovered",
            rel_store,
            {
                "session_id": sess["id"],
                "device_serial": sess["device_serial"],
                "source_path": display(raw),
                "sha256": digest.sha256,
                "size": digest.size,
                "note": "verified copy found after an interrupted offload; catalogued",
            },
        )
        recordings.insert(
            conn,
            {
                "session_id": sess["id"],
                "station_id": sess["station_id"],
                "device_serial": sess["device_serial"],
                "officer_id": sess["officer_id"],
                "unit": sess["unit"],
                "profile": sess["profile"],
                "source_path": display(raw),
                "source_size": digest.size,
                "source_mtime": st.st_mtime,
                "store_path": rel_store,
                "size": digest.size,
                "sha256": digest.sha256,
                "sm3": digest.sm3,
                "offloaded_at": now_utc(),
                "adopted": 1,
                "audit_seq": entry.seq,
            },
        )
        sessions.add_stored(conn, sess["id"], 1, digest.size)
