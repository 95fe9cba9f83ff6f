"""Damage a real FAT32 image the way a failing or lying recorder does, without mounting it.

A recorder is a USB mass-storage device: its firmware (or its failing card) can change any
sector under the station. These helpers do the same to an image made by
agent.recorder.simulated.build_fat_image: rewrite a file's clusters in place (its directory
entry, size and modification time untouched), cut a cluster chain short, leave clusters
allocated to no file, set the "not cleanly unmounted" flag. mtools (``mshowfat``) names a file's
clusters; the FAT and the data area are found from the boot sector.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

FAT32_EOC = 0x0FFFFFFF
#: bit 27 of FAT[1] on FAT32: set when the volume was unmounted cleanly
CLEAN_SHUTDOWN = 0x08000000
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class Geometry:
    bytes_per_sector: int
    sectors_per_cluster: int
    reserved: int
    fats: int
    fat_sectors: int
    total_sectors: int

    @property
    def cluster_bytes(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    def fat_entry(self, copy: int, cluster: int) -> int:
        """Byte offset of ``cluster``'s entry in FAT number ``copy``."""
        return (self.reserved + copy * self.fat_sectors) * self.bytes_per_sector + cluster * 4

    @property
    def clusters(self) -> int:
        """Data clusters of the volume: numbered 2 .. clusters + 1 (the FAT may have more
        entries, which belong to no cluster)."""
        data = self.total_sectors - self.reserved - self.fats * self.fat_sectors
        return data // self.sectors_per_cluster

    def cluster_offset(self, cluster: int) -> int:
        """Byte offset of the first byte of data cluster ``cluster`` (clusters start at 2)."""
        data = (self.reserved + self.fats * self.fat_sectors) * self.bytes_per_sector
        return data + (cluster - 2) * self.cluster_bytes


def geometry(image: Path) -> Geometry:
    with image.open("rb") as fh:
        boot = fh.read(512)
    return Geometry(
        bytes_per_sector=struct.unpack_from("<H", boot, 11)[0],
        sectors_per_cluster=boot[13],
        reserved=struct.unpack_from("<H", boot, 14)[0],
        fats=boot[16],
        fat_sectors=struct.unpack_from("<I", boot, 36)[0],
        total_sectors=struct.unpack_from("<H", boot, 19)[0]
        or struct.unpack_from("<I", boot, 32)[0],
    )


def clusters_of(image: Path, path: str) -> list[int]:
    """The clusters of the file at ``path`` (``DCIM/100RDSIM/X.MP4``), in chain order."""
    out = subprocess.run(
        ["mshowfat", "-i", str(image), f"::/{path}"],
        check=True,
        capture_output=True,
        text=True,
        env=MTOOLS_ENV,
    ).stdout
    found: list[int] = []
    for first, last in re.findall(r"<(\d+)-(\d+)>", out):
        found.extend(range(int(first), int(last) + 1))
    return found


def set_fat_entry(image: Path, cluster: int, value: int) -> None:
    """Write ``value`` into ``cluster``'s entry of every FAT copy."""
    g = geometry(image)
    with image.open("r+b") as fh:
        for copy in range(g.fats):
            fh.seek(g.fat_entry(copy, cluster))
            fh.write(struct.pack("<I", value))


def fat_entry(image: Path, cluster: int) -> int:
    g = geometry(image)
    with image.open("rb") as fh:
        fh.seek(g.fat_entry(0, cluster))
        return struct.unpack("<I", fh.read(4))[0]


def cut_chain(image: Path, path: str, keep: int) -> int:
    """End the file's cluster chain after ``keep`` clusters: the rest of its clusters are lost
    (allocated to no file) while its directory entry still gives the full size. Returns the
    bytes the chain still holds."""
    chain = clusters_of(image, path)
    assert 0 < keep < len(chain), (keep, len(chain))
    set_fat_entry(image, chain[keep - 1], FAT32_EOC)
    return keep * geometry(image).cluster_bytes


def orphan_chain(image: Path, clusters: int = 4) -> list[int]:
    """Allocate a chain of free clusters near the end of the volume to no file (a lost
    chain, as a write cut short by a pulled card leaves): every file still reads right."""
    last = geometry(image).clusters + 1
    free = [c for c in range(last - 64, last + 1) if fat_entry(image, c) == 0][:clusters]
    assert len(free) == clusters, "no free clusters at the end of the image"
    for here, nxt in zip(free, free[1:], strict=False):
        set_fat_entry(image, here, nxt)
    set_fat_entry(image, free[-1], FAT32_EOC)
    return free


def overwrite_in_place(image: Path, path: str, offset: int, data: bytes) -> None:
    """Rewrite bytes of a file inside the image, as the recorder's own firmware would: the
    directory entry (size, modification time) is not touched."""
    g = geometry(image)
    chain = clusters_of(image, path)
    with image.open("r+b") as fh:
        done = 0
        while done < len(data):
            pos = offset + done
            cluster = chain[pos // g.cluster_bytes]
            within = pos % g.cluster_bytes
            n = min(g.cluster_bytes - within, len(data) - done)
            fh.seek(g.cluster_offset(cluster) + within)
            fh.write(data[done : done + n])
            done += n
        fh.flush()
        os.fsync(fh.fileno())


def set_dirty(image: Path) -> None:
    """Mark the volume as not cleanly unmounted (a recorder pulled while mounted read-write)."""
    set_fat_entry(image, 1, fat_entry(image, 1) & ~CLEAN_SHUTDOWN)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fsck_clean(image: Path) -> bool:
    """What dosfstools itself says of the image (read-only check)."""
    done = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, check=False)
    return done.returncode == 0
