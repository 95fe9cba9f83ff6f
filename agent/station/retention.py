"""Retention: the purge pass (rule clause 11; rule 4, docs/architecture.md; docs/retention.md).

A recording is purged only when all hold: the centre's receipt confirmed its hash (for this
station), its retention ran out (counted from its offload, on the station's clock: the
recorder's clock is untrusted, rule 6), and no hold covers it. Below the low-disk threshold
the pass purges early what the centre confirmed and no hold covers, oldest first, until the
store is above it; what cannot be freed opens the fault ``store.unpurgeable``.

Nothing is purged when the catalog is missing, unreadable, new, or not the store's own: the
pass reads "purgeable" only from the catalog's rows and never reads "not in the catalog" as
"may delete" (Frigate's lesson). Each batch is marked purged in one transaction with its
``recording.purged`` entries (rule 3), then the files are listed beside their session's
manifest (``purged-sha256-*.txt``) and removed; the rows' ``purge_intent_at`` stands until the
files are gone, so a pass killed half-way is finished by the next one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.catalog import Catalog, audit, holds, now_utc, recordings, sessions
from agent.catalog.faults import open_subjects, report_fault, resolve_fault
from agent.config import Config
from agent.config.retention import RetentionConfig
from agent.errors import CatalogError, StoreFullError
from agent.store import Store
from agent.store.purged import belongs_to, purged_listed, remove_purged, write_purged_list

log = logging.getLogger(__name__)

FAULT_KIND = "store.unpurgeable"
SUBJECT = "store"


@dataclass
class PurgeReport:
    """What one pass did (or, dry, would do)."""

    dry_run: bool = False
    purged: list[dict[str, Any]] = field(default_factory=list)
    finished: int = 0  # files of an earlier, interrupted pass removed now
    free_before: int | None = None
    free_after: int | None = None
    low_disk_free_bytes: int = 0
    unpurgeable: dict[str, int] | None = None  # the fault's evidence, when it is open

    @property
    def bytes(self) -> int:
        return sum(r["size"] for r in self.purged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "purged": [
                {k: r[k] for k in ("id", "store_path", "size", "offloaded_at", "purge_reason")}
                for r in self.purged
            ],
            "files": len(self.purged),
            "bytes": self.bytes,
            "finished_from_before": self.finished,
            "free_before": self.free_before,
            "free_after": self.free_after,
            "low_disk_free_bytes": self.low_disk_free_bytes,
            "unpurgeable": self.unpurgeable,
        }


def minus_months(moment: datetime, months: int) -> datetime:
    """The same time ``months`` calendar months earlier (the day cut to the month's end)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month + 1, day=min(moment.day, 28))


def retention_of(cfg: RetentionConfig, now: datetime) -> recordings.Retention:
    """The cut-offs at ``now``: a recording offloaded before its cut-off has run out."""

    def cut(months: int) -> str:
        return minus_months(now.astimezone(UTC), months).isoformat(timespec="microseconds")

    return recordings.Retention(
        default=cut(cfg.months),
        units=tuple((unit, cut(m)) for unit, m in sorted(cfg.units.items())),
        categories=tuple(
            (tuple(g.lower() for g in cfg.category_globs[name]), cut(m))
            for name, m in sorted(cfg.categories.items())
        ),
    )


def own_store(catalog: Catalog, store: Store) -> None:
    """The catalog may purge from this store: it has recorded sessions (it is not new) and
    the store's marker names it. :class:`CatalogError` otherwise."""
    if catalog.is_empty():
        raise CatalogError(
            f"{catalog.path}: the catalog is new (no session recorded); nothing is purged from "
            f"{store.root}. If the station's catalog was lost, restore it from a backup"
        )
    belongs_to(store.root, catalog.catalog_id)


class PurgePass:
    """One purge pass over the store: retention, then disk pressure."""

    def __init__(self, catalog: Catalog, store: Store, config: Config, *, by: str) -> None:
        self.catalog = catalog
        self.store = store
        self.config = config
        self.cfg = config.retention
        self.by = by
        self.not_held = holds.not_held_sql("r")

    def run(self, now: datetime, *, dry_run: bool = False) -> PurgeReport:
        own_store(self.catalog, self.store)
        report = PurgeReport(dry_run=dry_run, low_disk_free_bytes=self.cfg.low_disk_free_bytes)
        if not dry_run:
            report.finished = self.finish_interrupted()
        report.free_before = self.store.free_bytes()
        self._purge(report, retention_of(self.cfg, now), "retention", None)
        short = self.cfg.low_disk_free_bytes - self.store.free_bytes() - self._pending(report)
        if short > 0:
            self._purge(report, recordings.Retention(default=None), "disk_pressure", short)
        report.free_after = self.store.free_bytes()
        if not dry_run:
            self._fault(report)
        return report

    @staticmethod
    def _pending(report: PurgeReport) -> int:
        """Bytes a dry run would have freed (a real pass freed them already)."""
        return report.bytes if report.dry_run else 0

    def _purge(
        self, report: PurgeReport, retention: recordings.Retention, reason: str, need: int | None
    ) -> None:
        """Purge batch after batch until none is left (or ``need`` bytes are freed)."""
        freed, seen = 0, {r["id"] for r in report.purged}
        while need is None or freed < need:
            batch = recordings.purgeable(
                self.catalog,
                station_id=self.config.station_id,
                retention=retention,
                not_held=self.not_held,
                limit=self.cfg.batch + len(seen),
            )
            batch = [r for r in batch if r["id"] not in seen]
            if need is not None:
                batch = _enough(batch, need - freed)
            if not batch:
                return
            for r in batch:
                r["purge_reason"] = reason
                seen.add(r["id"])
            done = batch if report.dry_run else self._purge_batch(batch, reason)
            report.purged += done
            freed += sum(r["size"] for r in done)
            if report.dry_run and len(batch) < self.cfg.batch:
                return

    def _purge_batch(self, batch: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
        """Mark a batch purged and audit it (one transaction), then list and remove the files."""
        at = now_utc()
        marked = []
        with self.catalog.tx() as conn:
            for candidate in batch:
                row = recordings.still_purgeable(
                    self.catalog,
                    candidate["id"],
                    station_id=self.config.station_id,
                    not_held=self.not_held,
                )
                if row is None:
                    continue  # held or changed since the search: kept
                recordings.mark_purged(conn, row["id"], at=at, by=self.by, reason=reason)
                audit.append(
                    self.catalog,
                    "recording.purged",
                    row["store_path"],
                    _entry(row, reason, self.by),
                )
                marked.append({**row, "purge_reason": reason})
        self._remove(marked, at)
        return marked

    def _remove(self, rows: list[dict[str, Any]], at: str) -> None:
        """List each session's purged files beside its manifest, remove them, then record
        that they are gone. A full disk may refuse the list: the files go first then."""
        for session_dir, group in self._by_session(rows).items():
            lines = [(r["sha256"], r["store_path"][len(session_dir) + 1 :]) for r in group]
            try:
                write_purged_list(self.store.root, session_dir, lines, at)
            except StoreFullError:
                for r in group:
                    remove_purged(self.store.root, r["store_path"])
                write_purged_list(self.store.root, session_dir, lines, at)
            for r in group:
                remove_purged(self.store.root, r["store_path"])
            with self.catalog.tx() as conn:
                recordings.settle_purges(conn, [r["id"] for r in group])
            log.info(
                "purged %d file(s) of %s (%s)", len(group), session_dir, group[0]["purge_reason"]
            )

    def finish_interrupted(self) -> int:
        """Rows an earlier pass marked purged whose files it did not record as removed: list
        what no list names yet, remove them, settle them."""
        rows = recordings.unsettled_purges(self.catalog)
        if not rows:
            return 0
        for session_dir, group in self._by_session(rows).items():
            listed = purged_listed(self.store.root, session_dir)
            todo = [r for r in group if r["store_path"][len(session_dir) + 1 :] not in listed]
            if todo:
                lines = [(r["sha256"], r["store_path"][len(session_dir) + 1 :]) for r in todo]
                write_purged_list(self.store.root, session_dir, lines, now_utc())
            for r in group:
                remove_purged(self.store.root, r["store_path"])
            with self.catalog.tx() as conn:
                recordings.settle_purges(conn, [r["id"] for r in group])
        log.warning("finished %d purge(s) an interrupted pass left", len(rows))
        return len(rows)

    def _by_session(self, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Rows by their session's store folder."""
        dirs: dict[str, str] = {}
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["session_id"] not in dirs:
                sess = sessions.get(self.catalog, r["session_id"])
                if sess is None:
                    raise CatalogError(f"recording {r['store_path']}: its session row is gone")
                dirs[r["session_id"]] = sess["store_dir"]
            grouped[dirs[r["session_id"]]].append(r)
        return grouped

    def _fault(self, report: PurgeReport) -> None:
        """Open ``store.unpurgeable`` while the store stays below the threshold with nothing
        left to purge; resolve it once it is above."""
        free, low = report.free_after or 0, self.cfg.low_disk_free_bytes
        if free >= low:
            if resolve_fault(self.catalog, FAULT_KIND, SUBJECT, f"{free} bytes free, above {low}"):
                log.info("the store is above its low-disk threshold again: %d bytes free", free)
            return
        if SUBJECT in open_subjects(self.catalog, FAULT_KIND):
            return  # the evidence below sums the store: taken once, when it opens
        evidence = {
            "free_bytes": free,
            "low_disk_free_bytes": low,
            "bytes_held": recordings.unpurged_bytes(self.catalog, confirmed=True),
            "bytes_unconfirmed": recordings.unpurged_bytes(self.catalog, confirmed=False),
        }
        report.unpurgeable = evidence
        report_fault(
            self.catalog,
            FAULT_KIND,
            SUBJECT,
            f"the store has {free} bytes free, below retention.low_disk_free_bytes ({low}), and "
            f"nothing more may be purged: {evidence['bytes_held']} bytes are confirmed but held, "
            f"{evidence['bytes_unconfirmed']} bytes wait for the centre's receipt. Check the "
            "uploads (`recdock status`), release holds no longer needed, or give the store room",
            evidence=evidence,
        )


def _enough(batch: list[dict[str, Any]], need: int) -> list[dict[str, Any]]:
    """The oldest of ``batch`` whose sizes add up to ``need`` (all when they do not)."""
    taken, total = [], 0
    for r in batch:
        if total >= need:
            break
        taken.append(r)
        total += r["size"]
    return taken


def _entry(row: dict[str, Any], reason: str, by: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "device_serial": row["device_serial"],
        "sha256": row["sha256"],
        "size": row["size"],
        "offloaded_at": row["offloaded_at"],
        "synced_at": row["synced_at"],
        "reason": reason,
        "by": by,
    }


def purge(
    catalog: Catalog, store: Store, config: Config, *, now: datetime, by: str, dry_run: bool = False
) -> PurgeReport:
    """One purge pass (the daemon's, or `recdock purge`'s)."""
    return PurgePass(catalog, store, config, by=by).run(now, dry_run=dry_run)
