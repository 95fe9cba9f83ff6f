"""The store's names: what lies where (docs/architecture.md, The store).

store/.catalog-id                                    ties the store to its catalog
store/YYYY/MM/DD/<serial>/<session>/media/<path>     the recordings, read-only
store/YYYY/MM/DD/<serial>/<session>/manifest-sha256.txt
store/YYYY/MM/DD/<serial>/<session>/session.json
store/YYYY/MM/DD/<serial>/<session>/purged-sha256-<when>.txt   files purged, manifest lines
"""

from __future__ import annotations

TEMP_PREFIX = ".recdock-partial-"
# the recorder's own path of a copy whose store name was cut (names.encode_component): kept on
# the file itself, so a copy adopted after a crash is catalogued under its real name
SOURCE_XATTR = "user.recdock.source"
MARKER = ".catalog-id"
MANIFEST = "manifest-sha256.txt"
SESSION_RECORD = "session.json"
MEDIA_DIR = "media"
#: A purge pass's list of the session's files it removed (manifest lines), one per pass.
PURGED_PREFIX = "purged-sha256-"
