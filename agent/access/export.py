"""`recdock export`: two labelled, independent copies of a hold's or a case's recordings as
BagIt bags, only under a valid approval (rule clauses 12, 13, 34; docs/export.md).

The way it takes:

1. select the recordings (a hold's, or every hold's of a case); a recording already purged at
   the station is named as "only at the centre" and left out;
2. check the approval (agent/access/approval.py); anything missing refuses the export with
   every missing piece named, and the refusal is logged and audited;
3. for each destination, in a ``.recdock-partial-*`` folder: copy every file from the store,
   its sha256 checked against the catalog while copying (a mismatch stops the export, names
   the file, and removes every partial folder); make the bag; write the label; fsync every
   file and folder; validate it read back from disk;
4. log and audit the export (``export.written``, with both destinations and the bag's
   Payload-Oxum), then rename each partial folder to its final name and fsync its parent.

Nothing is left looking like a bag unless it validated: a partial folder holds no
``bagit.txt`` until its payload is whole, and is removed on any failure.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.access import approval
from agent.catalog import access, access_log, audit, holds
from agent.errors import AccessRefusedError, ExportError, ExportMismatchError
from agent.store.io import fsync_dir
from sync.wire import bag
from sync.wire.label import LABEL_FILE, Label

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config

log = logging.getLogger(__name__)

PARTIAL = ".recdock-partial-"
RECORDS_FILE = "recdock-recordings.json"
COPIES = 2


@dataclass(frozen=True)
class Order:
    """What was asked: a hold or a case, under an access request, to two destinations."""

    request_id: str
    destinations: tuple[Path, Path]
    hold_id: str | None = None
    case_number: str | None = None
    by: str = ""

    def what(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "case_number": self.case_number,
            "destinations": [str(d) for d in self.destinations],
        }


@dataclass
class Written:
    """An export done: the bags, what they hold, and its audit entry."""

    bags: list[Path]
    payload_oxum: str
    recording_ids: list[int]
    only_at_centre: list[dict[str, Any]] = field(default_factory=list)
    audit_seq: int = 0


def only_at_centre(row: dict[str, Any]) -> bool:
    """Purged at the station (its copy now only at the centre): retention marks the row."""
    return bool(row.get("purged_at"))


def select(catalog: Catalog, order: Order) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hold's or case's recordings, oldest first; no duplicates."""
    if order.hold_id is not None:
        if holds.get(catalog, order.hold_id) is None:
            raise ExportError(f"hold {order.hold_id} does not exist (see `recdock hold list`)")
        hold_ids = [order.hold_id]
    else:
        hold_ids = [h["id"] for h in holds.by_case(catalog, order.case_number or "")]
        if not hold_ids:
            raise ExportError(f"no hold names case {order.case_number}: place a hold first")
    rows: dict[int, dict[str, Any]] = {}
    for hold_id in hold_ids:
        for r in holds.recordings_held_by(catalog, hold_id):
            rows.setdefault(r["id"], r)
    if not rows:
        raise ExportError(f"{order.hold_id or order.case_number}: covers no recordings")
    return [rows[i] for i in sorted(rows)], [
        h for h in (holds.get(catalog, i) for i in hold_ids) if h
    ]


def refuse(catalog: Catalog, order: Order, rows: list[dict[str, Any]], why: list[str]) -> None:
    """Log and audit a refused export, then raise the refusal with every reason."""
    gone = [r for r in rows if only_at_centre(r)]
    why = [
        *why,
        *(
            f"recording {r['id']} ({r['source_path']}) is only at the centre: it "
            "was purged here; export it at the centre"
            for r in gone
        ),
    ]
    what = {
        **order.what(),
        "recording_ids": [r["id"] for r in rows],
        "only_at_centre": [r["id"] for r in gone],
    }
    access_log.record(
        catalog,
        "export.refused",
        by=order.by,
        request_id=order.request_id,
        what=what,
        reason="; ".join(why),
    )
    raise AccessRefusedError("export refused: " + "\n".join(why))


