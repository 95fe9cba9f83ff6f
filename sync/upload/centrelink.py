"""Keeps whether the central store answers, where the station's rules read it
(agent/station/linkstate.py): ``<home>/run/centre-link.json``.

Every request the tus client makes is a contact (:meth:`CentreLink.contact`, the client's
``on_contact``): any HTTP answer, even a 4xx, says the centre is there; a refused connection,
a name that does not resolve, a TLS failure or a timeout says it is unreachable, and the file
says which (``failure``) with the error's text (never the token, nor the endpoint's
credentials). An idle station (nothing to send, or outside the upload hours) asks the
endpoint with ``OPTIONS`` (tus answers it, without the token) every
``[upload] probe_every_minutes`` (:meth:`CentreLink.probe`), so it knows too. The
``station.centre`` rule opens a fault when the centre has been unreachable longer than
``[faults] centre_unreachable_hours``.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions

from agent.config.links import UploadConfig
from agent.station.linkstate import CENTRE_LINK, LinkStateWriter
from sync.wire.tusmeta import TUS_VERSION

log = logging.getLogger(__name__)

REFRESH_S = 60.0  # the same state confirmed by uploads is written again at most this often
_MAX_ERROR = 300  # characters of an error's text kept


def without_credentials(url: str) -> str:
    """``url`` without its user, password, query and fragment: what may be shown and logged."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (requests wraps urllib3, which wraps the socket's error)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__]
        todo += [a for a in e.args if isinstance(a, BaseException)]
    return seen


def failure_of(exc: BaseException) -> str | None:
    """Why the centre did not answer: ``tls``, ``timeout``, ``dns``, ``refused`` or
    ``connection`` (reset, cut); None when ``exc`` says nothing of its reachability."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return None
    causes = _causes(exc)
    if any(isinstance(e, urllib3.exceptions.NameResolutionError | socket.gaierror) for e in causes):
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "refused"
    return "connection"


class CentreLink:
    """The uploader's contacts with the centre, kept in the run file; the idle probe."""

    def __init__(self, home: Path, upload: UploadConfig) -> None:
        assert upload.endpoint is not None
        self.endpoint = upload.endpoint
        self.shown = without_credentials(upload.endpoint)
        self.probe_every_s = upload.probe_every_minutes * 60
        self.timeout = (min(10.0, upload.timeout_s), upload.timeout_s)
        self.verify: bool | str = str(upload.ca_file) if upload.ca_file else True
        self.writer = LinkStateWriter(home, CENTRE_LINK, self.shown, refresh_s=REFRESH_S)
        self.writer.resume()  # unreachable before a restart: still unreachable since then
        self._last_contact: float | None = None  # time.monotonic()

    def contact(self, exc: BaseException | None, *, force: bool = False) -> None:
        """One request's end: answered (``exc`` None) or failed with ``exc``."""
        if exc is None:
            self._last_contact = time.monotonic()
            self.writer.record(True, force=force)
            return
        failure = failure_of(exc)
        if failure is None:
            return
        self._last_contact = time.monotonic()
        self.writer.record(False, self._error_text(failure, exc), failure, force=force)

    def _error_text(self, failure: str, exc: BaseException) -> str:
        text = f"{failure}: {type(exc).__name__}: {exc}"
        full = urlsplit(self.endpoint)
        for secret in (full.query, full.netloc.rpartition("@")[0]):
            if secret:
                text = text.replace(secret, "...")
        return text[:_MAX_ERROR]

    def probe_due_in(self) -> float:
        """Seconds until the idle probe is due (0: now)."""
        if self._last_contact is None:
            return 0.0
        return max(0.0, self._last_contact + self.probe_every_s - time.monotonic())

    def probe(self) -> bool:
        """``OPTIONS`` on the endpoint (no token); True when the centre answered."""
        self._last_contact = time.monotonic()  # the next one in probe_every_s, whatever this says
        try:
            resp = requests.options(
                self.endpoint,
                headers={"Tus-Resumable": TUS_VERSION},
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.info("the central store %s did not answer the probe: %s", self.shown, exc)
            self.contact(exc, force=True)
            return False
        resp.close()
        self.contact(None, force=True)
        return True

    def probe_when_due(self) -> None:
        if self.probe_due_in() <= 0:
            self.probe()
