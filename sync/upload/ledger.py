"""What the end of an upload does to the station's catalog: receipts, rejections and faults.

Every write goes through agent.catalog (recordings, audit, faults); this module decides which.

* :func:`save_url` keeps the tus upload URL in the recording's row (its own short transaction)
  as soon as the server made it, and clears it when the upload must start anew.
* :func:`record_receipt`: a recording counts as synced only when the centre's receipt is
  verified and names the catalogued SHA-256 and size. Then ONE transaction sets ``synced_at``
  and ``receipt`` and appends the audit entry ``file.synced``, which also queues its event for
  MQTT: rule 3 (docs/architecture.md). Anything less leaves the recording unsynced, because
  only such a receipt ever lets the station purge a file: rule 4 (docs/architecture.md).
* :func:`record_rejection`: the centre found another hash. The URL is cleared and
  ``file.upload_rejected`` audited, so the next pass sends the file again from zero. The store
  copy is re-hashed: when it no longer matches the catalog, re-sending cannot help and an
  ``upload`` fault opens at once; otherwise after ``max_rejections`` rejections since the
  recording's last fault was resolved.
* :func:`record_missing`: the store copy is gone; its upload is terminated and a fault opened.
* :func:`credentials_refused` / :func:`credentials_accepted` open and resolve the station's
  ``upload-credentials`` fault.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import requests

from agent.catalog import Catalog, audit, canonical, now_utc, recordings
from agent.catalog.faults import fault_id, report_fault, resolve_fault
from agent.store.hashing import hash_file
from sync.upload.errors import UploadError, UploadHashMismatch
from sync.upload.receipt import Receipt
from sync.upload.summary import FileOutcome
from sync.upload.tus import TusUploader

logger = logging.getLogger(__name__)

#: Fault kind for one recording the central store keeps rejecting (subject: its store path).
FAULT_UPLOAD = "upload"
#: Fault kind for a station the central store does not accept (subject: the station id).
FAULT_CREDENTIALS = "upload-credentials"


def save_url(catalog: Catalog, recording_id: int, url: str | None) -> None:
    with catalog.tx() as conn:
        recordings.set_upload_url(conn, recording_id, url)


def record_receipt(catalog: Catalog, row: dict[str, Any], receipt: Receipt) -> tuple[str, str]:
    """``(status, detail)`` of a recording the centre answered with ``receipt``."""
    store_path = row["store_path"]
    if not receipt.verified or receipt.object_id is None:
        why = (
            "the server sent no receipt (a plain tus server?)"
            if receipt.object_id is None
            else "the server's receipt is not verified"
        )
        logger.warning(
            "%s: uploaded to %s but %s; not marked synced (only a receipt that confirms "
            "the hash does that)",
            store_path,
            receipt.upload_url,
            why,
        )
        return "unconfirmed", why
    if receipt.sha256 != row["sha256"] or receipt.size != row["size"]:
        logger.error(
            "%s: receipt names sha256 %s size %d, the catalog %s size %d; not synced",
            store_path,
            receipt.sha256,
            receipt.size,
            row["sha256"],
            row["size"],
        )
        save_url(catalog, row["id"], None)
        return "failed", "the receipt does not confirm the catalogued hash"
    _mark_synced(catalog, row, receipt)
    logger.info("%s: synced (%s)", store_path, receipt.object_id)
    return "synced", receipt.object_id


def _mark_synced(catalog: Catalog, row: dict[str, Any], receipt: Receipt) -> None:
    """``synced_at``, ``receipt`` and the ``file.synced`` audit entry: one transaction."""
    record = {**receipt.raw, "upload_url": receipt.upload_url}
    with catalog.tx() as conn:
        if recordings.mark_synced(
            conn,
            row["id"],
            at=now_utc(),
            receipt=canonical(record),
            upload_url=receipt.upload_url,
        ):
            audit.append(
                catalog,
                "file.synced",
                row["store_path"],
                {
                    "session_id": row["session_id"],
                    "device_serial": row["device_serial"],
                    "sha256": receipt.sha256,
                    "size": receipt.size,
                    "object_id": receipt.object_id,
                    "received_at": receipt.received_at,
                    "upload_url": receipt.upload_url,
                    "deduplicated": receipt.deduplicated,
                },
            )


def rejections_since_resolved(catalog: Catalog, store_path: str) -> int:
    """``file.upload_rejected`` entries since this recording's upload fault was resolved."""
    resolved = audit.last_seq(catalog, "fault.resolved", fault_id(FAULT_UPLOAD, store_path))
    return audit.count_since(catalog, "file.upload_rejected", store_path, resolved)


