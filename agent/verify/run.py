"""One check, from the audit chain to the last file, and where an interrupted one resumes.

In order: the audit chain, walked whole, and the head kept from earlier checks
(agent/verify/chain.py); the store's marker; in one read snapshot of the catalog, the audit
log against the catalog's columns (agent/verify/crosscheck.py); then the store, a session at
a time in the order they were opened, and what lies outside every session's folder
(agent/verify/store.py). The check's own entry closes the audit log, and becomes the head
kept for the next check.

A full check keeps its position (the last session done), what it found and its counts in
``<home>/run/verify-full.db`` every few seconds; ``resume=True`` continues an interrupted one
from there: the chain and the cross-checks run again (they are the cheap part), sessions
already done are not re-hashed. A partial check keeps its scratch apart
(``verify-part.db``) and never disturbs a full check waiting to be resumed. One check runs
at a time per home (``run/verify.lock``).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.catalog import Catalog, audit, crosscheck, now_utc
from agent.catalog.audit import AuditEntry
from agent.errors import EXIT_USAGE, RecdockError
from agent.store import MARKER, Store
from agent.verify.chain import check_chain, write_head
from agent.verify.crosscheck import cross_check
from agent.verify.report import Progress, Scope, VerifyReport, no_progress
from agent.verify.store import StoreCheck

SAVE_EVERY_S = 2.0
#: The position of the walk outside every session's folder: after the last session.
OUTSIDE = 2**62


class VerifyBusyError(RecdockError):
    """Another check is running on this home."""


class NothingToResumeError(RecdockError):
    """``--resume`` without an interrupted full check of this catalog."""

    exit_code = EXIT_USAGE


@dataclass
class _Where:
    """Which phase the check is in, and where: what each finding is filed under."""

    phase: str = "chain"
    pos: int = 0


def verify(
    catalog: Catalog,
    store: Store,
    *,
    buffer_bytes: int = 4 * 1024 * 1024,
    scope: Scope | None = None,
    resume: bool = False,
    on_finding: Callable[[str, str], None] | None = None,
    progress: Progress = no_progress,
) -> VerifyReport:
    """Check the store and the audit log (rule 2, docs/architecture.md); every problem named."""
    scope = scope or Scope()
    home = catalog.path.parent
    run_dir = home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = run_dir / (
        "verify-full.db" if not scope.partial and not scope.chain_only else "verify-part.db"
    )
    report = VerifyReport(scope=scope.describe(), on_finding=on_finding, state_path=state)
    where = _Where()
    with _one_at_a_time(run_dir / "verify.lock"):
        if not resume:  # a new check starts from a new scratch database
            for suffix in ("", "-wal", "-shm"):
                Path(f"{state}{suffix}").unlink(missing_ok=True)
        crosscheck.attach(catalog, state)
        try:
            report.record = lambda level, text: crosscheck.add_finding(
                catalog, where.phase, where.pos, level, text
            )
            position = _begin(catalog, report, scope, resume)
            cuts = check_chain(catalog, home, report, progress)
            if not scope.chain_only:
                where.phase = "cross"
                _check_marker(catalog, store, report)
                with crosscheck.snapshot(catalog):
                    if scope.partial:
                        crosscheck.choose_sessions(
                            catalog,
                            session=scope.session,
                            device=scope.device,
                            since=scope.since,
                            until=scope.until,
                        )
                    cross_check(catalog, report, scope.partial)
                where.phase = "store"
                _store(catalog, store, report, scope, where, position, buffer_bytes, progress)
            crosscheck.set_state(catalog, status="finished")
        finally:
            report.record = None
            crosscheck.detach(catalog)
        write_head(home, catalog, _close_the_log(catalog, report), cuts)
    return report


@contextmanager
def _one_at_a_time(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VerifyBusyError(
                f"another recdock verify is running on this home ({path} is locked); "
                "wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def _begin(catalog: Catalog, report: VerifyReport, scope: Scope, resume: bool) -> int:
    """A new check, or the interrupted full check resumed: the session rowid done last."""
    if not resume:
        crosscheck.clear_run(catalog)
        crosscheck.set_state(
            catalog,
            catalog_id=catalog.catalog_id,
            scope=scope.describe(),
            status="running",
            started_at=now_utc(),
            position=0,
            files=0,
            bytes=0,
        )
        return 0
    state = crosscheck.get_state(catalog)
    if scope.partial or scope.chain_only:
        raise NothingToResumeError("only a full check resumes: run `recdock verify --resume`")
    if state.get("status") != "running" or state.get("catalog_id") != catalog.catalog_id:
        raise NothingToResumeError(
            f"no interrupted full check of this catalog to resume ({report.state_path}); "
            "run `recdock verify` for a new one"
        )
    position = int(state["position"])
    crosscheck.drop_findings(catalog, ("chain", "cross"))
    crosscheck.drop_findings(catalog, ("store",), after=position)
    report.resumed = True
    report.files_checked, report.bytes_checked = int(state["files"]), int(state["bytes"])
    for level, text in crosscheck.findings(catalog, ("store",)):
        report.add(level, text, record=False)
    return position


def _check_marker(catalog: Catalog, store: Store, report: VerifyReport) -> None:
    marker = store.root / MARKER
    if store.root.exists():
        found = marker.read_text().strip() if marker.exists() else None
        if found != catalog.catalog_id:
            report.problem(
                f"{marker}: the store is not bound to this catalog ({found or 'no marker'})"
            )


def _store(
    catalog: Catalog,
    store: Store,
    report: VerifyReport,
    scope: Scope,
    where: _Where,
    position: int,
    buffer_bytes: int,
    progress: Progress,
) -> None:
    """Every session's files from ``position`` on, then what lies outside them (a full
    check); the position is kept every few seconds and at the end, however it ends."""
    check = StoreCheck(
        catalog, store, catalog.path.parent, memoryview(bytearray(buffer_bytes)), report
    )
    _files, size = crosscheck.totals(catalog, scope.partial)
    check.bar = bar = progress("store", size, "B")
    bar.update(report.bytes_checked)
    saved = time.monotonic()
    try:
        while batch := crosscheck.sessions_after(catalog, position, scope.partial):
            for sess in batch:
                where.pos = sess["rid"]
                check.session(sess)
                position = sess["rid"]
                if time.monotonic() - saved >= SAVE_EVERY_S:
                    _save(catalog, report, position)
                    saved = time.monotonic()
        if not scope.partial:
            where.pos = OUTSIDE
            check.outside()
    finally:
        bar.close()
        _save(catalog, report, position)


def _save(catalog: Catalog, report: VerifyReport, position: int) -> None:
    crosscheck.set_state(
        catalog, position=position, files=report.files_checked, bytes=report.bytes_checked
    )


def _close_the_log(catalog: Catalog, report: VerifyReport) -> AuditEntry:
    """The check's own audit entry (the next check's kept head)."""
    with catalog.tx():
        return audit.append(
            catalog,
            "verify",
            "store",
            {
                "ok": report.ok,
                "files": report.files_checked,
                "bytes": report.bytes_checked,
                "problems": report.problem_count,
                "scope": report.scope,
                "resumed": report.resumed,
            },
        )
