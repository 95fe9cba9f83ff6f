"""The central store's receipt for one uploaded file, and how the station reads one.

A recdock central store re-reads and hashes every complete upload and answers its receipt URL
with JSON naming the file's SHA-256 and size. Only a receipt that names the file's own hash and
size, and says ``verified``, lets the station count the file as synced and, one day, purge it:
rule 4 (docs/architecture.md). A plain tus server gives no receipt: the client then returns
one with ``verified=False`` and ``object_id=None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.upload.errors import UploadReceiptInvalid


@dataclass(frozen=True)
class Receipt:
    """The central store's acknowledgement of one file.

    ``verified`` is True only when the server re-hashed what it stored and it matched; only such a
    receipt marks a file synced. Against a plain tus server ``verified`` is False and
    ``object_id`` is None.
    """

    sha256: str
    size: int
    object_id: str | None
    received_at: str | None
    verified: bool
    upload_url: str
    deduplicated: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


def read_receipt(raw: dict[str, Any], path: Path, sha256: str, size: int, url: str) -> Receipt:
    """The receipt in the centre's JSON answer, once it names this file's hash and size.

    Raises :class:`~sync.upload.errors.UploadReceiptInvalid` when it names another file: the
    upload does not count, and the file is sent again.
    """
    if str(raw.get("sha256", "")).lower() != sha256 or raw.get("size") != size:
        raise UploadReceiptInvalid(
            f"{path}: receipt names sha256={raw.get('sha256')} size={raw.get('size')}, the "
            f"file has sha256={sha256} size={size}; not synced, re-send",
            path=path,
        )
    return Receipt(
        sha256=sha256,
        size=size,
        object_id=raw.get("object_id"),
        received_at=raw.get("received_at"),
        verified=bool(raw.get("verified")),
        upload_url=url,
        deduplicated=bool(raw.get("deduplicated", False)),
        raw=raw,
    )
