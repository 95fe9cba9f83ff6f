"""What a purge leaves in the store (docs/retention.md): each pass's list of a session's purged
files beside its manifest (``purged-sha256-<when>.txt``, manifest lines, written once), and the
removal of a purged file."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import CatalogError, StoreError
from agent.store.io import fsync_dir, write_once
from agent.store.layout import MARKER, PURGED_PREFIX


def belongs_to(root: Path, catalog_id: str) -> None:
    """Check, and never write, the marker: only a catalog that is the store's own may
    purge from it (docs/retention.md). :class:`CatalogError` otherwise."""
    marker = root / MARKER
    try:
        found = marker.read_text().strip()
    except OSError as exc:
        raise CatalogError(
            f"{root}: the store has no readable {MARKER} marker ({exc.strerror}); "
            "nothing is purged until the store and its catalog are restored together"
        ) from exc
    if found != catalog_id:
        raise CatalogError(
            f"{root}: the store belongs to catalog {found[:8]}…, not to this catalog "
            f"{catalog_id[:8]}… (was the catalog deleted or replaced?); nothing is purged. "
            "Restore the station's catalog.db from a backup"
        )


def write_purged_list(
    root: Path, session_dir: str, lines: list[tuple[str, str]], when: str
) -> Path:
    """A session's files a purge pass removed, as manifest lines (``sha256  path``), in a new
    write-once file beside the manifest."""
    stamp = when.replace("-", "").replace(":", "").replace("+0000", "Z").replace(".", "")
    path = root / session_dir / f"{PURGED_PREFIX}{stamp}.txt"
    write_once(path, "".join(f"{sha}  {rel}\n" for sha, rel in sorted(lines, key=lambda x: x[1])))
    return path


def purged_listed(root: Path, session_dir: str) -> dict[str, str]:
    """Every file the session's purge lists name (path in the session folder -> sha256)."""
    listed: dict[str, str] = {}
    for path in sorted((root / session_dir).glob(f"{PURGED_PREFIX}*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            sha, _, rel = line.partition("  ")
            listed[rel] = sha
    return listed


def remove_purged(root: Path, store_path: str) -> bool:
    """Remove a purged recording's file (read-only: the folder's permission is what counts)
    and sync its folder; False when it was gone already."""
    path = root / store_path
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"{path}: cannot remove the purged file: {exc.strerror}") from exc
    fsync_dir(path.parent)
    return True
