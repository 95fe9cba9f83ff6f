"""Can the station reach the central store with its token? (`recdock doctor`)

Two requests to the tus endpoint, neither of which creates anything: ``OPTIONS`` (is this a tus
1.0 server?) and ``HEAD`` of an upload that does not exist, with the station's token. The
reference central store (central/tus.py) checks the token first: 401 or 403 means it was
refused; 404 means it was accepted and, as expected, there is no such upload.
"""

from __future__ import annotations

import secrets

import requests

from agent.config import Config
from sync.wire.tusmeta import TUS_VERSION

DEFAULT_TIMEOUT_S = 5.0


def probe_endpoint(config: Config, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """(True, what was seen) when the endpoint speaks tus and accepts the token, else
    (False, why not)."""
    upload = config.upload
    token = upload.resolved_token()
    if not upload.endpoint:
        return False, "no [upload] endpoint"
    if not token:
        return False, "no token: set [upload] token, or the upload-token credential"
    verify: bool | str = str(upload.ca_file) if upload.ca_file else True
    base = upload.endpoint.rstrip("/") + "/"
    headers = {"Tus-Resumable": TUS_VERSION}
    try:
        options = requests.options(base, headers=headers, timeout=timeout, verify=verify)
        versions = options.headers.get("Tus-Version", "")
        if TUS_VERSION not in versions.split(","):
            return False, f"not a tus {TUS_VERSION} endpoint (OPTIONS: {options.status_code})"
        headers["Authorization"] = f"Bearer {token}"
        head = requests.head(
            base + f"recdock-doctor-{secrets.token_hex(8)}",
            headers=headers,
            timeout=timeout,
            verify=verify,
        )
    except requests.RequestException as exc:
        return False, f"cannot reach it: {type(exc).__name__}: {exc}"
    if head.status_code in (401, 403):
        return False, f"the central store refused the token ({head.status_code})"
    if head.status_code == 404:
        return True, f"tus {TUS_VERSION}, the token is accepted"
    return False, f"unexpected answer to HEAD: {head.status_code}"
