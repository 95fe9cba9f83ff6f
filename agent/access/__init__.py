"""Approved access to footage (rule clauses 12, 13, 34, 35): who the person at the station is
(``people``), whether an approval lets footage leave (``approval``), and the export of two
labelled BagIt copies from the store (``export``, ``bag``, ``label``). docs/access.md and
docs/export.md tell the rules; the catalog keeps the requests and the log
(agent/catalog/access.py, access_log.py)."""
