"""The station's signing key: where it is, making it once at enrolment, loading it safely.

Each station has one Ed25519 private key (``cryptography``); it signs every message the
station publishes (sync/wire/signing.py says what is signed). It is found, in this order, at
``[mqtt] signing_key``, as the systemd credential ``signing-key``
(``LoadCredential=signing-key:/etc/recdock/signing-key``), or at ``<home>/signing-key``. The
file is PEM (PKCS#8) and must be readable by its owner only (0400 or 0600, like ssh's keys):
a key others can read is refused with the command that fixes it. ``recdock enrol`` makes it
(0400, never over an existing key unless asked to re-key) and prints the public key the
central store enrols.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from agent.config.links import MqttConfig, credential_path
from agent.errors import ConfigError

logger = logging.getLogger(__name__)

SIGNING_KEY_CREDENTIAL = "signing-key"
HOME_KEY_NAME = "signing-key"


def signing_key_path(mqtt: MqttConfig, home: Path) -> Path:
    """Where this station's signing key is (or is to be made)."""
    if mqtt.signing_key is not None:
        return mqtt.signing_key
    credential = credential_path(SIGNING_KEY_CREDENTIAL)
    if credential is not None and credential.exists():
        return credential
    return home / HOME_KEY_NAME


def load_signing_key(path: Path):  # -> Ed25519PrivateKey
    """The private key at ``path``; :class:`ConfigError` says what is wrong and what to do."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no signing key; make one with `recdock enrol` and enrol its public key "
            "at the central store (docs/deployment.md, enrolment)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the signing key: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        _check_private(path, st)
        data = f.read()
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the signing key must be an Ed25519 key")
    return key


def _check_private(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: the signing key is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: the signing key is readable by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 0400 {path}` (and re-key if others "
            "may have read it)"
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{path}: the signing key belongs to uid {st.st_uid}, not to this service "
            f"(uid {os.geteuid()}); chown it"
        )


def create_signing_key(path: Path, *, replace: bool = False):  # -> Ed25519PrivateKey
    """Make a new key at ``path`` (mode 0400, fsynced). Refuses to replace an existing key
    unless ``replace`` (re-keying: the central store must enrol the new public key)."""
    from sync.wire.keyfile import write_new_key

    if path.exists() and not replace:
        raise ConfigError(
            f"{path}: a signing key exists already; `recdock enrol` shows its public key, "
            "`recdock enrol --rekey` replaces it"
        )
    key = write_new_key(path, 0o400)
    logger.info("signing key: made %s", path)
    return key