def export(catalog: Catalog, config: Config, store_root: Path, order: Order) -> Written:
    """Check the approval, write both copies, log it (see the module's docstring)."""
    rows, hold_rows = select(catalog, order)
    check_destinations(order.destinations)
    why = approval.problems(catalog, config, order.request_id, rows)
    here = [r for r in rows if not only_at_centre(r)]
    if why or not here:
        refuse(catalog, order, rows, why or ["every recording asked for is only at the centre"])
    req = access.get(catalog, order.request_id)
    assert req is not None
    plan = payload_plan(here)
    meta = Meta.of(catalog, config, order, req, hold_rows, here)
    partials: list[Path] = []
    try:
        for n, dest in enumerate(order.destinations, start=1):
            partials.append(write_copy(store_root, dest, plan, meta, n))
        oxum = f"{sum(r['size'] for r in here)}.{len(here)}"
        finals = [dest / meta.bag_name for dest in order.destinations]
        seq = log_written(catalog, order, here, rows, finals, oxum)
        for partial, final in zip(partials, finals, strict=True):
            os.rename(partial, final)
            fsync_dir(final.parent)
    except BaseException as exc:
        for p in partials:
            shutil.rmtree(p, ignore_errors=True)
        failed(catalog, order, here, exc)
        raise
    gone = [r for r in rows if only_at_centre(r)]
    return Written(finals, oxum, [r["id"] for r in here], gone, seq)


def failed(catalog: Catalog, order: Order, rows: list[dict[str, Any]], exc: BaseException) -> None:
    """Log and audit an export that stopped part-way (its partial copies are gone)."""
    try:
        access_log.record(
            catalog,
            "export.failed",
            by=order.by,
            request_id=order.request_id,
            what={**order.what(), "recording_ids": [r["id"] for r in rows]},
            reason=str(exc),
        )
    except Exception:
        log.exception("could not log the failed export under %s", order.request_id)


def log_written(
    catalog: Catalog,
    order: Order,
    here: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    finals: list[Path],
    oxum: str,
) -> int:
    what = {
        **order.what(),
        "bags": [str(f) for f in finals],
        "payload_oxum": oxum,
        "recording_ids": [r["id"] for r in here],
        "only_at_centre": [r["id"] for r in rows if only_at_centre(r)],
    }
    return access_log.record(catalog, "export", by=order.by, request_id=order.request_id, what=what)


def check_destinations(dests: tuple[Path, Path]) -> None:
    """Two existing, writable, different folders (ideally two disks: docs/export.md)."""
    for d in dests:
        if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):
            raise ExportError(f"{d}: not a folder recdock can write to; mount the disk there")
    if dests[0].resolve() == dests[1].resolve():
        raise ExportError(f"{dests[0]}: both copies would go to one folder; give two")
    if dests[0].stat().st_dev == dests[1].stat().st_dev:
        log.warning(
            "%s and %s are on one file system: the copies are not independent of that disk",
            dests[0],
            dests[1],
        )


def payload_plan(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Each recording and its payload path: ``<serial>/<session>/<its store name under media/>``
    (the recorder's own relative name, escaped only where the store escapes it), with ``%``
    written as ``#`` (RFC 8493 would have it encoded in the manifest, which sha256sum does not
    read); a name taken twice gets ``~<recording id>`` before its extension."""
    taken: set[str] = set()
    plan = []
    for r in rows:
        parts = r["store_path"].split("/")
        plan.append(
            (r, bag.payload_name("/".join([parts[3], parts[4], *parts[6:]]), r["id"], taken))
        )
    return plan


def copy_verified(src: Path, dst: Path, row: dict[str, Any]) -> None:
    """Copy one store file, hashing what is read from the disk; a size or sha256 other than
    the catalog's stops the export, naming the file."""
    try:
        size, sha256 = bag.copy_hashed(src, dst)
    except FileNotFoundError as exc:
        raise ExportMismatchError(
            f"{src}: recording {row['id']} is missing from the store (not purged): the export "
            "stopped; run `recdock verify`"
        ) from exc
    if size != row["size"] or sha256 != row["sha256"]:
        raise ExportMismatchError(
            f"{src}: recording {row['id']} in the store no longer matches the catalog "
            f"({size} bytes, sha256 {sha256[:16]}…; catalogued {row['size']} bytes, "
            f"{row['sha256'][:16]}…): the export stopped and no copy was kept; run "
            "`recdock verify`"
        )
    os.utime(dst, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns))


