"""`recdock verify`: re-hash the whole store and check the audit log.

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

from agent.catalog import Catalog
from agent.store import MANIFEST, MARKER, SESSION_RECORD, TEMP_PREFIX, Store, hash_file

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
    report.problems.extend(catalog.check_audit_chain())
    audit = {e.seq: e for e in catalog.audit_entries()}
    report.audit_entries = len(audit)

    marker = store.root / MARKER
    if store.root.exists():
        found = marker.read_text().strip() if marker.exists() else None
        if found != catalog.catalog_id:
            report.problems.append(
                f"{marker}: the store is not bound to this catalog ({found or 'no marker'})"
            )

    known: set[str] = set()
    sessions: dict[str, list[dict]] = {}
    for row in catalog.recordings():
        rel = row["store_path"]
        known.add(rel)
        sessions.setdefault(row["session_id"], []).append(row)
        entry = audit.get(row["audit_seq"])
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
            continue
        if not stat.S_ISREG(st.st_mode):
            report.problems.append(f"{rel}: is no longer a regular file")
            continue
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

    session_dirs = {
        s["id"]: s["store_dir"]
        for s in catalog.query("SELECT id, store_dir, ended_at FROM sessions")
    }
    for sid, rows in sessions.items():
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

    session_files = set()
    for sdir in session_dirs.values():
        session_files.add(f"{sdir}/{MANIFEST}")
        session_files.add(f"{sdir}/{SESSION_RECORD}")
    if store.root.exists():
        for dirpath, _dirs, files in os.walk(store.root):
            for name in files:
                rel = Path(dirpath, name).relative_to(store.root).as_posix()
                if rel == MARKER or rel in known or rel in session_files:
                    continue
                if name.startswith(TEMP_PREFIX):
                    report.notes.append(f"{rel}: temp file of an interrupted copy (not media)")
                    continue
                report.problems.append(f"{rel}: in the store but not in the catalog (added)")

    with catalog.tx():
        catalog.append_audit(
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
