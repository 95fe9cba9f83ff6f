"""The audit log's hash chain, shared by the station (agent/catalog/audit.py) and the centre.

Entry ``seq`` commits to its content and to the hash of entry ``seq - 1`` (the first entry
to :data:`GENESIS`). The central store recomputes every received event's hash with this
function, so both sides must agree byte for byte; this module is that single definition.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, at: str, kind: str, subject: str, data: str) -> str:
    """The hash an audit entry commits to: its content and the previous entry's hash."""
    body = canonical({"seq": seq, "at": at, "kind": kind, "subject": subject, "data": data})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()
