"""The station's tus 1.0 uploader (core + creation + termination) on ``requests``.

One recording goes out as one tus upload:

1. ``POST`` to the endpoint with ``Upload-Length`` and ``Upload-Metadata`` (``sha256``, ``sm3``
   when known, and the recording's descriptive metadata, each value base64 as the spec says).
   The ``Location`` is handed to ``on_url`` at once, so the station can store it in its catalog
   and resume after a crash.
2. ``PATCH`` chunks of at most ``chunk_size`` bytes, streamed from the file through one reused
   buffer: memory stays bounded whatever the file size. After a connection error, a timeout or a
   5xx the uploader waits (exponential backoff), asks the server for its offset with ``HEAD`` and
   continues from there, so at most the bytes in flight of one chunk are sent twice.
3. After the last byte, the receipt. A recdock central store answers the last ``PATCH`` (and a
   ``HEAD`` of a complete upload) with an ``Upload-Receipt`` header: the URL of the upload's
   receipt. ``GET`` on it answers ``202`` while the server re-reads and hashes the stored file
   (``Retry-After`` says when to ask again), ``200`` with the receipt as JSON once the hash
   matched, and ``460`` with a JSON reason when it did not; the uploader polls until
   ``receipt_timeout``. A plain tus server (tusd, tuspyserver) sends no ``Upload-Receipt``: the
   upload then returns a :class:`Receipt` with ``verified=False`` and ``object_id=None``, and the
   station must not count the file as synced (rule 4 (docs/architecture.md): only a receipt that
   confirmed the hash lets a local file be purged).

A creation ``POST`` whose ``sha256`` the server already holds is answered ``201`` with an
``Upload-Offset`` equal to ``Upload-Length`` and an ``Upload-Receipt``: no byte is sent again.

This module keeps the conversation: :class:`TusUploader` and its upload loop. Beside it:
sync/upload/chunks.py (a PATCH body, the token bucket), sync/upload/responses.py (what a status
or a header means), sync/upload/receipt.py (the receipt, read and checked) and
sync/upload/errors.py (the errors; the ones a caller catches are importable from here too).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from agent.store.io import aligned_buffer, set_direct
from sync.upload.chunks import ChunkBody, TokenBucket
from sync.upload.errors import (
    UploadAuthError,
    UploadError,
    UploadForbidden,
    UploadHashMismatch,
    UploadReceiptInvalid,
    UploadReceiptTimeout,
    UploadRejected,
    UploadRetriesExhausted,
    UploadStopped,
    _Retry,
    _UploadGone,
)
from sync.upload.receipt import Receipt, read_receipt
from sync.upload.responses import (
    STATUS_HASH_MISMATCH,
    TRANSIENT_ERRORS,
    check_status,
    int_header,
    json_body,
    on_origin,
    origin,
    receipt_link,
    remote_sha256,
    retry_after,
)
from sync.wire.tusmeta import TUS_VERSION, encode_metadata

# The client's public face: what a caller of TusUploader uses and catches, wherever it lives.
__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "STATUS_HASH_MISMATCH",
    "Receipt",
    "TokenBucket",
    "TusUploader",
    "UploadAuthError",
    "UploadError",
    "UploadForbidden",
    "UploadHashMismatch",
    "UploadReceiptInvalid",
    "UploadReceiptTimeout",
    "UploadRejected",
    "UploadRetriesExhausted",
    "UploadStopped",
]

logger = logging.getLogger(__name__)

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
_PIECE = 4 * 1024 * 1024  # bytes handed to the socket at a time; also the token-bucket granularity


@dataclass
class _Transfer:
    """One file's upload under way: where it stands on the server, and its retry count.

    Its methods keep the rules of the upload loop: progress the server acknowledged starts the
    retry count again, and an upload the server no longer knows is created anew once.
    """

    f: Any
    path: Path
    size: int
    sha256: str
    meta: Mapping[str, str]
    bufs: tuple[Any, Any]
    on_url: Callable[[str], None] | None
    on_progress: Callable[[int, int], None] | None
    url: str | None
    offset: int | None = None
    receipt_url: str | None = None
    attempt: int = 0
    acked: int = -1  # highest offset the server acknowledged: progress resets the retry count
    created_again: bool = False

    def located(self, offset: int | None, receipt_url: str | None) -> bool:
        """The server's offset after a HEAD; False (and no URL) when it holds another file."""
        self.offset, self.receipt_url = offset, receipt_url
        if offset is None:
            logger.warning("%s: %s holds another file; creating anew", self.path, self.url)
            self.url = None
            return False
        if offset > self.acked:
            self.attempt, self.acked = 0, offset
        return True

    def acknowledged(self, resp: requests.Response, offset: int) -> None:
        """A PATCH went through: the new offset, progress reported, the retry count reset."""
        self.offset = offset
        self.attempt, self.acked = 0, offset
        if self.on_progress is not None:
            self.on_progress(offset, self.size)
        self.receipt_url = receipt_link(resp, self.url) or self.receipt_url

    def gone(self, exc: _UploadGone) -> None:
        """The server no longer knows the upload: create it anew, but only once."""
        if self.url is None or self.created_again:
            raise UploadRejected(
                f"{self.path}: {exc}; check the central URL", path=self.path
            ) from exc
        logger.warning("%s: upload %s is gone (%s); creating anew", self.path, self.url, exc)
        self.url, self.offset, self.created_again = None, None, True

    def failed(self, exc: Exception, retries: int) -> int:
        """Count a transient failure (raise once ``retries`` are spent); the attempt number."""
        self.attempt += 1
        if self.attempt > retries:
            raise UploadRetriesExhausted(
                f"{self.path}: upload failed after {retries} retries ({exc}); it will "
                f"resume from {self.url or 'a new upload'} on the next attempt",
                path=self.path,
            ) from exc
        logger.info("%s: %s; retry %d/%d", self.path, exc, self.attempt, retries)
        return self.attempt


