"""Rule 1 (docs/architecture.md): a recording leaves a recorder only after its copy is proven.

Read top to bottom, this module is the whole rule. A file is removed from the recorder only when

1. the catalog can be trusted: its file exists, it belongs to this store (the offload bound the
   two before copying), and the file's row reads back with the hash it was committed with;
2. the store copy is there, a regular file with the catalogued size (re-hashed as well when the
   offload found it "already stored");
3. the file on the recorder still holds the bytes that were copied: it has the size and
   modification time it was copied with and, where its file system keeps a change time
   (agent/recorder/filesystem.py), the same inode and change time; elsewhere (FAT, exFAT,
   FUSE: a recorder can rewrite a recording in place and put its size and time back) it is
   read again, around the page cache, and its hash must be the copy's.

Each removal is announced in the catalog first (``removal_intent_at``), then the files are
unlinked, then the removals are recorded with their audit entries: three steps for a whole group,
whatever its size. A crash between the unlink and the record leaves the announcement, and the
next docking of the device records the removal (:meth:`Clearer.settle_announced`), so the audit
log misses none.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, now_utc, recordings
from agent.errors import RecorderError
from agent.offload.report import FileResult, OffloadReport, SourceStamp
from agent.recorder.filesystem import ChangeTimes
from agent.recorder.media import MediaFile, open_source
from agent.recorder.status import RecorderInfo
from agent.store import Store
from agent.store.hashing import hash_file, hash_range, new_hashers
from agent.store.io import set_direct

log = logging.getLogger(__name__)

#: A file to clear: on the recorder, its status when copied, its catalog row, its result.
Item = tuple[MediaFile, SourceStamp, dict[str, Any], FileResult]

CHANGED = "it changed since it was copied"
DIFFERS = (
    "its bytes on the recorder are not the bytes copied (it was rewritten in place, its size "
    "and time put back); the next docking copies it again"
)


class Clearer:
    """Removes verified, catalogued files from one recorder (never anything else)."""

    def __init__(
        self, catalog: Catalog, store: Store, buf: memoryview, read_ahead: memoryview
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.buf = buf
        self.read_ahead = read_ahead  # the second buffer of a re-read
        self.ctimes = ChangeTimes()

    # -- what may leave the recorder ---------------------------------------------------------

    def store_copy_ok(self, row: dict[str, Any], *, rehash: bool = False) -> bool:
        """The catalogued copy is in the store with its size (and, if asked, its hash)."""
        path = self.store.root / row["store_path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            log.error("catalogued file missing from the store: %s", path)
            return False
        if not (stat.S_ISREG(st.st_mode) and st.st_size == row["size"]):
            return False
        if rehash and hash_file(path, self.buf).sha256 != row["sha256"]:
            log.error("store copy does not match its catalog hash: %s", path)
            return False
        return True

    def refused(self, row: dict[str, Any]) -> str | None:
        """Why the catalog cannot be trusted to remove this source now, or None."""
        if not self.catalog.path.exists():
            return "the catalog file is missing"
        try:
            fresh = recordings.fingerprint(self.catalog, row["id"])
        except Exception as exc:  # noqa: BLE001 - any catalog failure means: do not delete
            log.exception("catalog unreadable while clearing a recorder")
            return f"the catalog is unreadable ({exc})"
        if fresh is None or fresh["sha256"] != row["sha256"]:
            return "its catalog row could not be read back"
        if not self.store_copy_ok(row):
            return "its store copy is missing or has the wrong size"
        return None

    def removable(self, source: Path, item: Item) -> bool:
        """May this file leave the recorder now? (catalog trusted, its bytes the copy's)"""
        m, stamp, row, result = item
        reason = self.refused(row) or self.source_differs(source, m, stamp, row)
        if reason:
            result.message = f"kept on the recorder: {reason}"
            return False
        return True

    def source_differs(
        self, source: Path, m: MediaFile, stamp: SourceStamp, row: dict[str, Any]
    ) -> str | None:
        """Why the file on the recorder may not hold the bytes copied, or None."""
        path = os.path.join(os.fsencode(source), m.relpath)
        try:
            now = os.lstat(path)
        except OSError as exc:
            return f"it cannot be found again ({exc.strerror})"
        if (
            not stat.S_ISREG(now.st_mode)
            or now.st_size != row["size"]
            or now.st_mtime_ns != stamp.mtime_ns
        ):
            return CHANGED
        if self.ctimes.kept(now, path):
            same = (now.st_dev, now.st_ino, now.st_ctime_ns) == (
                stamp.dev,
                stamp.ino,
                stamp.ctime_ns,
            )
            return None if same else CHANGED
        return self._read_again(source, m, row)

    def _read_again(self, source: Path, m: MediaFile, row: dict[str, Any]) -> str | None:
        """Hash the recorder's file as it is now (no page cache): its bytes, or why not."""
        try:
            fd = open_source(source, m)
        except (OSError, RecorderError) as exc:
            return f"it cannot be read again ({getattr(exc, 'strerror', None) or exc})"
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            set_direct(fd, True)
            hashers = new_hashers(False)
            size = hash_range(fd, [self.buf, self.read_ahead], hashers, 0, None)
        except OSError as exc:
            return f"it cannot be read again ({exc.strerror})"
        finally:
            os.close(fd)
        if size != row["size"] or hashers[0].hexdigest() != row["sha256"]:
            self._note_differs(m, row)
            return DIFFERS
        return None

    def _note_differs(self, m: MediaFile, row: dict[str, Any]) -> None:
        """The audit log keeps that this store copy is not what the recorder holds now."""
        log.warning("%s: %s", m.name, DIFFERS)
        with self.catalog.tx():
            audit.append(
                self.catalog,
                "file.differs_on_recorder",
                row["store_path"],
                {
                    "device_serial": row["device_serial"],
                    "source_path": row["source_path"],
                    "sha256": row["sha256"],
                },
            )

    # -- removing ----------------------------------------------------------------------------

    def remove(self, source: Path, items: list[Item], info: RecorderInfo) -> int:
        """Remove the files that may leave the recorder: announce, unlink, record."""
        ready = [it for it in items if self.removable(source, it)]
        if not ready:
            return 0
        ids = [row["id"] for _m, _t, row, _r in ready]
        with self.catalog.tx() as conn:
            recordings.announce_removals(conn, ids, now_utc())
        removed: list[tuple[str, dict[str, Any]]] = []
        try:
            for m, _mtime, row, result in ready:
                if self._unlink(source, m, result):
                    removed.append((m.name, row))
        finally:
            self._record(removed, info, ids)
        return len(removed)

    @staticmethod
    def _unlink(source: Path, m: MediaFile, result: FileResult) -> bool:
        try:
            os.unlink(os.path.join(os.fsencode(source), m.relpath))
        except OSError as exc:
            if exc.errno == errno.EROFS:
                result.message = "kept on the recorder: mounted read-only"
            else:
                result.message = f"kept on the recorder: cannot remove ({exc.strerror})"
            return False
        result.removed = True
        return True

    def _record(
        self,
        removed: list[tuple[str, dict[str, Any]]],
        info: RecorderInfo,
        announced: list[int],
        *,
        note: str | None = None,
    ) -> None:
        """The announcements cleared, and each removal recorded with its audit entry."""
        with self.catalog.tx() as conn:
            recordings.settle_removals(
                conn, announced, [row["id"] for _n, row in removed], now_utc()
            )
            for name, row in removed:
                data = {
                    "device_serial": info.serial,
                    "sha256": row["sha256"],
                    "store_path": row["store_path"],
                }
                if note:
                    data["note"] = note
                audit.append(self.catalog, "file.removed_from_recorder", name, data)

    def settle_announced(self, info: RecorderInfo, media: list[MediaFile]) -> None:
        """Record removals a dead process made but did not record (see :meth:`remove`)."""
        rows = recordings.announced_removals(self.catalog, info.serial)
        if not rows:
            return
        present = {m.name for m in media}
        gone = [(r["source_path"], r) for r in rows if r["source_path"] not in present]
        self._record(
            gone,
            info,
            [r["id"] for r in rows],
            note="removed before an interruption; recorded at the next docking",
        )

    # -- the station's clearing, after a read-only offload ---------------------------------

    def clear(self, source: Path, report: OffloadReport) -> int:
        """Remove from the recorder every file ``report`` verified in the store.

        For the station, which offloads from a read-only mount (the source kept) and clears
        after remounting read-write. The same checks as during an offload apply to every
        file. Returns how many files were removed.
        """
        items: list[Item] = []
        for f in report.files:
            if f.status not in ("stored", "already") or f.removed or not f.store_path:
                continue
            row = recordings.by_store_path(self.catalog, f.store_path)
            if row is None:
                f.message = "kept on the recorder: its catalog row could not be read back"
                continue
            if f.stamp is None:
                f.message = "kept on the recorder: its state when copied is not known"
                continue
            items.append((MediaFile(f.relpath, f.size, f.stamp.mtime_ns), f.stamp, row, f))
        removed = self.remove(source, items, report.info)
        if removed:
            report.source_kept_reason = None
        return removed
