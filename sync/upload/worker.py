"""The upload worker: recordings from the station store to the central store, over tus.

This module keeps the pass loop and its scheduling. One *pass* (:meth:`UploadWorker.run_once`)
takes the catalogued recordings that have no receipt yet (``synced_at IS NULL``): held ones
first, then late ones, then the oldest offload. Each goes out with
:class:`sync.upload.tus.TusUploader`; what its end does to the catalog (the upload URL kept or
cleared, a receipt, a rejection, a fault) is sync/upload/ledger.py's. The rules it keeps:

* The tus upload URL is written to the catalog as soon as the server made it, so after a crash
  or a stop the next pass asks the server for its offset and sends only what is missing.
* A recording counts as synced only when the server's receipt confirms its hash; a server that
  gives no receipt (tusd, tuspyserver) leaves it unsynced: only a receipt ever lets the station
  purge a file, rule 4 (docs/architecture.md).
* The server rejecting the file's hash (:class:`~sync.upload.errors.UploadHashMismatch`): the
  next pass sends it again from zero, until the ledger opens an ``upload`` fault. A recording
  with an open ``upload`` fault is set aside until the fault is resolved (then its count starts
  again).
* Nothing is marked synced on a failure path. When the central store cannot be reached the
  pass ends (the URL stays, so the next pass resumes), and :meth:`run_forever` waits with an
  exponential backoff before the next pass.
* Uploads run only inside ``allowed_hours`` (local time, may wrap midnight); outside it the
  worker sleeps until the window opens, waking at once when ``stop`` is set. The bandwidth
  limit is the uploader's token bucket.
* ``stop`` is honoured between chunks (the current PATCH finishes, its offset is durable on
  the server), between files, and in every wait of the uploader (a retry's backoff, a receipt
  the centre is still verifying): a stop is never held up by ``receipt_timeout``.
* Every request is a contact with the centre, kept for the station's ``station.centre`` rule
  in ``<home>/run/centre-link.json`` (sync/upload/centrelink.py); between passes, when nothing
  was said to the centre for ``probe_every_minutes``, the worker asks it (``OPTIONS``), so an
  idle station knows too.

A pass reports in sync/upload/summary.py's :class:`~sync.upload.summary.PassSummary`.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from agent.catalog import Catalog, holds, open_catalog, recordings
from agent.catalog.faults import open_subjects
from agent.config import Config
from agent.config.links import UploadConfig, within_hours
from agent.errors import ConfigError
from sync.upload import ledger
from sync.upload.centrelink import CentreLink
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
)
from sync.upload.ledger import FAULT_UPLOAD
from sync.upload.summary import FileOutcome, PassSummary, as_dict
from sync.upload.tus import TusUploader

logger = logging.getLogger(__name__)

_WAIT_SLICE = 0.5  # seconds: how quickly a wait notices wake()
_MAX_WINDOW_WAIT = 600.0  # re-read the clock at least this often while waiting for the window

UploaderFactory = Callable[[UploadConfig], TusUploader]


def local_now() -> datetime:
    """The station's local time, aware (``allowed_hours`` is local time)."""
    return datetime.now().astimezone()


def default_uploader(upload: UploadConfig, *, backoff: float = 1.0) -> TusUploader:
    """A :class:`TusUploader` for the ``[upload]`` settings."""
    if upload.endpoint is None:
        raise ConfigError("upload.endpoint is not set: give the central store's tus URL")
    token = upload.resolved_token()
    if token is None:
        logger.warning(
            "no upload token (upload.token or the credential 'upload-token'): "
            "uploading to %s without one",
            upload.endpoint,
        )
    return TusUploader(
        upload.endpoint,
        token,
        chunk_size=upload.chunk_bytes,
        timeout=(min(10.0, upload.timeout_s), upload.timeout_s),
        retries=upload.retries,
        backoff=backoff,
        bandwidth_limit=upload.bandwidth_bytes_per_s,
        ca_file=upload.ca_file,
    )


def _check_transport(upload: UploadConfig) -> None:
    """At every start: refuse a token bound for ``http://`` unless ``insecure_lab``, and say
    so when it is allowed (the token itself is never logged)."""
    try:
        insecure = upload.token_over_plain_http(upload.resolved_token())
    except ValueError as exc:
        raise ConfigError(f"[upload] endpoint = {upload.endpoint}: {exc}") from exc
    if insecure:
        logger.warning(
            "INSECURE: [upload] insecure_lab = true: the upload token goes to %s over plain "
            "http://, readable by anyone on the network; only for a lab",
            upload.endpoint,
        )


# The worker's own control flow, plain exceptions because neither leaves this module: _send
# catches _StopUpload (raised by its progress callback), _pass catches _PassFailed.


class _StopUpload(Exception):
    """Internal: raised from the progress callback when ``stop`` is set."""


class _PassFailed(Exception):
    """Internal: the central store cannot be used right now; end the pass."""


