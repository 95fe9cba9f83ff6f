"""tus 1.0 ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs, both ways.

Shared by the station's uploader and the central store (the keys they exchange are listed in
docs/central.md), with :func:`ascii_int`, the one way both read a numeric header.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

TUS_VERSION = "1.0.0"
#: A tus number (``Upload-Length``, ``Upload-Offset``): ASCII digits only, at most 20 of them
#: (2**64 has 20). ``str.isdigit()`` also says yes to "²" and "١٢", which ``int()`` refuses or
#: reads as another number.
_ASCII_NUMBER = re.compile(r"[0-9]{1,20}")


def ascii_int(value: str | None) -> int | None:
    """The non-negative integer ``value`` spells in ASCII digits, or None for anything else
    (absent, empty, signs, spaces, other scripts' digits, more than 20 digits)."""
    if value is None or not _ASCII_NUMBER.fullmatch(value):
        return None
    return int(value)


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs (tus 1.0)."""
    parts = []
    for key, value in metadata.items():
        if not key or not key.isascii() or any(c in key for c in " ,\t\r\n"):
            raise ValueError(f"tus metadata key {key!r} must be ASCII without spaces or commas")
        encoded = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        parts.append(f"{key} {encoded}" if encoded else key)
    return ",".join(parts)


def decode_metadata(header: str | None) -> dict[str, str]:
    """Inverse of :func:`encode_metadata`; raises ValueError on malformed input."""
    result: dict[str, str] = {}
    if not header:
        return result
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    return result
