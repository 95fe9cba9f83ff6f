"""The store, a session at a time: every file re-hashed from disk, the session's manifest and
its write-once record (``session.json``) against the catalog, and every file in its folder
accounted for. Memory is one session's file list, whatever the store's size.

A file in the store the catalog does not know was added, with two exceptions that are notes:
temp files of an interrupted copy (never media; the next offload removes them), and, in the
folder of a session that never ended, complete verified copies its process linked before it
died and could catalogue them: recoverable copies of an interrupted offload, which the next
offload at this station adopts (agent/offload/recovery.py: hashed from disk and catalogued,
audit entry ``file.recovered``). While the session's process still runs, they are copies
being offloaded now.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, crosscheck, recordings, sessions
from agent.offload.session import SessionLock
from agent.store import (
    MANIFEST,
    MARKER,
    MEDIA_DIR,
    PURGED_PREFIX,
    SESSION_RECORD,
    TEMP_PREFIX,
    Store,
)
from agent.store.hashing import hash_file
from agent.store.purged import purged_listed
from agent.verify.report import Bar, VerifyReport


class StoreCheck:
    """Re-hashes the store's files and accounts for every file in it."""

    def __init__(
        self, catalog: Catalog, store: Store, home: Path, buf: memoryview, report: VerifyReport
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.home = home
        self.buf = buf
        self.report = report
        self.bar: Bar | None = None

    # -- one session ------------------------------------------------------------------------

    def session(self, sess: dict[str, Any]) -> None:
        known: dict[str, str] = {}
        purged: dict[str, str] = {}
        for row in crosscheck.recordings_of(self.catalog, sess["id"]):
            self.file(row)
            known[row["store_path"]] = row["sha256"]
            if row.get("purged_at") and not row.get("purge_intent_at"):
                purged[row["store_path"]] = row["sha256"]
        self._manifest(sess, known)
        self._record(sess, known)
        self._purged_lists(sess, purged)
        self._folder(sess, known)

    def file(self, row: dict[str, Any]) -> None:
        """The store copy is there, a read-only regular file with the catalogued hash; or it
        was purged by retention, and is absent as it should be."""
        rel = row["store_path"]
        path = self.store.root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if row.get("purged_at"):
                self.report.files_purged += 1
            else:
                self.report.problem(f"{rel}: missing from the store (removed)")
            return
        if row.get("purged_at"):
            self.report.note(
                f"{rel}: purged at {row['purged_at']} and still in the store (its pass was "
                "interrupted; the next purge pass removes it)"
            )
        if not stat.S_ISREG(st.st_mode):
            self.report.problem(f"{rel}: is no longer a regular file")
            return
        if st.st_mode & 0o222:
            self.report.problem(f"{rel}: is writable; store files must be read-only")
        try:
            digest = hash_file(path, self.buf, drop_cache=True)
        except OSError as exc:
            self.report.problem(f"{rel}: cannot be read from the store ({exc.strerror})")
            return
        self.report.files_checked += 1
        self.report.bytes_checked += digest.size
        if self.bar is not None:
            self.bar.update(digest.size)
        if digest.sha256 != row["sha256"] or digest.size != row["size"]:
            self.report.problem(
                f"{rel}: changed in the store (sha256 {digest.sha256[:12]}…, catalogued "
                f"{row['sha256'][:12]}…)"
            )

    def _manifest(self, sess: dict[str, Any], known: dict[str, str]) -> None:
        """An ended session's manifest lists exactly its catalogued files."""
        sdir = sess["store_dir"]
        manifest = self.store.root / sdir / MANIFEST
        if not manifest.exists():
            if known and sess["ended_at"] is not None:
                self.report.problem(f"{sdir}/{MANIFEST}: missing from the store (removed)")
            elif known:
                self.report.note(f"{sdir}: no manifest yet (session still running or interrupted)")
            return
        listed = {}
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            sha, _, name = line.partition("  ")
            listed[f"{sdir}/{name}"] = sha
        if listed != known:
            extra = sorted(set(listed) - set(known))
            missing = sorted(set(known) - set(listed))
            changed = sorted(k for k in set(listed) & set(known) if listed[k] != known[k])
            self.report.problem(
                f"{sdir}/{MANIFEST}: does not match the catalog "
                f"(extra {extra}, missing {missing}, changed {changed})"
            )

    def _purged_lists(self, sess: dict[str, Any], purged: dict[str, str]) -> None:
        """The session's purge lists name exactly its purged files, with their hashes."""
        sdir = sess["store_dir"]
        listed = {f"{sdir}/{k}": v for k, v in purged_listed(self.store.root, sdir).items()}
        if listed.keys() - purged.keys() - self._unsettled(sess):
            extra = sorted(listed.keys() - purged.keys() - self._unsettled(sess))
            self.report.problem(f"{sdir}: purge lists name files the catalog keeps: {extra}")
        unlisted = sorted(k for k in purged if listed.get(k) != purged[k])
        if unlisted:
            self.report.problem(f"{sdir}: purged files missing from its purge lists: {unlisted}")

    def _unsettled(self, sess: dict[str, Any]) -> set[str]:
        return {
            r["store_path"]
            for r in crosscheck.recordings_of(self.catalog, sess["id"])
            if r.get("purge_intent_at")
        }

    def _record(self, sess: dict[str, Any], known: dict[str, str]) -> None:
        """The write-once session record names this session and exactly its files."""
        sdir = sess["store_dir"]
        path = self.store.root / sdir / SESSION_RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            files = {f"{sdir}/{f['path']}": f["sha256"] for f in record["files"]}
        except FileNotFoundError:
            if known and sess["ended_at"] is not None:
                self.report.problem(f"{sdir}/{SESSION_RECORD}: missing from the store (removed)")
            return
        except (ValueError, KeyError, TypeError) as exc:
            self.report.problem(f"{sdir}/{SESSION_RECORD}: not a session record ({exc})")
            return
        if record.get("session_id") != sess["id"]:
            self.report.problem(
                f"{sdir}/{SESSION_RECORD}: records session {record.get('session_id')}, "
                f"the catalog keeps session {sess['id']} here"
            )
        if files != known:
            extra = sorted(set(files) - set(known))
            missing = sorted(set(known) - set(files))
            changed = sorted(k for k in set(files) & set(known) if files[k] != known[k])
            self.report.problem(
                f"{sdir}/{SESSION_RECORD}: the session's record does not match the catalog "
                f"(extra {extra}, missing {missing}, changed {changed})"
            )

    def _folder(self, sess: dict[str, Any], known: dict[str, str]) -> None:
        """Every file in the session's folder is catalogued, or a note says what it is."""
        sdir = sess["store_dir"]
        root = self.store.root / sdir
        own = {f"{sdir}/{MANIFEST}", f"{sdir}/{SESSION_RECORD}"}
        running: bool | None = None  # asked once, when needed
        for rel, name in _files_under(self.store.root, root):
            if rel in known or rel in own:
                continue
            if rel.startswith(f"{sdir}/{PURGED_PREFIX}") and "/" not in rel[len(sdir) + 1 :]:
                continue  # a purge list (checked above)
            if name.startswith(TEMP_PREFIX):
                self.report.note(f"{rel}: temp file of an interrupted copy (not media)")
            elif sess["ended_at"] is None and rel.startswith(f"{sdir}/{MEDIA_DIR}/"):
                if running is None:
                    running = SessionLock.held(self.home, sess["id"])
                self.report.note(_uncatalogued(rel, sess["id"], running))
            else:
                self.report.problem(f"{rel}: in the store but not in the catalog (added)")

    # -- what lies outside every session's folder -----------------------------------------

    def outside(self) -> None:
        """Files outside every session folder (the marker aside) were added; a folder that is
        no session's is walked whole (a recording whose session row is gone is still
        re-hashed)."""
        if not self.store.root.exists():
            return
        self._outside(self.store.root)

    def _outside(self, folder: Path) -> None:
        with os.scandir(folder) as entries:
            items = sorted(entries, key=lambda e: e.name)
        for entry in items:
            rel = Path(entry.path).relative_to(self.store.root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                if not self._is_session_folder(rel):
                    self._outside(Path(entry.path))
            elif rel != MARKER:
                self._loose(rel, entry.name)

    def _is_session_folder(self, rel: str) -> bool:
        sess = sessions.get(self.catalog, rel.rpartition("/")[2])
        return sess is not None and sess["store_dir"] == rel

    def _loose(self, rel: str, name: str) -> None:
        if name.startswith(TEMP_PREFIX):
            self.report.note(f"{rel}: temp file of an interrupted copy (not media)")
            return
        row = recordings.by_store_path(self.catalog, rel)
        if row is not None:
            self.file(row)  # its session row is gone: the cross-check names that
        else:
            self.report.problem(f"{rel}: in the store but not in the catalog (added)")


def _uncatalogued(rel: str, session_id: str, running: bool) -> str:
    if running:
        return (
            f"{rel}: being offloaded now (session {session_id} is running): catalogued when "
            "its group commits"
        )
    return (
        f"{rel}: recoverable copy of interrupted session {session_id} (its process stopped "
        "before cataloguing it; not an addition): the next offload at this station (a docking "
        "or `recdock offload`) adopts it, hashed from disk (audit entry file.recovered)"
    )


def _files_under(store_root: Path, folder: Path) -> list[tuple[str, str]]:
    """Every file below ``folder``: its store path and its name (sorted, symlinks not
    followed)."""
    found = []
    if not folder.exists():
        return found
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]  # not walked
        for name in sorted(files + links):
            found.append((Path(dirpath, name).relative_to(store_root).as_posix(), name))
    return found
