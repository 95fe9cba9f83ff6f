"""Offload one mounted recorder into the station store.

The way a file takes: open (no symlinks, no FIFOs) → one read pass into a reused buffer, hashed
and written → fsync → read back from disk and matched → source unchanged? → linked into the
store read-only (agent/offload/copy.py) → catalog row + audit entry + outbox message, one
transaction (a few files per transaction, each file already durable) → only then, unless the
source is kept, the file is removed from the recorder (agent/offload/clear.py: rule 1).

An interrupted offload (SIGKILL, power cut, recorder yanked) leaves at most temp files, which
the next run removes, and complete verified copies without a catalog row ("orphans"), which the
next run adopts (agent/offload/recovery.py): nothing in the store is ever unaccounted for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, canonical, holds, now_utc, recordings, sessions
from agent.config import Config
from agent.errors import (
    CatalogError,
    RecdockError,
    RecorderDamagedError,
    RecorderError,
    RecorderGoneError,
    StoreError,
    StoreFullError,
)
from agent.offload.clear import Clearer
from agent.offload.copy import Copier, Pending
from agent.offload.faults import identity_found, left_found
from agent.offload.recovery import recover_interrupted
from agent.offload.report import REPORTED, FileResult, OffloadReport, Stopped, about
from agent.offload.session import SessionLock, finalize_session, new_session_id, open_session
from agent.recorder.identity import add_conflict, agree
from agent.recorder.media import MediaFile, list_media, marked_important
from agent.recorder.names import safe_label
from agent.recorder.profiles import Profile
from agent.recorder.status import RecorderInfo, read_info
from agent.store import Store
from agent.store.io import SourceReadError, aligned_buffer, fsync_dir

log = logging.getLogger(__name__)

#: Errors that stop an offload (the rest fail one file, which stays on the recorder).
STOPPING = (RecorderGoneError, StoreError, Stopped, CatalogError)


@dataclass
class _Run:
    """One offload's moving parts: copies being verified, verified copies not yet committed."""

    source: Path
    profile: Profile
    info: RecorderInfo
    report: OffloadReport
    store_dir: str
    group: list[Pending] = field(default_factory=list)
    errors: list[FileResult] = field(default_factory=list)
    inflight: list[Pending] = field(default_factory=list)  # being verified
    last_commit: float = field(default_factory=time.monotonic)


