"""An Ed25519 private key made once into a file of its own: PEM (PKCS#8, unencrypted), written
to a temporary name with ``mode``, fsynced, renamed into place and its folder fsynced, so a
crash leaves either no key or the whole key. The station's key (agent/config/keys.py) and the
centre's (central/signing_key.py) are both made here; each says itself who may replace one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_new_key(path: Path, mode: int) -> Ed25519PrivateKey:
    """A new key, written durably at ``path`` with ``mode`` (replacing what is there)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.new")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key