def _tell(on_contact: Callable[[BaseException | None], None] | None, exc) -> None:
    """Tell ``on_contact`` how a request ended; keeping the centre's link state never fails
    an upload."""
    if on_contact is not None:
        try:
            on_contact(exc)
        except Exception:
            logger.exception("the centre's link state could not be kept")


def _resumable(upload_url: str | None, endpoint: str, path: Path) -> str | None:
    """A stored upload URL to resume, or None when it is on another origin than the endpoint
    (the endpoint changed since): the token goes to the endpoint's origin only."""
    if upload_url is not None and origin(upload_url) != origin(endpoint):
        logger.warning(
            "%s: the stored upload %s is not on the endpoint's origin (%s); creating anew",
            path,
            upload_url,
            endpoint,
        )
        return None
    return upload_url


class TusUploader:
    """Upload files to one tus 1.0 endpoint with a station's bearer token."""

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float | tuple[float, float] = (5, 60),
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        bandwidth_limit: int | None = None,
        receipt_timeout: float = 600.0,
        session: requests.Session | None = None,
        verify: bool | str = True,
        ca_file: str | os.PathLike[str] | None = None,
        buffer_size: int = _PIECE,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.endpoint = endpoint
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.receipt_timeout = receipt_timeout
        self.bucket = TokenBucket(bandwidth_limit) if bandwidth_limit else None
        self.session = session or requests.Session()
        self.session.verify = str(ca_file) if ca_file is not None else verify
        self._token = token
        self._buffer_size = max(4096, min(buffer_size, chunk_size))
        #: Body bytes handed to the socket by this uploader, over its lifetime.
        self.bytes_sent = 0
        #: When set, every wait (a retry's backoff, a receipt not ready yet) ends at once
        #: with UploadStopped: a stopping station does not wait out ``receipt_timeout``.
        self.stop: threading.Event | None = None
        #: Told of each request's end: None (answered) or its exception (centrelink.py).
        self.on_contact: Callable[[BaseException | None], None] | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if extra:
            headers.update(extra)
        return headers

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        try:
            resp = self.session.request(method, url, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            _tell(self.on_contact, exc)
            raise
        _tell(self.on_contact, None)
        return resp

    def _sleep_backoff(
        self, attempt: int, asked: float | None = None, path: Path | None = None
    ) -> None:
        """Wait before retry ``attempt``: the doubling backoff, or longer when the server
        asked for longer (``Retry-After``), never more than ``max_backoff``."""
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        if asked is not None:
            delay = min(self.max_backoff, max(delay, asked))
        self._wait(
            delay,
            f"{path}: stopped during a retry's backoff; the upload resumes from the server's "
            "offset on the next pass",
            path,
        )

    def _wait(self, seconds: float, why: str, path: Path | None) -> None:
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds):
            raise UploadStopped(why, path=path)

    # -- tus steps -----------------------------------------------------------------------------

    def _create(self, path: Path, size: int, meta: Mapping[str, str]) -> requests.Response:
        resp = self._request(
            "POST",
            self.endpoint,
            headers={"Upload-Length": str(size), "Upload-Metadata": encode_metadata(meta)},
        )
        if resp.status_code in (404, 410):
            raise UploadRejected(
                f"{path}: the upload endpoint {self.endpoint} does not exist (HTTP "
                f"{resp.status_code}); check the central URL",
                path=path,
                status=resp.status_code,
            )
        check_status(resp, path, "create an upload")
        if resp.status_code != 201 or "Location" not in resp.headers:
            raise UploadRejected(
                f"{path}: the server answered the creation with HTTP {resp.status_code} and no "
                "Location; is the endpoint a tus 1.0 server?",
                path=path,
                status=resp.status_code,
            )
        return resp

    def _head(self, url: str, path: Path) -> requests.Response:
        resp = self._request("HEAD", url, headers={"Cache-Control": "no-store"})
        check_status(resp, path, "ask for the upload offset")
        return resp

    def _server_offset(self, url: str, path: Path, size: int, sha256: str):
        """HEAD: (offset, receipt URL); offset None when the upload holds another file."""
        resp = self._head(url, path)
        remote_len = int_header(resp, "Upload-Length")
        remote_sha = remote_sha256(resp)
        if remote_len not in (None, size) or remote_sha not in (None, sha256):
            return None, None
        offset = int_header(resp, "Upload-Offset")
        if offset is None:
            raise _Retry("HEAD answer without Upload-Offset")
        return offset, receipt_link(resp, url)

    def _patch(self, url: str, path: Path, f, offset: int, size: int, bufs):
        length = min(self.chunk_size, size - offset)
        f.seek(offset)
        counter = [0]
        body = ChunkBody(f.fileno(), str(path), length, bufs, counter, self.bucket)
        try:
            resp = self._request(
                "PATCH",
                url,
                data=body,
                headers={"Upload-Offset": str(offset), "Content-Type": OFFSET_CONTENT_TYPE},
            )
        finally:
            body.close()
            self.bytes_sent += counter[0]
        if resp.status_code == 409:
            raise _Retry("offset mismatch (409)")
        check_status(resp, path, "send data")
        new_offset = int_header(resp, "Upload-Offset")
        if new_offset is None:
            raise _Retry("PATCH answer without Upload-Offset")
        return resp, new_offset

    # -- public API ----------------------------------------------------------------------------

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        sha256: str,
        sm3: str | None = None,
        metadata: Mapping[str, str] | None = None,
        upload_url: str | None = None,
        on_url: Callable[[str], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Receipt:
        """Upload ``path`` (resuming ``upload_url`` when given) and return the server's receipt.

        Raises :class:`UploadHashMismatch` when the server found another hash (re-send from zero,
        without ``upload_url``), and other :class:`UploadError` subclasses otherwise.
        """
        path = Path(path)
        sha256 = sha256.lower()
        meta: dict[str, str] = {"filename": path.name}
        meta.update(metadata or {})
        meta["sha256"] = sha256
        if sm3:
            meta["sm3"] = sm3.lower()
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UploadError(f"{path}: cannot open for upload: {exc}", path=path) from exc
        upload_url = _resumable(upload_url, self.endpoint, path)
        with f:
            # read from the disk into the send buffers, not through the page cache (where the
            # file system allows it; a piece O_DIRECT refuses is read through the cache)
            set_direct(f.fileno(), True)
            size = os.fstat(f.fileno()).st_size
            return self._upload(f, path, size, sha256, meta, upload_url, on_url, on_progress)

    def _upload(self, f, path, size, sha256, meta, upload_url, on_url, on_progress) -> Receipt:
        bufs = (aligned_buffer(self._buffer_size), aligned_buffer(self._buffer_size))
        t = _Transfer(f, path, size, sha256, meta, bufs, on_url, on_progress, url=upload_url)
        while True:
            try:
                if self._send(t):
                    break
            except _UploadGone as exc:
                t.gone(exc)
            except (_Retry, *TRANSIENT_ERRORS) as exc:
                asked = getattr(exc, "retry_after", None)
                self._sleep_backoff(t.failed(exc, self.retries), asked, path=path)
                t.offset = None  # ask the server where it stands
        assert t.url is not None
        if t.receipt_url is None:
            logger.info("%s: uploaded to %s; the server gives no receipt", path, t.url)
            return Receipt(sha256, size, None, None, False, t.url)
        on_origin(t.receipt_url, self.endpoint, path, "the receipt (Upload-Receipt)")
        return self._fetch_receipt(t.receipt_url, t.url, path, sha256, size)

    def _send(self, t: _Transfer) -> bool:
        """Create or locate the upload, then PATCH up to its end; False: go round again."""
        if t.url is None:
            self._begin(t)
        elif t.offset is None:
            where = self._server_offset(t.url, t.path, t.size, t.sha256)
            if not t.located(*where):
                return False
        while t.offset < t.size:
            t.acknowledged(*self._patch(t.url, t.path, t.f, t.offset, t.size, t.bufs))
        if t.offset > t.size:
            raise UploadRejected(
                f"{t.path}: server reports offset {t.offset} beyond the file's {t.size} bytes",
                path=t.path,
            )
        return True

    def _begin(self, t: _Transfer) -> None:
        """tus creation: a new upload, its URL handed to ``on_url`` at once."""
        resp = self._create(t.path, t.size, t.meta)
        location = urljoin(self.endpoint, resp.headers["Location"])
        t.url = on_origin(location, self.endpoint, t.path, "the upload (Location)")
        logger.info("%s: upload created at %s", t.path, t.url)
        if t.on_url is not None:
            t.on_url(t.url)
        t.offset = int_header(resp, "Upload-Offset") or 0
        t.receipt_url = receipt_link(resp, t.url)

    def _fetch_receipt(self, receipt_url, url, path, sha256, size) -> Receipt:
        """Poll the receipt URL until the centre verified the file (or the deadline passed)."""
        deadline = time.monotonic() + self.receipt_timeout
        attempt = 0
        while True:
            resp = None
            try:
                resp = self._request("GET", receipt_url, headers={"Accept": "application/json"})
                if resp.status_code != 202:
                    check_status(resp, path, "fetch the receipt")
                    break
                attempt = 0
                wait = retry_after(resp, 1.0)
            except (_Retry, *TRANSIENT_ERRORS) as exc:
                attempt += 1
                if attempt > self.retries:
                    raise UploadRetriesExhausted(
                        f"{path}: could not fetch the receipt {receipt_url} ({exc}); ask again "
                        "later",
                        path=path,
                    ) from exc
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            except _UploadGone as exc:
                raise UploadRejected(
                    f"{path}: the receipt {receipt_url} is unknown to the server; re-send",
                    path=path,
                ) from exc
            if time.monotonic() + wait > deadline:
                raise UploadReceiptTimeout(
                    f"{path}: no receipt from {receipt_url} within {self.receipt_timeout:.0f} s; "
                    "ask again later (the upload is complete)",
                    path=path,
                )
            self._wait(
                wait,
                f"{path}: stopped while waiting for the receipt {receipt_url}; the upload is "
                "complete and the next pass asks for the receipt again",
                path,
            )
        return read_receipt(json_body(resp) or {}, path, sha256, size, url)

    def terminate(self, upload_url: str) -> None:
        """tus termination: ask the server to drop an unfinished upload (404/410 count as done)."""
        resp = self._request("DELETE", upload_url)
        if resp.status_code in (204, 200, 404, 410):
            return
        try:
            check_status(resp, Path(upload_url), "terminate the upload")
        except _Retry as exc:  # busy or failing: no retry loop here; the server expires it
            raise UploadError(
                f"{upload_url}: termination answered HTTP {resp.status_code}; the central "
                "store drops the unfinished upload when it expires",
                path=upload_url,
            ) from exc
        raise UploadRejected(f"{upload_url}: termination answered HTTP {resp.status_code}")

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> TusUploader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
