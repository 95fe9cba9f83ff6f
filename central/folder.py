"""The uploads folder: each unfinished upload is a file ``<id>.part`` (the bytes received) and a
record in the receipts database (:mod:`central.catalog.uploads`: station, length, acknowledged
offset, hashes, metadata, and the lease that is its lock across workers), so any worker on the
data folder can resume it.

Rules this module keeps:

* An upload's offset is recorded only in its record, committed by :meth:`UploadFolder.save`
  (only while the caller holds the upload's lease), called once the bytes before it are
  fsynced. :meth:`UploadFolder.open_for_append` truncates the partial file back to the
  recorded offset, so bytes never acknowledged are never counted.
* Upload ids are made here (128 random bits, hex) and every id from a URL is matched against
  ``^[0-9a-f]{32}$`` before it becomes part of a path: no path traversal.
* The central store's data is its own user's: files are made 0600 and folders 0700 whatever
  the umask (:func:`private_file`, :func:`private_dir`; objects are 0400, :mod:`central.upload`).

Every method reads or writes a file or the database: call them from a worker thread, never on
the event loop.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from central.catalog import uploads

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), made with its parents if need be;
    an existing one is closed too (data of an older version was 0755)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read (0600): created empty when missing (SQLite
    takes an empty file as a new database and gives its -wal and -shm files the same mode),
    closed when it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    os.chmod(path, 0o600)
    return path


def _create_private(path: Path, flags: int) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)


def new_upload_id() -> str:
    return secrets.token_hex(16)


@dataclass
class UploadInfo:
    id: str
    station: str
    length: int
    offset: int
    sha256: str
    sm3: str | None
    metadata: dict[str, str]
    created_at: str


class UploadFolder:
    """The unfinished uploads of a store: their bytes in one folder, their records (and leases)
    in the receipts database (:mod:`central.catalog.uploads`), which every worker reaches."""

    def __init__(self, path: Path, db_path: Path) -> None:
        self.path = private_dir(path)
        self.db_path = db_path
        uploads.create_table(db_path)
        self._import_files()

    @staticmethod
    def valid_id(upload_id: str) -> bool:
        return bool(UPLOAD_ID.match(upload_id))

    def part(self, upload_id: str) -> Path:
        if not self.valid_id(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self.path / f"{upload_id}.part"

    def load(self, upload_id: str) -> UploadInfo | None:
        record = uploads.load(self.db_path, upload_id)
        return UploadInfo(**record) if record else None

    def save(self, info: UploadInfo, holder: str) -> bool:
        """Record the upload's offset durably (the database's commit), only while ``holder``
        holds its lease: False when it lost it (nothing recorded)."""
        return uploads.save_offset(self.db_path, info.id, info.offset, holder, now=time.time())

    def create(self, info: UploadInfo) -> None:
        """An empty partial file (never one that exists) and the upload's record."""
        fd = _create_private(self.part(info.id), os.O_EXCL)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path)
        uploads.insert(self.db_path, asdict(info), now=time.time())

    def open_for_append(self, info: UploadInfo):
        """Open the partial file at its durable offset (dropping any unacknowledged tail)."""
        f = open(self.part(info.id), "r+b")  # noqa: SIM115 - closed by the caller
        try:
            f.truncate(info.offset)
            f.seek(info.offset)
        except BaseException:
            f.close()
            raise
        return f

    def discard(self, upload_id: str) -> None:
        """Delete the upload's partial file and record."""
        self.part(upload_id).unlink(missing_ok=True)
        fsync_dir(self.path)
        uploads.delete(self.db_path, upload_id)

    def forget(self, upload_id: str) -> None:
        """Delete the record of an upload whose bytes were moved into the objects."""
        uploads.delete(self.db_path, upload_id)

    def records(self) -> Iterator[UploadInfo]:
        """Every upload with a record (unfinished, or complete and not yet verified)."""
        for record in uploads.records(self.db_path):
            yield UploadInfo(**record)

    def _import_files(self) -> None:
        """An older version kept each record as ``<id>.json`` beside its bytes: into the
        database, then the file goes (its mtime is its last touch)."""
        for path in self.path.glob("*.json"):
            if not self.valid_id(path.stem):
                continue
            record = json.loads(path.read_text(encoding="utf-8"))
            uploads.insert(self.db_path, record, now=path.stat().st_mtime)
            path.unlink()
        for tmp in self.path.glob("*.json.tmp"):
            tmp.unlink(missing_ok=True)
        fsync_dir(self.path)