def record_rejection(
    catalog: Catalog,
    row: dict[str, Any],
    path: Path,
    exc: UploadHashMismatch,
    max_rejections: int,
) -> str:
    """The centre found another hash than the file's; the outcome's detail."""
    store_path = row["store_path"]
    intact = _store_copy_intact(row, path)
    attempt = rejections_since_resolved(catalog, store_path) + 1
    with catalog.tx() as conn:
        recordings.set_upload_url(conn, row["id"], None)
        audit.append(
            catalog,
            "file.upload_rejected",
            store_path,
            {
                "upload_url": row["upload_url"],
                "sha256": row["sha256"],
                "reason": exc.reason,
                "store_copy_intact": intact,
                "attempt": attempt,
            },
        )
    detail = _rejection_fault(row, intact, attempt, max_rejections)
    if detail is None:
        logger.warning(
            "%s: the central store found another hash (attempt %d of %d); "
            "re-sending from zero next pass",
            store_path,
            attempt,
            max_rejections,
        )
        return f"hash mismatch on the server (attempt {attempt}); re-send from zero"
    logger.error("%s", detail)
    report_fault(catalog, FAULT_UPLOAD, store_path, detail)
    return detail


def _store_copy_intact(row: dict[str, Any], path: Path) -> bool | None:
    """Whether the store copy still has its catalogued hash and size; None: unreadable."""
    try:
        local = hash_file(path, memoryview(bytearray(1024 * 1024)))
        return local.sha256 == row["sha256"] and local.size == row["size"]
    except OSError:
        logger.exception("%s: cannot re-hash the store copy", row["store_path"])
        return None


def _rejection_fault(
    row: dict[str, Any], intact: bool | None, attempt: int, max_rejections: int
) -> str | None:
    """The fault a rejection opens, or None while re-sending may still help."""
    store_path = row["store_path"]
    if intact is False:
        return (
            f"{store_path}: the store copy no longer matches its catalogued SHA-256 "
            f"{row['sha256']} (the central store rejected it); run `recdock verify` and "
            "restore the file from a backup; resolve this fault to upload it again"
        )
    if attempt >= max_rejections:
        return (
            f"{store_path}: the central store rejected the file's hash {attempt} times "
            "while the store copy is intact: the data is damaged on the way; check the "
            "network path (proxy, NIC, memory); resolve this fault to upload it again"
        )
    return None


def record_missing(
    catalog: Catalog, uploader: TusUploader, row: dict[str, Any], path: Path
) -> FileOutcome:
    """The store copy is gone: terminate its upload, open an ``upload`` fault."""
    store_path = row["store_path"]
    detail = f"{path}: the store copy is missing, so it cannot be uploaded; run `recdock verify`"
    logger.error("%s", detail)
    if row["upload_url"]:
        try:
            uploader.terminate(row["upload_url"])
            save_url(catalog, row["id"], None)
        except (UploadError, requests.RequestException):
            logger.warning("%s: could not terminate %s", store_path, row["upload_url"])
    report_fault(catalog, FAULT_UPLOAD, store_path, detail)
    return FileOutcome(store_path, "missing", detail)


def credentials_refused(catalog: Catalog, station_id: str, exc: UploadError) -> None:
    report_fault(
        catalog,
        FAULT_CREDENTIALS,
        station_id,
        f"the central store refuses this station's uploads: {exc}",
    )


def credentials_accepted(catalog: Catalog, station_id: str) -> None:
    resolve_fault(catalog, FAULT_CREDENTIALS, station_id, "uploads accepted")
