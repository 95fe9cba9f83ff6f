"""The audit log against the catalog's own columns: each says what the other must say.

Every recording row points at the entry that stored it (``audit_seq``), and every stored
entry at a row; a session that ended has its ``session.end`` entry, and an entry that ended a
session a row that says so; a recording removed from its recorder has its
``file.removed_from_recorder`` entry, and such an entry a row that says so. Cutting entries
off the end of the log leaves a valid chain, but not these: rows that say what no entry
records. All of it runs in one read snapshot of the catalog, joined on disk
(agent/catalog/crosscheck.py), so its memory stays the same at any size.
"""

from __future__ import annotations

from agent.catalog import Catalog, crosscheck
from agent.verify.report import VerifyReport


def cross_check(catalog: Catalog, report: VerifyReport, scoped: bool) -> None:
    """Every disagreement, named (inside a :func:`agent.catalog.crosscheck.snapshot`)."""
    crosscheck.collect_facts(catalog)
    _recordings(catalog, report, scoped)
    _sessions(catalog, report, scoped)
    _removals(catalog, report, scoped)


def _recordings(catalog: Catalog, report: VerifyReport, scoped: bool) -> None:
    for r in crosscheck.recordings_and_their_entries(catalog, scoped):
        rel = r["store_path"]
        if r["kind"] is None:
            report.problem(f"{rel}: its audit entry {r['audit_seq']} is missing from the audit log")
        else:
            report.problem(
                f"{rel}: the catalog row disagrees with its audit entry {r['audit_seq']} "
                "(the catalog was edited)"
            )
    for e in crosscheck.entries_without_recordings(catalog, scoped):
        report.problem(
            f"{e['key']}: audit entry {e['seq']} ({e['kind']}) catalogued it, but the catalog "
            "has no row for it (the row was deleted)"
        )
    for r in crosscheck.recordings_of_unknown_sessions(catalog, scoped):
        report.problem(f"session {r['session_id']}: recordings point at an unknown session")


def _sessions(catalog: Catalog, report: VerifyReport, scoped: bool) -> None:
    for s in crosscheck.sessions_and_their_entries(catalog, scoped):
        sid = s["id"]
        if s["start_seq"] is None:
            report.problem(f"session {sid}: its session.start entry is missing from the audit log")
        if s["ended_at"] is not None and s["end_seq"] is None:
            report.problem(
                f"session {sid}: the catalog says it ended at {s['ended_at']}, but its "
                "session.end entry is missing from the audit log (the end of the log was cut?)"
            )
        elif s["ended_at"] is None and s["end_seq"] is not None:
            report.problem(
                f"session {sid}: audit entry {s['end_seq']} ended it, but the catalog says it "
                "has not ended (the catalog was edited)"
            )
    for e in crosscheck.entries_without_sessions(catalog, scoped):
        report.problem(
            f"session {e['key']}: audit entry {e['seq']} ({e['kind']}) records it, but the "
            "catalog has no such session (its row was deleted)"
        )


def _removals(catalog: Catalog, report: VerifyReport, scoped: bool) -> None:
    for r in crosscheck.removals_and_their_entries(catalog, scoped):
        rel = r["store_path"]
        if r["source_removed_at"] is not None:
            report.problem(
                f"{rel}: the catalog says its source left the recorder at "
                f"{r['source_removed_at']}, but its file.removed_from_recorder entry is missing "
                "from the audit log (the end of the log was cut?)"
            )
        else:
            report.problem(
                f"{rel}: audit entry {r['removal_seq']} removed its source from the recorder, "
                "but the catalog says it was not (the catalog was edited)"
            )
