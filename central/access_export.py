"""``recdock-central export``: two labelled BagIt copies of an approved access request's
recordings from the centre's objects (rule clauses 12, 13, 34; docs/export.md), for recordings
already purged at the station. The same layout, bag-info and label as the station's export
(agent/access/export.py; the label is :mod:`sync.wire.label`).

The way it takes:

1. check the approval (:func:`central.access.problems`) and that the centre holds every object
   under its station's receipt; anything missing refuses the export with every piece named,
   logged (``export.refused``);
2. for each destination, in a ``.recdock-partial-*`` folder: copy every object, its size and
   sha256 checked against the request while copying (a mismatch stops the export, names the
   object, removes every partial folder, and is logged: ``export.failed``); the Library of
   Congress ``bagit`` package makes the bag (sha256 and sha512), declared BagIt 1.0; the label
   and the recordings' list are added as tag files; every file and folder is fsynced; the bag
   is validated read back, and its sha256 manifest compared with the request;
3. only when both validated: the export is logged (``export``), then each partial folder is
   renamed to its final name and its parent fsynced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from central import access as decisions
from central.catalog import CentralCatalog, access, access_log
from central.folder import fsync_dir
from sync.wire import bag
from sync.wire.label import LABEL_FILE, Label

logger = logging.getLogger(__name__)

PARTIAL = ".recdock-partial-"
RECORDS_FILE = "recdock-recordings.json"
COPIES = 2


class ExportRefused(Exception):
    """No valid approval, or an object the centre does not hold: nothing was written."""


class ExportFailed(Exception):
    """The export stopped part-way (an object that does not match, a bag that does not
    validate): no copy was kept."""


@dataclass(frozen=True)
class Order:
    request_id: str
    destinations: tuple[Path, Path]
    by: str
    at: datetime


def export(catalog: CentralCatalog, data_dir: Path, order: Order) -> list[Path]:
    """Check the approval, write both copies, log it (see the module's docstring)."""
    conn = catalog.conn
    req = access.get(conn, order.request_id)
    objects = access.objects(conn, order.request_id) if req else []
    why = decisions.problems(req, order.request_id, at=order.at)
    paths = {o["n"]: decisions.object_path(data_dir, o, catalog) for o in objects}
    why += [
        f"the centre does not hold recording {o['recording']} of station {o['station']}"
        for o in objects
        if paths[o["n"]] is None
    ]
    why += _destination_problems(order.destinations)
    if why:
        _log(catalog, order, "export.refused", reason="; ".join(why))
        raise ExportRefused("export refused: " + "\n".join(why))
    assert req is not None
    plan = payload_plan(objects)
    meta = _meta(catalog, req, objects, order)
    partials: list[Path] = []
    try:
        for n, dest in enumerate(order.destinations, start=1):
            partials.append(write_copy(dest, plan, paths, meta, n))
        finals = [dest / meta["bag_name"] for dest in order.destinations]
        _log(catalog, order, "export", detail={"bags": [str(f) for f in finals], **_oxum(objects)})
        for partial, final in zip(partials, finals, strict=True):
            os.rename(partial, final)
            fsync_dir(final.parent)
    except BaseException as exc:
        for p in partials:
            shutil.rmtree(p, ignore_errors=True)
        _log(catalog, order, "export.failed", reason=str(exc))
        raise
    logger.info("exported %s to %s", order.request_id, ", ".join(map(str, finals)))
    return finals


def _oxum(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {"payload_oxum": f"{sum(o['size'] for o in objects)}.{len(objects)}"}


def _log(
    catalog: CentralCatalog,
    order: Order,
    action: str,
    *,
    reason: str | None = None,
    detail: dict | None = None,
) -> None:
    what = {"destinations": [str(d) for d in order.destinations], **(detail or {})}
    with catalog.tx() as conn:
        access_log.record(
            conn, action, at=decisions.stamp(order.at), by=order.by,
            request_id=order.request_id, reason=reason, detail=what,
        )  # fmt: skip


def _destination_problems(dests: tuple[Path, Path]) -> list[str]:
    """Two existing, writable, different folders (ideally on two disks)."""
    why = [
        f"{d}: not a folder recdock-central can write to; mount the disk there"
        for d in dests
        if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK)
    ]
    if not why and dests[0].resolve() == dests[1].resolve():
        why.append(f"{dests[0]}: both copies would go to one folder; give two")
    if not why and dests[0].stat().st_dev == dests[1].stat().st_dev:
        logger.warning(
            "%s and %s are on one file system: the copies are not independent of that disk",
            *dests,
        )
    return why


def payload_plan(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Each object and its payload path, as the station's export names it:
    ``<serial>/<session>/<its store name under media/>`` with ``%`` written as ``#``; a name
    taken twice (two stations) gets ``~<n>`` before its extension."""
    taken: set[str] = set()
    plan = []
    for o in objects:
        parts = o["recording"].split("/")
        if len(parts) > 6 and parts[5] == "media":
            name = "/".join([parts[3], parts[4], *parts[6:]])
        else:
            name = "/".join([o["station"], *parts])
        plan.append((o, bag.payload_name(name, o["n"], taken)))
    return plan


def copy_verified(src: Path, dst: Path, obj: dict[str, Any]) -> None:
    """Copy one object, hashing what is read; a size or sha256 other than the request's stops
    the export, naming the object."""
    size, sha256 = bag.copy_hashed(src, dst)
    if size != obj["size"] or sha256 != obj["sha256"]:
        raise ExportFailed(
            f"{src}: the centre's object for recording {obj['recording']} of station "
            f"{obj['station']} does not match ({size} bytes, sha256 {sha256[:16]}…;"
            f" expected {obj['size']} bytes, {obj['sha256'][:16]}…): the export stopped and "
            "no copy was kept"
        )


def write_copy(
    dest: Path,
    plan: list[tuple[dict[str, Any], str]],
    paths: dict[int, Path | None],
    meta: dict[str, Any],
    copy: int,
) -> Path:
    """One whole, durable, validated bag in a partial folder under ``dest``."""
    final = dest / meta["bag_name"]
    if final.exists():
        raise ExportFailed(f"{final}: exists already; nothing was replaced")
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL, dir=dest))
    try:
        for obj, name in plan:
            copy_verified(paths[obj["n"]], partial / name, obj)  # type: ignore[arg-type]
        bag.make(partial, bag_info(meta, copy), tag_files(meta, copy, plan))
        bag.make_durable(partial)
        try:
            bag.validate(partial, {f"data/{name}": obj["sha256"] for obj, name in plan})
        except bag.BagInvalid as exc:
            raise ExportFailed(str(exc)) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return partial


def _meta(
    catalog: CentralCatalog, req: dict[str, Any], objects: list[dict[str, Any]], order: Order
) -> dict[str, Any]:
    stations = sorted({o["station"] for o in objects})
    heads = []
    for s in stations:
        chain = (catalog.station(s) or {}).get("chain", {})
        heads.append((s, chain.get("head_seq"), chain.get("head_hash")))
    at = order.at.astimezone()
    units = sorted({o["unit"] for o in objects if o.get("unit")})
    return {
        "station": " ".join(stations),
        "unit": "、".join(units) or "(未登记 unregistered)",
        "by": order.by,
        "at": at.isoformat(timespec="seconds"),
        "case_name": req["case_name"] or "",
        "case_number": req["case_number"] or "",
        "request": req,
        "heads": heads,
        "bag_name": f"centre-{req['request_id']}-{at.strftime('%Y%m%dT%H%M%S')}",
        "payload_bytes": sum(o["size"] for o in objects),
        "files": len(objects),
    }


def bag_info(meta: dict[str, Any], copy: int) -> dict[str, str]:
    """bag-info.txt: the station's fields (docs/export.md), the chain heads the centre holds."""
    from importlib.metadata import PackageNotFoundError, version

    import bagit

    try:
        ours = version("recdock")
    except PackageNotFoundError:
        ours = "unknown"
    req = meta["request"]
    return {
        "Source-Organization": meta["unit"],
        "Contact-Name": meta["by"],
        "External-Identifier": meta["case_number"],
        "External-Description": f"{meta['case_name']} ({meta['case_number']}): {meta['files']} "
        f"recordings from station {meta['station']} (the centre's copies), copy {copy} of "
        f"{COPIES}",
        "Bag-Software-Agent": f"recdock-central {ours} (bagit.py {bagit.VERSION})",
        "Recdock-Unit": meta["unit"],
        "Recdock-Exported-By": meta["by"],
        "Recdock-Exported-At": meta["at"],
        "Recdock-Case-Name": meta["case_name"],
        "Recdock-Case-Number": meta["case_number"],
        "Recdock-Station": meta["station"],
        "Recdock-Exported-From": "centre",
        "Recdock-Audit-Head-Seq": " ".join(f"{s}:{seq}" for s, seq, _ in meta["heads"]),
        "Recdock-Audit-Head-Hash": " ".join(f"{s}:{h}" for s, _, h in meta["heads"]),
        "Recdock-Access-Request": req["request_id"],
        "Recdock-Approved-By": str(req["decided_by"]),
        "Recdock-Approved-Until": str(req["valid_until"]),
        "Recdock-Holds": req["basis"][5:] if req["basis"].startswith("hold:") else "",
        "Recdock-Copy": f"{copy} of {COPIES}",
    }


def tag_files(
    meta: dict[str, Any], copy: int, plan: list[tuple[dict[str, Any], str]]
) -> dict[str, str]:
    """LABEL.txt (the station's label, :mod:`sync.wire.label`) and the recordings' list."""
    label = Label(
        meta["unit"], meta["by"], meta["at"], meta["case_name"], meta["case_number"], copy,
        COPIES, meta["files"], meta["payload_bytes"], meta["station"],
        meta["request"]["request_id"], str(meta["request"]["decided_by"]),
    )  # fmt: skip
    keep = (
        "station",
        "recording",
        "session_id",
        "device_serial",
        "officer_id",
        "unit",
        "source_path",
        "stored_at",
        "size",
        "sha256",
    )
    listed = [{"payload": f"data/{name}", **{k: o.get(k) for k in keep}} for o, name in plan]
    text = json.dumps(listed, indent=1, ensure_ascii=False) + "\n"
    return {LABEL_FILE: label.text(), RECORDS_FILE: text}
