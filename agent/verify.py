"""`recdock verify`: re-hash the whole store and check the audit log (rule 2, docs/architecture.md).

It names every problem it finds:

- an audit entry altered, removed or reordered (the hash chain);
- a recording whose audit entry is missing or says something else (so a cut-off
  tail of the log, or an edited catalog row, shows);
- a store file changed (hash), removed, made writable, or added (a file in the
  store that the catalog does not know);
- a session manifest that does not list exactly the catalogued files.

Temp files of an interrupted offload are reported as notes, not problems: they are
never media, and the next offload removes them.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, recordings, sessions
from agent.catalog.audit import AuditEntry
from agent.store import MANIFEST, MARKER, SESSION_RECORD, TEMP_PREFIX, Store
from agent.store.hashing import hash_file

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    files_checked: int = 0
    bytes_checked: int = 0
    audit_entries: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(catalog: Catalog, store: Store, *, buffer_bytes: int = 4 * 1024 * 1024) -> VerifyReport:
    report = VerifyReport()
    buf = memoryview(bytearray(buffer_bytes))
    report.problems.extend(audit.check_chain(catalog))
    entries = {e.seq: e for e in audit.entries(catalog)}
    report.audit_entries = len(entries)
    _check_marker(catalog, store, report)
    by_session: dict[str, list[dict[str, Any]]] = {}
    for row in recordings.listing(catalog):
        by_session.setdefault(row["session_id"], []).append(row)
        _check_recording(row, entries, store, buf, report)
    session_dirs = sessions.store_dirs(catalog)
    _check_manifests(by_session, session_dirs, store, report)
    known = {r["store_path"] for rows in by_session.values() for r in rows}
    _check_unknown_files(known, session_dirs, store, report)
    with catalog.tx():
        audit.append(
            catalog,
            "verify",
            "store",
            {
                "ok": report.ok,
                "files": report.files_checked,
                "bytes": report.bytes_checked,
                "problems": len(report.problems),
            },
        )
    return report


def _check_marker(catalog: Catalog, store: Store, report: VerifyReport) -> None:
    marker = store.root / MARKER
    if store.root.exists():
        found = marker.read_text().strip() if marker.exists() else None
        if found != catalog.catalog_id:
            report.problems.append(
                f"{marker}: the store is not bound to this catalog ({found or 'no marker'})"
            )


def _check_recording(
    row: dict[str, Any],
    entries: dict[int, AuditEntry],
    store: Store,
    buf: memoryview,
    report: VerifyReport,
) -> None:
    """The row agrees with its audit entry, and the store copy with the row."""
    rel = row["store_path"]
    entry = entries.get(row["audit_seq"])
    if entry is None:
        report.problems.append(
            f"{rel}: its audit entry {row['audit_seq']} is missing from the audit log"
        )
    elif entry.data.get("sha256") != row["sha256"] or entry.subject != rel:
        report.problems.append(
            f"{rel}: the catalog row disagrees with its audit entry {entry.seq} "
            "(the catalog was edited)"
        )
    path = store.root / rel
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        report.problems.append(f"{rel}: missing from the store (removed)")
        return
    if not stat.S_ISREG(st.st_mode):
        report.problems.append(f"{rel}: is no longer a regular file")
        return
    if st.st_mode & 0o222:
        report.problems.append(f"{rel}: is writable; store files must be read-only")
    digest = hash_file(path, buf, drop_cache=True)
    report.files_checked += 1
    report.bytes_checked += digest.size
    if digest.sha256 != row["sha256"] or digest.size != row["size"]:
        report.problems.append(
            f"{rel}: changed in the store (sha256 {digest.sha256[:12]}…, catalogued "
            f"{row['sha256'][:12]}…)"
        )


def _check_manifests(
    by_session: dict[str, list[dict[str, Any]]],
    session_dirs: dict[str, str],
    store: Store,
    report: VerifyReport,
) -> None:
    """Each ended session's manifest lists exactly its catalogued files."""
    for sid, rows in by_session.items():
        sdir = session_dirs.get(sid)
        if sdir is None:
            report.problems.append(f"session {sid}: recordings point at an unknown session")
            continue
        manifest = store.root / sdir / MANIFEST
        if not manifest.exists():
            report.notes.append(f"{sdir}: no manifest yet (session still running or interrupted)")
            continue
        listed = {}
        for line in manifest.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition("  ")
            listed[f"{sdir}/{name}"] = sha
        expected = {r["store_path"]: r["sha256"] for r in rows}
        if listed != expected:
            extra = sorted(set(listed) - set(expected))
            missing = sorted(set(expected) - set(listed))
            changed = sorted(k for k in set(listed) & set(expected) if listed[k] != expected[k])
            report.problems.append(
                f"{manifest.relative_to(store.root)}: does not match the catalog "
                f"(extra {extra}, missing {missing}, changed {changed})"
            )


def _check_unknown_files(
    known: set[str], session_dirs: dict[str, str], store: Store, report: VerifyReport
) -> None:
    """A file in the store that the catalog does not know was added (temp files aside)."""
    session_files = set()
    for sdir in session_dirs.values():
        session_files.add(f"{sdir}/{MANIFEST}")
        session_files.add(f"{sdir}/{SESSION_RECORD}")
    if not store.root.exists():
        return
    for dirpath, _dirs, files in os.walk(store.root):
        for name in files:
            rel = Path(dirpath, name).relative_to(store.root).as_posix()
            if rel == MARKER or rel in known or rel in session_files:
                continue
            if name.startswith(TEMP_PREFIX):
                report.notes.append(f"{rel}: temp file of an interrupted copy (not media)")
                continue
            report.problems.append(f"{rel}: in the store but not in the catalog (added)")
