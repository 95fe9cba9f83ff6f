"""The label of an exported copy: kept in :mod:`sync.wire.label`, which the centre's export
shares (docs/export.md)."""

from sync.wire.label import LABEL_FILE, Label

__all__ = ["LABEL_FILE", "Label"]
