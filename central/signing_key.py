"""The centre's own Ed25519 signing key: what signs every command it sends a station.

Stations act only on commands signed by this key (sync/wire/commands.py); each holds its public
half as ``[mqtt] centre_public_key``. The key is a credential file like a station's key:
PEM (PKCS#8, unencrypted), readable by its owner only (0400 or 0600). ``recdock-central
keygen --key FILE`` makes it and prints the public key for the stations; the server reads
``--signing-key FILE`` or ``$CREDENTIALS_DIRECTORY/central-signing-key`` (systemd
``LoadCredential=``). Without a key the centre still records what people decide, and its
commands wait in the catalog until it is started with one (docs/deployment.md).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.auth import CredentialsError
from sync.wire.keyfile import write_new_key

logger = logging.getLogger(__name__)

CREDENTIAL_NAME = "central-signing-key"


def default_path() -> Path | None:
    """``$CREDENTIALS_DIRECTORY/central-signing-key`` when it exists, else None."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(cred_dir) / CREDENTIAL_NAME if cred_dir else None
    return path if path is not None and path.is_file() else None


def load_centre_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``; :class:`CredentialsError` names the file and what is wrong."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the centre's signing key: {exc}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise CredentialsError(
            f"{path}: the centre's signing key is readable by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 0600 it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialsError(f"{path}: not an Ed25519 key")
    return key


def create_centre_key(path: Path) -> Ed25519PrivateKey:
    """Make a new key at ``path`` (mode 0600, fsynced); refuses to replace one: stations would
    refuse every command until they are given the new public key."""
    if path.exists():
        raise CredentialsError(
            f"{path}: the centre's signing key exists already; `recdock-central keygen --key "
            f"{path} --show` prints its public key"
        )
    key = write_new_key(path, 0o600)
    logger.info("centre signing key: made %s", path)
    return key
