"""One BagIt bag (RFC 8493) from a folder of verified copies: the Library of Congress ``bagit``
package writes its manifests (sha256, sha512) and bag-info, we declare BagIt 1.0, add our tag
files, make every file and folder durable, and validate it read back from disk.

Shared by the station's export (agent/access/export.py) and the centre's
(central/access_export.py), so both make their copies the same way (docs/export.md).

Payload names never hold ``%``, CR or LF (:func:`payload_name` makes them so), so the manifest
lines are the names themselves: RFC 8493 readers, ``bagit`` and ``sha256sum -c`` read them
alike.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1024 * 1024
BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
ALGORITHMS = ("sha256", "sha512")


class BagInvalid(Exception):
    """A bag read back does not validate, or lists other payload than was copied into it."""


def payload_name(name: str, key: object, taken: set[str]) -> str:
    """``name`` as a payload path: ``%`` written as ``#`` (RFC 8493 would have it encoded in
    the manifest, which ``sha256sum -c`` does not read); a name taken already gets ``~<key>``
    before its extension. Adds the name to ``taken``."""
    name = name.replace("%", "#")
    if name in taken:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem}~{key}.{ext}" if dot and "/" not in ext else f"{name}~{key}"
    taken.add(name)
    return name


def copy_hashed(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` to a new ``dst`` (its folders made), hashing what is read from the disk
    (the source's cached pages dropped first); returns the size and sha256 read."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        os.posix_fadvise(fin.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            fout.write(chunk)
    return size, digest.hexdigest()


def make(folder: Path, info: dict[str, str], tag_files: dict[str, str]) -> None:
    """Turn ``folder`` (the payload) into a bag with ``info`` in bag-info.txt and
    ``tag_files`` (name -> text) beside it, each listed in the tag manifests."""
    import bagit

    bagit.make_bag(str(folder), bag_info=dict(info), checksums=list(ALGORITHMS))
    (folder / "bagit.txt").write_text(BAGIT_TXT, encoding="utf-8")
    for name, text in tag_files.items():
        (folder / name).write_text(text, encoding="utf-8")
    bagit.Bag(str(folder)).save()  # bag-info and tag manifests again, over every tag file


def make_durable(folder: Path) -> None:
    """fsync every file and folder of the bag, then drop their cached pages, so the check
    that follows reads what is on the disk."""
    for dirpath, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
    _fsync_dir(folder.parent)


def validate(folder: Path, expected: dict[str, str]) -> None:
    """Check the bag as ``bagit`` reads it back: structure, every fixity, and the sha256 of
    each payload file (``data/...`` -> hex) against ``expected``; :class:`BagInvalid` if not."""
    import bagit

    try:
        bag = bagit.Bag(str(folder))
        bag.validate()
    except bagit.BagError as exc:
        raise BagInvalid(f"{folder}: the copy does not validate as a bag read back: {exc}") from exc
    listed = {path: hashes.get("sha256") for path, hashes in bag.payload_entries().items()}
    if listed != expected:
        wrong = sorted(set(listed.items()) ^ set(expected.items()))[:3]
        raise BagInvalid(
            f"{folder}: the bag's sha256 manifest differs from what was copied: {wrong}"
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
