"""Names from a recorder are untrusted bytes: map them to safe store paths and back.

Every path component a recorder presents (file names, and serials or officer ids
read from its status file, which end up in store paths) is encoded so that:

- it is never empty, ``.`` or ``..``, never contains ``/``, ``\\`` or control
  characters, never starts with our temp-file prefix, and fits in 255 bytes;
- valid UTF-8 text (Chinese names included) stays readable;
- every other byte, and ``%`` itself, becomes ``%XX``.

``decode_component(encode_component(b)) == b`` for every component that fits
(tests/test_names.py checks it with hypothesis). A component too long for the file
system is cut and given a hash suffix; the catalog keeps the original name.
"""

from __future__ import annotations

import hashlib
import re

MAX_COMPONENT = 255
# Characters escaped even though they are valid UTF-8: separators, control
# characters, and what other file systems (FAT, NTFS, S3 keys) refuse.
_UNSAFE = set('%/\\:*?"<>|') | {chr(c) for c in range(0x20)} | {"\x7f"}
_ESCAPE = re.compile(rb"%([0-9A-F]{2})")


def _escape_text(text: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _UNSAFE else ch for ch in text)


def encode_bytes(raw: bytes) -> str:
    """Percent-escape invalid UTF-8 bytes and unsafe characters; keep the rest."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        try:
            # decode the longest valid run starting here
            chunk = raw[i:].decode("utf-8")
            out.append(_escape_text(chunk))
            break
        except UnicodeDecodeError as exc:
            good = raw[i : i + exc.start].decode("utf-8")
            out.append(_escape_text(good))
            bad = raw[i + exc.start : i + exc.end]
            out.extend(f"%{b:02X}" for b in bad)
            i += exc.end
    return "".join(out)


def decode_text(text: str) -> bytes:
    """Inverse of :func:`encode_bytes`."""
    data = text.encode("utf-8")
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def encode_component(raw: bytes) -> str:
    """One safe path component for the store."""
    text = encode_bytes(raw)
    if text in ("", ".", ".."):
        text = "".join(f"%{b:02X}" for b in raw) or "%00"
    if text.startswith(".recdock-"):
        text = "%2E" + text[1:]
    if len(text.encode("utf-8")) > MAX_COMPONENT:
        digest = hashlib.sha256(raw).hexdigest()[:12]
        room = MAX_COMPONENT - len(digest) - 1
        cut = text.encode("utf-8")[:room].decode("utf-8", "ignore")
        cut = cut[: cut.rfind("%")] if re.search(r"%[0-9A-F]?$", cut) else cut
        text = f"{cut}~{digest}"
    return text


def decode_component(text: str) -> bytes:
    return decode_text(text)


def encode_relpath(raw: bytes) -> str:
    """A recorder-relative path (``/``-separated bytes) as a safe relative store path.

    Absolute paths and ``..`` cannot escape: every component is encoded on its own,
    and empty components (leading ``/``, ``//``) are dropped.
    """
    parts = [p for p in raw.split(b"/") if p != b""]
    if not parts:
        raise ValueError("empty path")
    return "/".join(encode_component(p) for p in parts)


def decode_relpath(text: str) -> bytes:
    """Inverse of :func:`encode_relpath` for every path whose components fit."""
    return b"/".join(decode_component(c) for c in text.split("/"))


def display(raw: bytes) -> str:
    """The readable, reversible text form of a recorder path (for catalog and messages).

    Components are escaped on their own and joined with ``/``.
    """
    return "/".join(encode_bytes(p) for p in raw.split(b"/"))


def safe_label(value: str | None, fallback: str = "unknown") -> str:
    """A serial, officer id or unit from a recorder, safe as one path component."""
    if value is None or str(value).strip() == "":
        return fallback
    return encode_component(str(value).strip().encode("utf-8", "surrogateescape"))