class UploadWorker:
    """Uploads unsynced recordings of one station home; see the module docstring."""

    def __init__(
        self,
        config: Config,
        home: Path,
        *,
        stop: threading.Event,
        upload: UploadConfig | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = local_now,
        uploader_factory: UploaderFactory | None = None,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        idle_s: float = 60.0,
        max_rejections: int = 3,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """``upload`` overrides ``config.upload``; ``backoff`` is the first wait (seconds)
        after a failed pass and of the uploader's request retries, doubling up to
        ``max_backoff``; ``idle_s`` the wait after a complete pass; ``on_progress(store_path,
        offset, size)`` is called after every acknowledged chunk."""
        self.config = config
        self.upload = upload if upload is not None else config.upload
        self.home = Path(home)
        self.store_root = self.home / "store"
        self.stop = stop
        self.clock = clock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_s = idle_s
        self.max_rejections = max(1, max_rejections)
        self.on_progress = on_progress
        self._factory = uploader_factory or (lambda u: default_uploader(u, backoff=backoff))
        self._catalog = catalog
        self._own_catalog = catalog is None
        self._wake = threading.Event()
        self._window = self.upload.window()
        #: the centre's reachability for the station's rules (sync/upload/centrelink.py)
        self.link = CentreLink(self.home, self.upload) if self.upload.endpoint else None
        if self.upload.enabled:
            _check_transport(self.upload)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.home, self.config.station_id)
        return self._catalog

    def close(self) -> None:
        if self._own_catalog and self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def wake(self) -> None:
        """Start the next pass now (e.g. after an offload), instead of after the idle wait."""
        self._wake.set()

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, returning early on ``stop`` or :meth:`wake`."""
        deadline = seconds
        while deadline > 0 and not self.stop.is_set():
            if self._wake.is_set():
                break
            step = min(_WAIT_SLICE, deadline)
            if self.stop.wait(step):
                break
            deadline -= step
        self._wake.clear()

    # -- the allowed hours -----------------------------------------------------------------

    def seconds_until_window(self) -> float:
        """0 inside ``allowed_hours`` (or when none is set), else seconds until it opens."""
        if self._window is None:
            return 0.0
        now = self.clock()
        if within_hours(self._window, now.time()):
            return 0.0
        start = self._window[0]
        opens = now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
        if opens <= now:
            opens += timedelta(days=1)
        return max(1.0, (opens - now).total_seconds())

    # -- the loop --------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Passes until ``stop`` is set: back off after failures, sleep outside the window."""
        if not self.upload.enabled:
            raise ConfigError(
                "uploads are off: set [upload] enabled = true and endpoint = the central "
                "store's tus URL in the configuration"
            )
        delay = self.backoff
        logger.info("upload worker started for %s", self.upload.endpoint)
        try:
            while not self.stop.is_set():
                try:
                    summary = self.run_once()
                except Exception as exc:  # the uploader must outlive any one bad pass
                    logger.exception("upload pass crashed; next pass in %.1f s", delay)
                    summary = {"window_open": True, "opens_in_s": None, "error": repr(exc)}
                if self.stop.is_set():
                    break
                wait, delay = self._after(summary, delay)
                self._wait(self._probe(wait))
        finally:
            logger.info("upload worker stopped")

    def _after(self, summary: dict[str, Any], delay: float) -> tuple[float, float]:
        """The wait after a pass, and the next failure's backoff."""
        if not summary["window_open"]:
            wait = min(summary["opens_in_s"] or _MAX_WINDOW_WAIT, _MAX_WINDOW_WAIT)
            logger.info("outside the allowed upload hours; next look in %.0f s", wait)
            return wait, delay
        if summary["error"] is not None:
            logger.warning("upload pass failed (%s); next pass in %.1f s", summary["error"], delay)
            return delay, min(delay * 2, self.max_backoff)
        return self.idle_s, self.backoff

    def _probe(self, wait: float) -> float:
        """Ask the centre when nothing was said to it for ``probe_every_minutes``; the wait
        shortened so that the next probe is not late."""
        if self.link is None:
            return wait
        self.link.probe_when_due()
        return min(wait, self.link.probe_due_in())

    def run_once(self) -> dict[str, Any]:
        """One pass over the unsynced recordings; returns what happened (JSON-able)."""
        summary = PassSummary()
        wait = self.seconds_until_window()
        if wait > 0:
            summary.window_open, summary.opens_in_s = False, wait
            summary.remaining = self._count_unsynced()
            return as_dict(summary)
        rows, set_aside = self._candidates()
        summary.candidates, summary.set_aside = len(rows), set_aside
        if rows:
            uploader = self._factory(self.upload)
            uploader.stop = self.stop  # no backoff or receipt wait outlasts a stop
            if self.link is not None:
                uploader.on_contact = self.link.contact
            try:
                self._pass(uploader, rows, summary)
            finally:
                uploader.close()
        summary.remaining = self._count_unsynced()
        logger.info(
            "upload pass: %d synced, %d unconfirmed, %d rejected, %d failed, %d left%s",
            summary.synced,
            summary.unconfirmed,
            summary.rejected,
            summary.failed,
            summary.remaining,
            f" ({summary.error})" if summary.error else "",
        )
        return as_dict(summary)

    def _pass(self, uploader: TusUploader, rows: list[dict[str, Any]], summary: PassSummary):
        credentials_ok = False
        for row in rows:
            if self.stop.is_set():
                summary.stopped = True
                break
            wait = self.seconds_until_window()
            if wait > 0:
                summary.window_open, summary.opens_in_s = False, wait
                break
            try:
                outcome = self._upload_one(uploader, row)
            except _PassFailed as exc:
                summary.error = str(exc)
                summary.count(FileOutcome(row["store_path"], "failed", str(exc)))
                break
            summary.count(outcome)
            if outcome.status == "stopped":
                summary.stopped = True
                break
            if outcome.status == "synced" and not credentials_ok:
                credentials_ok = True
                ledger.credentials_accepted(self.catalog, self.config.station_id)

    # -- choosing recordings ---------------------------------------------------------------

    def _count_unsynced(self) -> int:
        return recordings.count_unsynced(self.catalog)

    def _candidates(self) -> tuple[list[dict[str, Any]], int]:
        """Unsynced recordings in upload order, without those set aside by an open fault."""
        rows = recordings.pending_upload(self.catalog, not_held=holds.not_held_sql("r"))
        aside = open_subjects(self.catalog, FAULT_UPLOAD)
        picked = [r for r in rows if r["store_path"] not in aside]
        return picked, len(rows) - len(picked)

    # -- one recording ---------------------------------------------------------------------

    def _metadata(self, row: dict[str, Any]) -> dict[str, str]:
        meta = {
            "station": self.config.station_id,
            "device_serial": row["device_serial"],
            "officer_id": row["officer_id"],
            "unit": row["unit"],
            "recorded_start": row["recorded_start"],
            "recorded_end": row["recorded_end"],
            "session_id": row["session_id"],
            "source_path": row["source_path"],
            "filename": PurePosixPath(row["source_path"]).name,
            # what tus clients conventionally send; some servers (tuspyserver) require it
            "filetype": mimetypes.guess_type(row["source_path"])[0] or "application/octet-stream",
        }
        return {k: str(v) for k, v in meta.items() if v is not None}

    def _upload_one(self, uploader: TusUploader, row: dict[str, Any]) -> FileOutcome:
        store_path = row["store_path"]
        path = self.store_root / store_path
        if not path.is_file():
            return ledger.record_missing(self.catalog, uploader, row, path)
        sent_before = uploader.bytes_sent
        status, detail = self._send(uploader, row, path)
        return FileOutcome(store_path, status, detail, uploader.bytes_sent - sent_before)

    def _progress(self, store_path: str) -> Callable[[int, int], None]:
        """The uploader's progress callback: reports it, and stops between chunks on ``stop``."""

        def progress(offset: int, size: int) -> None:
            if self.on_progress is not None:
                self.on_progress(store_path, offset, size)
            if self.stop.is_set():
                raise _StopUpload

        return progress

    def _send(self, uploader: TusUploader, row: dict[str, Any], path: Path) -> tuple[str, str]:
        """Upload one recording: ``(status, detail)``; raises _PassFailed to end the pass."""
        store_path = row["store_path"]
        try:
            receipt = uploader.upload(
                path,
                sha256=row["sha256"],
                sm3=row["sm3"],
                metadata=self._metadata(row),
                upload_url=row["upload_url"],
                on_url=lambda url: ledger.save_url(self.catalog, row["id"], url),
                on_progress=self._progress(store_path),
            )
        except _StopUpload:
            logger.info("%s: upload stopped; it resumes from the server's offset", store_path)
            return "stopped", "stopped between chunks"
        except UploadStopped as exc:
            logger.info("%s", exc)
            return "stopped", str(exc)
        except UploadHashMismatch as exc:
            return "rejected", ledger.record_rejection(
                self.catalog, row, path, exc, self.max_rejections
            )
        except UploadReceiptTimeout as exc:
            # this file's verification is slow or stuck at the centre: the others go on;
            # the upload URL is kept, so the next pass asks for its receipt again
            logger.warning("%s: %s", store_path, exc)
            return "unconfirmed", f"no receipt yet: {exc}"
        except (UploadRetriesExhausted, requests.RequestException) as exc:
            logger.warning("%s: %s", store_path, exc)
            raise _PassFailed(f"the central store is unreachable: {exc}") from exc
        except (UploadAuthError, UploadForbidden) as exc:
            logger.error("%s", exc)
            ledger.credentials_refused(self.catalog, self.config.station_id, exc)
            raise _PassFailed(str(exc)) from exc
        except UploadReceiptInvalid as exc:
            logger.error("%s", exc)
            ledger.save_url(self.catalog, row["id"], None)
            return "failed", str(exc)
        except UploadRejected as exc:
            logger.error("%s", exc)
            if exc.status in (404, 410):  # the endpoint itself: every file would fail
                raise _PassFailed(str(exc)) from exc
            ledger.save_url(self.catalog, row["id"], None)  # refused this upload: start anew
            return "failed", str(exc)
        except UploadError as exc:
            logger.error("%s", exc)
            return "failed", str(exc)
        return ledger.record_receipt(self.catalog, row, receipt)