class Offloader:
    def __init__(
        self,
        config: Config,
        home: Path,
        catalog: Catalog,
        *,
        keep_source: bool | None = None,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.config = config
        self.home = home
        self.catalog = catalog
        self.store = Store(
            home / "store", reserve_bytes=config.store.reserve_bytes, sm3=config.store.sm3
        )
        self.keep_source = config.offload.keep_source if keep_source is None else keep_source
        self.stop = stop or threading.Event()
        self.clock = clock
        self.buf = aligned_buffer(config.store.buffer_bytes)
        self.clearer = Clearer(
            catalog, self.store, self.buf, aligned_buffer(config.store.buffer_bytes)
        )
        self.copier = Copier(
            config,
            catalog,
            self.store,
            self.clearer,
            stop=self.stop,
            clock=clock,
            progress=progress,
        )

    # -- entry point --------------------------------------------------------------------

    def run(
        self,
        source: Path,
        profile: Profile,
        *,
        usb_serial: str | None = None,
        serial: str | None = None,
        media: list[MediaFile] | None = None,
        session_extra: dict[str, Any] | None = None,
        identity_check: Callable[[str], str | None] | None = None,
    ) -> OffloadReport:
        """Offload ``source``; ``identity_check`` (the station's) says why the serial the
        recorder is filed under is in conflict with another docked recorder, or None."""
        self.store.bind(self.catalog.catalog_id, self.catalog.is_empty())
        recover_interrupted(self.catalog, self.store, self.home, self.buf)
        problems: list[str] = []
        if media is None:
            media, found = list_media(source, profile)
            problems = [str(p) for p in found]
        info = read_info(source, profile, usb_serial=serial or usb_serial, media=media)
        # the device wrote its clock when it was docked: measure the drift now, before
        # a long offload makes the station clock move on (it is stored with the session)
        info_read_at = self.clock()
        drift = (info.clock - info_read_at).total_seconds() if info.clock else None
        agree(info, serial or usb_serial, self.config.registered())  # rule 8
        if identity_check is not None and (clash := identity_check(info.serial)):
            add_conflict(info, clash)
        self.clearer.settle_announced(info, media)
        started = self.clock()
        sid = new_session_id(started)
        store_dir = f"{started:%Y/%m/%d}/{safe_label(info.serial)}/{sid}"
        report = OffloadReport(sid, info.serial, info, problems=problems, info_read_at=info_read_at)
        run = _Run(source, profile, info, report, store_dir)
        lock = SessionLock(self.home, sid)
        try:
            _open_session(
                self.catalog, self.config.station_id, run, media, started, drift, session_extra
            )
            identity_found(self.catalog, report)
            self.copier.start()
            self._offload_files(run, media)
        except BaseException:
            # a commit failed (the catalog), or worse: copies may be linked into the store
            # without their rows. The session stays open, so the next run's recovery finds
            # and adopts them (an ended session is not searched for orphans).
            self.copier.close()
            lock.release()
            raise
        try:
            self.copier.close()
            self._finish(report)
        finally:
            lock.release()
        return report

    # -- the per-file loop --------------------------------------------------------------

    def _offload_files(self, run: _Run, media: list[MediaFile]) -> None:
        try:
            for m in media:
                if self.stop.is_set():
                    raise Stopped(
                        "stopped on request (SIGTERM); files not yet offloaded stay on the "
                        "recorder and the next offload resumes"
                    )
                self._one(run, m)
                self._settle(run, keep=1)  # one copy verifies while the next is copied
                due = len(run.group) >= self.config.store.commit_every_files or (
                    run.group
                    and time.monotonic() - run.last_commit >= self.config.store.commit_every_seconds
                )
                if due or len(run.errors) >= 64:
                    self._settle(run, keep=0)
                    self._commit_run(run)
        except STOPPING as exc:
            _stopped_by(run.report, exc)
        finally:
            # copies already being verified are linked into the store: wait for them and
            # catalogue them too, whatever stopped the loop
            while run.inflight:
                try:
                    self._settle(run, keep=0)
                except StoreError as exc:
                    if run.report.error is None:
                        run.report.error, run.report.exception = str(exc), exc
            self._commit_run(run)
            left_found(self.catalog, run.report, run.profile)

    def _one(self, run: _Run, m: MediaFile) -> None:
        """Copy one file: queued for verification, or failed (it stays on the recorder)."""
        result = FileResult(m.name, "failed", size=m.size, relpath=m.relpath)
        run.report.files.append(result)
        if m.too_deep:
            limit, name = run.profile.media.max_depth, run.profile.name
            result.message = (
                f"in folders nested deeper than {limit} (media.max_depth of profile {name}): "
                "not offloaded, it stays on the recorder. Move it up on the recorder, or "
                "raise media.max_depth in the profile"
            )
            run.errors.append(result)
            run.report.too_deep.append(m.name)
            return
        try:
            pending = self.copier.copy(
                run.source,
                run.profile,
                run.info,
                m,
                run.store_dir,
                result,
                clear=not self.keep_source,
            )
            if pending is not None:
                run.inflight.append(pending)
        except (RecorderGoneError, StoreFullError, Stopped, CatalogError):
            raise
        except StoreError as exc:
            # the store disk itself failing is a station fault: stop
            result.message = about(m.name, str(exc))
            raise
        except RecorderError as exc:
            result.message = about(m.name, str(exc))
            run.errors.append(result)
            if isinstance(exc, (RecorderDamagedError, SourceReadError)):
                run.report.damaged.append(m.name)
            log.warning("%s: %s", run.info.serial, exc, extra=REPORTED)

    def _settle(self, run: _Run, keep: int) -> None:
        """Wait for verifications until at most ``keep`` are in flight."""
        while len(run.inflight) > keep:
            p = run.inflight.pop(0)
            try:
                assert p.verified is not None
                p.verified.result()
            except StoreError as exc:
                p.result.message = about(p.media.name, str(exc))
                raise
            run.group.append(p)
            run.report.bytes_copied += p.media.size

    # -- commit and clear ---------------------------------------------------------------

    def _commit_run(self, run: _Run) -> None:
        # the group is forgotten only once committed: a failed commit is tried again at the
        # end of the loop (and fails the offload), so its copies stay in an open session
        self._commit(run.group, run.errors, run.report, run.source, run.info, run.profile)
        run.group, run.errors, run.last_commit = [], [], time.monotonic()

    def _commit(
        self,
        group: list[Pending],
        errors: list[FileResult],
        report: OffloadReport,
        source: Path,
        info: RecorderInfo,
        profile: Profile,
    ) -> None:
        """Catalogue a group of verified copies (and the failures) in one transaction; then,
        unless the source is kept, clear them from the recorder (rule 1)."""
        if not group and not errors:
            return
        # the copies' directory entries are durable before their rows are (rule 1)
        for folder in sorted({(self.store.root / p.store_path).parent for p in group}):
            try:
                fsync_dir(folder)
            except OSError as exc:
                raise StoreError(f"{folder}: cannot sync the store folder: {exc.strerror}") from exc
        at = now_utc()
        with self.catalog.tx() as conn:
            for p in group:
                self._catalogue(conn, p, report.session_id, info, profile, at)
                p.result.status = "stored"
            for r in errors:
                audit.append(
                    self.catalog,
                    "file.error",
                    r.source_path,
                    {
                        "session_id": report.session_id,
                        "device_serial": info.serial,
                        "error": r.message,
                    },
                )
            sessions.add_stored(
                conn, report.session_id, len(group), sum(p.digest.size for p in group)
            )
        if not self.keep_source:
            # each file leaves the recorder only after its row is committed
            items = []
            for p in group:
                row = recordings.by_store_path(self.catalog, p.store_path)
                if row:
                    items.append((p.media, p.stamp, row, p.result))
            self.clearer.remove(source, items, info)
        elif report.source_kept_reason is None:
            report.source_kept_reason = "keep-source is set"

    def _catalogue(
        self, conn: Any, p: Pending, session_id: str, info: RecorderInfo, profile: Profile, at: str
    ) -> None:
        """One verified copy: its ``file.stored`` entry and its row."""
        entry = audit.append(
            self.catalog,
            "file.stored",
            p.store_path,
            {
                "session_id": session_id,
                "device_serial": info.serial,
                "source_path": p.source_path,
                "sha256": p.digest.sha256,
                "sm3": p.digest.sm3,
                "size": p.digest.size,
                "late": p.late,
                # the centre's compliance report counts from these (docs/report.md)
                "age_hours": p.age_hours,
                "recorded_start": p.start.isoformat() if p.start else None,
                "recorded_end": p.end.isoformat() if p.end else None,
            },
        )
        rec_id = recordings.insert(
            conn,
            _recording_row(p, session_id, self.config.station_id, info, profile, at, entry.seq),
        )
        if marked_important(p.media.relpath, profile):
            holds.place_in(
                self.catalog,
                {
                    "scope": "recording",
                    "recording_id": rec_id,
                    "reason": "marked_on_recorder",
                    "reason_text": f"{profile.name}: media.important_globs",
                    "origin": "recorder",
                    "placed_by": info.serial,
                },
            )

    def clear(self, source: Path, report: OffloadReport) -> int:
        """Remove from the recorder every file ``report`` verified in the store (rule 1).

        For the station, which offloads from a read-only mount (keep_source) and clears after
        remounting read-write. Returns how many files were removed.
        """
        return self.clearer.clear(source, report)

    # -- session end --------------------------------------------------------------------

    def _finish(self, report: OffloadReport) -> None:
        state = "done" if report.error is None else "interrupted"
        try:
            finalize_session(self.catalog, self.store, report.session_id, state)
        except RecdockError as exc:
            report.error = report.error or str(exc)
            log.error(
                "%s: session %s not finalised: %s", report.device_serial, report.session_id, exc
            )


def _open_session(
    catalog: Catalog,
    station_id: str,
    run: _Run,
    media: list[MediaFile],
    started: datetime,
    drift: float | None,
    session_extra: dict[str, Any] | None,
) -> None:
    info, problems = run.info, run.report.problems
    row = {
        "id": run.report.session_id,
        "station_id": station_id,
        "device_serial": info.serial,
        "officer_id": info.officer,
        "unit": info.unit,
        "profile": run.profile.name,
        "source": str(run.source),
        "store_dir": run.store_dir,
        "started_at": started.isoformat(),
        "device_info": canonical({**info.as_dict(), **(session_extra or {})}),
        "files_seen": len(media),
        "problems": len(problems),
        "clock_offset_s": round(drift, 3) if drift is not None else None,
    }
    start_entry = {
        "device_serial": info.serial,
        "officer_id": info.officer,
        "unit": info.unit,
        "profile": run.profile.name,
        "files_seen": len(media),
        "problems": problems,
    }
    open_session(catalog, row, start_entry)


def _stopped_by(report: OffloadReport, exc: Exception) -> None:
    report.error = str(exc)
    report.exception = exc
    for f in report.files:
        if f.status == "failed" and not f.message:
            # the error line below already names the file in flight
            named = str(exc).startswith(f.source_path + ":")
            f.message = "not offloaded" if named else "not offloaded: " + str(exc)
    log.error("%s: offload stopped: %s", report.device_serial, exc, extra=REPORTED)


def _recording_row(
    p: Pending,
    session_id: str,
    station_id: str,
    info: RecorderInfo,
    profile: Profile,
    at: str,
    audit_seq: int,
) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "station_id": station_id,
        "device_serial": info.serial,
        "officer_id": info.officer,
        "unit": info.unit,
        "profile": profile.name,
        "source_path": p.source_path,
        "source_size": p.media.size,
        "source_mtime": p.media.mtime_ns / 1e9,
        "store_path": p.store_path,
        "size": p.digest.size,
        "sha256": p.digest.sha256,
        "sm3": p.digest.sm3,
        "recorded_start": p.start.isoformat() if p.start else None,
        "recorded_end": p.end.isoformat() if p.end else None,
        "offloaded_at": at,
        "age_hours": p.age_hours,
        "late": 1 if p.late else 0,
        "audit_seq": audit_seq,
    }
