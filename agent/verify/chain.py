"""The audit chain, walked whole, and the head verify keeps outside the catalog.

The chain shows an altered, removed or reordered entry, but not a cut end: what is left is
a valid, shorter chain, and the next entry appended (verify's own) takes the freed sequence
number. So verify keeps the highest entry it has seen, its sequence number and hash, in
``<home>/audit-head.json``, a file of its own that deleting rows from the catalog cannot
reach. A later check that does not find that entry, or finds another one there, names the
cut; the file keeps every cut found, and every later check names it again: once found, a
gap is never gone. (The central store holds the published chain head too.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, audit, now_utc
from agent.catalog.audit import AuditEntry
from agent.store.io import fsync_dir
from agent.verify.report import Progress, VerifyReport

HEAD_FILE = "audit-head.json"
_STEP = 4096  # entries between progress updates


def read_head(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((home / HEAD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"unreadable": True}


def write_head(home: Path, catalog: Catalog, entry: AuditEntry, cuts: list[dict[str, Any]]) -> None:
    """Keep ``entry`` as the highest seen (written to a temp file, synced, renamed)."""
    path = home / HEAD_FILE
    data = {
        "catalog_id": catalog.catalog_id,
        "seq": entry.seq,
        "hash": entry.hash,
        "at": entry.at,
        "cuts": cuts,
    }
    tmp = path.with_name(f".{HEAD_FILE}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(home)


def check_chain(
    catalog: Catalog, home: Path, report: VerifyReport, progress: Progress
) -> list[dict[str, Any]]:
    """Walk the whole chain, then compare it with the kept head; returns every cut known."""
    head = read_head(home)
    mine = head is not None and head.get("catalog_id") == catalog.catalog_id
    want = head.get("seq") if mine and head else None
    found: dict[str, Any] = {"count": 0, "last": 0, "hash": None}

    bar = progress("audit log", audit.head(catalog)[0], "entries")

    def seen(seq: int, digest: str) -> None:
        found["count"] += 1
        found["last"] = max(found["last"], seq)
        if seq == want:
            found["hash"] = digest
        if found["count"] % _STEP == 0:
            bar.update(_STEP)

    try:
        for text in audit.chain_problems(catalog, seen):
            report.problem(text)
        bar.update(found["count"] % _STEP)
    finally:
        bar.close()
    report.audit_entries = found["count"]
    return _compare_head(catalog, home, head, found, report)


def _compare_head(
    catalog: Catalog,
    home: Path,
    head: dict[str, Any] | None,
    found: dict[str, Any],
    report: VerifyReport,
) -> list[dict[str, Any]]:
    if head is None:
        return []
    cuts = [c for c in head.get("cuts", []) if isinstance(c, dict)]
    for cut in cuts:
        report.problem(f"{cut.get('text')} (found on {cut.get('found_at')}; {HEAD_FILE} keeps it)")
    text = _cut_text(catalog, home / HEAD_FILE, head, found)
    if text is not None:
        report.problem(text)
        cuts.append({"text": text, "found_at": now_utc()})
    return cuts


def _cut_text(
    catalog: Catalog, path: Path, head: dict[str, Any], found: dict[str, Any]
) -> str | None:
    """What became of the entry verify saw last, or None when it is still there."""
    if head.get("unreadable"):
        return f"{path}: unreadable, so a cut end of the audit log cannot be ruled out"
    seq, digest, at = head.get("seq"), str(head.get("hash")), head.get("at")
    if head.get("catalog_id") != catalog.catalog_id:
        return (
            f"{path}: recdock verify last saw the audit log of catalog {head.get('catalog_id')} "
            f"up to entry {seq} on {at}; this catalog is {catalog.catalog_id}: the catalog was "
            "replaced, and that history is not in it"
        )
    if found["hash"] is None:
        return (
            f"audit log: entry {seq} (hash {digest[:12]}…), which recdock verify saw on {at}, "
            f"is gone: the log now ends at entry {found['last']}; its end was cut"
        )
    if found["hash"] != digest:
        return (
            f"audit log: entry {seq} is not the one recdock verify saw there on {at} (hash "
            f"{digest[:12]}…, now {found['hash'][:12]}…): the log was cut back and written "
            "again from there"
        )
    return None
