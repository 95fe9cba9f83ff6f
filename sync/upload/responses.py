"""What the central store's answers mean: HTTP statuses to upload errors, and tus headers read.

:func:`check_status` returns for a 2xx and raises the matching error otherwise: ``_Retry`` for
what is worth another attempt (423, 429, 5xx, and 413 with ``Retry-After``: a temporary
refusal, such as a centre short of disk space), ``_UploadGone`` for an upload URL the server
does not know (404, 410), an :class:`~sync.upload.errors.UploadError` for the rest. The other
functions read one header or the JSON body of an answer, ``None`` (or a default) when absent
or malformed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from sync.upload.errors import (
    UploadAuthError,
    UploadForbidden,
    UploadHashMismatch,
    UploadRejected,
    _Retry,
    _UploadGone,
)
from sync.wire.tusmeta import ascii_int, decode_metadata

#: Status of a receipt whose hash did not match (the tus checksum extension's code).
STATUS_HASH_MISMATCH = 460
RETRY_STATUSES = frozenset({423, 429, 500, 502, 503, 504})
#: What requests raises for a failure worth another attempt (a cut, a timeout).
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def check_status(resp: requests.Response, path: Path, what: str) -> None:
    """Raise the right error for a failed response; return for 2xx."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    asked = retry_after(resp, None)
    # 413 with Retry-After: the centre cannot take it now (its disk is short), later it can
    if code in RETRY_STATUSES or code >= 500 or (code == 413 and asked is not None):
        raise _Retry(f"{what}: HTTP {code} ({_reason(resp)})", retry_after=asked)
    detail = _reason(resp)
    if code == 401:
        raise UploadAuthError(
            f"{path}: the central store refused the station token ({what}, {detail}); "
            "check the station's credentials",
            path=path,
        )
    if code == 403:
        raise UploadForbidden(
            f"{path}: the central store forbids this station to {what} ({detail}); "
            "check the station id in the configuration and its token",
            path=path,
        )
    if code in (404, 410):
        raise _UploadGone(f"{what}: HTTP {code}")
    if code == STATUS_HASH_MISMATCH:
        raise UploadHashMismatch(
            f"{path}: the central store found another hash than the file's ({detail}); "
            "re-send the file from zero",
            path=path,
            reason=json_body(resp),
        )
    if code == 413:
        raise UploadRejected(
            f"{path}: too large for the central store ({detail})", path=path, status=code
        )
    raise UploadRejected(
        f"{path}: the central store refused to {what}: HTTP {code} ({detail})",
        path=path,
        status=code,
    )


def int_header(resp: requests.Response, name: str) -> int | None:
    """A numeric header in ASCII digits (``Upload-Offset: ²`` is no number), else None."""
    value = resp.headers.get(name)
    return ascii_int(value.strip()) if value is not None else None


def origin(url: str) -> tuple[str, str, int | None]:
    """A URL's origin: scheme, host and port (the scheme's default port when none is given)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is no number: an origin nothing else has
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def on_origin(url: str, endpoint: str, path: Path, what: str) -> str:
    """``url`` when it is on the endpoint's origin, else UploadRejected: the station token is
    sent to the endpoint's origin only, never where a ``Location`` or ``Upload-Receipt`` of
    the server points elsewhere."""
    if origin(url) != origin(endpoint):
        raise UploadRejected(
            f"{path}: the central store named {what} on another origin ({url}, not "
            f"{endpoint}); the station token is not sent there. Check the endpoint URL and "
            "the Host header the central's proxy passes on",
            path=path,
        )
    return url


def receipt_link(resp: requests.Response, url: str) -> str | None:
    value = resp.headers.get("Upload-Receipt")
    return urljoin(url, value) if value else None


def remote_sha256(resp: requests.Response) -> str | None:
    try:
        return decode_metadata(resp.headers.get("Upload-Metadata")).get("sha256")
    except ValueError:
        return None


def retry_after(resp: requests.Response, default: float | None) -> float | None:
    """``Retry-After`` in seconds (ASCII digits; at least 0.05), else ``default``."""
    seconds = int_header(resp, "Retry-After")
    return default if seconds is None else max(0.05, float(seconds))


def json_body(resp: requests.Response) -> dict[str, Any] | None:
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _reason(resp: requests.Response) -> str:
    data = json_body(resp)
    if data:
        return str(data.get("detail") or data.get("error") or data)
    return (resp.text or resp.reason or "").strip()[:200]