def write_copy(
    store_root: Path, dest: Path, plan: list[tuple[dict[str, Any], str]], meta: Meta, copy: int
) -> Path:
    """One whole, durable, validated bag in a partial folder under ``dest``."""
    final = dest / meta.bag_name
    if final.exists():
        raise ExportError(f"{final}: exists already; nothing was replaced")
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL, dir=dest))
    try:
        for row, name in plan:
            copy_verified(store_root / row["store_path"], partial / name, row)
        bag.make(partial, meta.bag_info(copy), meta.tag_files(copy, plan))
        bag.make_durable(partial)
        try:
            bag.validate(partial, {f"data/{name}": row["sha256"] for row, name in plan})
        except bag.BagInvalid as exc:
            raise ExportError(str(exc)) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return partial


@dataclass(frozen=True)
class Meta:
    """What both copies say of themselves: bag-info, the label, the recordings' list."""

    station: str
    unit: str
    by: str
    at: str
    case_name: str
    case_number: str
    request: dict[str, Any]
    hold_ids: list[str]
    head: tuple[int, str]
    bag_name: str
    payload_bytes: int
    files: int

    @classmethod
    def of(
        cls,
        catalog: Catalog,
        config: Config,
        order: Order,
        req: dict[str, Any],
        hold_rows: list[dict[str, Any]],
        rows: list[dict[str, Any]],
    ) -> Meta:
        units = sorted({r["unit"] for r in rows if r.get("unit")})
        first = hold_rows[0] if hold_rows else {}
        now = datetime.now().astimezone()
        return cls(
            station=catalog.station_id,
            unit="、".join(units) or config.access.unit or "(未登记 unregistered)",
            by=order.by,
            at=now.isoformat(timespec="seconds"),
            case_name=req.get("case_name") or first.get("case_name") or "",
            case_number=req.get("case_number")
            or first.get("case_number")
            or order.case_number
            or "",
            request=req,
            hold_ids=[h["id"] for h in hold_rows],
            head=audit.head(catalog),
            bag_name=f"{catalog.station_id}-{req['id']}-{now.strftime('%Y%m%dT%H%M%S')}",
            payload_bytes=sum(r["size"] for r in rows),
            files=len(rows),
        )

    def bag_info(self, copy: int) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        import bagit

        try:
            ours = version("recdock")
        except PackageNotFoundError:
            ours = "unknown"
        return {
            "Source-Organization": self.unit,
            "Contact-Name": self.by,
            "External-Identifier": self.case_number,
            "External-Description": f"{self.case_name} ({self.case_number}): {self.files} "
            f"recordings from station {self.station}, copy {copy} of {COPIES}",
            "Bag-Software-Agent": f"recdock {ours} (bagit.py {bagit.VERSION})",
            "Recdock-Unit": self.unit,
            "Recdock-Exported-By": self.by,
            "Recdock-Exported-At": self.at,
            "Recdock-Case-Name": self.case_name,
            "Recdock-Case-Number": self.case_number,
            "Recdock-Station": self.station,
            "Recdock-Audit-Head-Seq": str(self.head[0]),
            "Recdock-Audit-Head-Hash": self.head[1],
            "Recdock-Access-Request": self.request["id"],
            "Recdock-Approved-By": str(self.request["decided_by"]),
            "Recdock-Approved-Until": str(self.request["valid_until"]),
            "Recdock-Holds": " ".join(self.hold_ids),
            "Recdock-Copy": f"{copy} of {COPIES}",
        }

    def tag_files(self, copy: int, plan: list[tuple[dict[str, Any], str]]) -> dict[str, str]:
        label = Label(
            self.unit,
            self.by,
            self.at,
            self.case_name,
            self.case_number,
            copy,
            COPIES,
            self.files,
            self.payload_bytes,
            self.station,
            self.request["id"],
            str(self.request["decided_by"]),
        )
        keep = (
            "id",
            "session_id",
            "device_serial",
            "officer_id",
            "unit",
            "source_path",
            "recorded_start",
            "recorded_end",
            "offloaded_at",
            "size",
            "sha256",
        )
        listed = [{"payload": f"data/{name}", **{k: r.get(k) for k in keep}} for r, name in plan]
        text = json.dumps(listed, indent=1, ensure_ascii=False) + "\n"
        return {LABEL_FILE: label.text(), RECORDS_FILE: text}
