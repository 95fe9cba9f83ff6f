"""How ``recdock-central`` serves HTTP: uvicorn with bounded request headers and connections,
and a gate on the requests the app works on at once.

* **Request headers** (request line and header fields together) are bounded by
  ``max_header_bytes``. uvicorn's httptools parser has no such bound of its own, so
  :func:`uvicorn_config` gives it a protocol that counts the head as it is parsed, and what
  arrives while a head is incomplete, and answers ``431`` (and closes the connection) once
  either passes the bound; memory stays within the bound plus one read. Without httptools,
  h11 gets the same bound (``h11_max_incomplete_event_size``).
* **Connections**: uvicorn's ``limit_concurrency`` (``max_connections``); past it, uvicorn
  itself answers ``503`` and closes.
* **Requests in flight** (:class:`RequestGate`): at most ``max_requests`` HTTP requests are
  inside the app at once; one more is answered ``429`` with ``Retry-After`` at once, before
  authentication or any disk or database work.
* **A NUL character** (``%00``) in a request's path or query is answered ``422`` at once
  (:class:`NulMiddleware`): no route takes one, and a catalog on PostgreSQL could not even
  look it up (its text holds no NUL), where SQLite would only find nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUESTS = 256


@dataclass(frozen=True)
class ServeLimits:
    """The HTTP server's own limits (``recdock-central`` options, docs/central.md)."""

    max_header_bytes: int = 16 * 1024
    max_connections: int = 1024


class RequestGate:
    """Counts the HTTP requests inside the app (``app.state.gate``); the middleware
    :class:`GateMiddleware` refuses one past ``limit``. One event loop: no lock needed."""

    def __init__(self, limit: int = DEFAULT_MAX_REQUESTS) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0


_BUSY = json.dumps(
    {"error": "busy", "detail": "the central store has too many requests in flight; retry"}
).encode()


class GateMiddleware:
    """Pure ASGI: lets at most ``gate.limit`` HTTP requests into the app at once."""

    def __init__(self, app: Any, gate: RequestGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if gate.in_flight >= gate.limit:
            gate.refused += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_BUSY)).encode()),
                        (b"retry-after", b"1"),
                        (b"tus-resumable", b"1.0.0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _BUSY})
            return
        gate.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1


def _nul(where: str) -> bytes:
    """The answer, shaped as FastAPI's own 422 (``HTTPValidationError``)."""
    msg = f"the request's {where} carries a NUL character (%00), which no route takes"
    return json.dumps({"detail": [{"loc": [where], "msg": msg, "type": "value_error"}]}).encode()


class NulMiddleware:
    """Pure ASGI: answers 422 to a request whose path or query carries a NUL character."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").lower()
        where = "path" if "\x00" in scope.get("path", "") else None
        if b"%00" in query or b"\x00" in query:
            where = "query"
        if where is None:
            await self.app(scope, receive, send)
            return
        body = _nul(where)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 422, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _headers_too_large(limit: int) -> bytes:
    body = json.dumps(
        {
            "error": "headers_too_large",
            "detail": f"the request line and headers pass {limit} bytes",
        }
    ).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops, and uvicorn answers through
    ``send_400_response``, which the bounded protocol turns into a 431."""


def bounded_httptools(limit: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the request head bounded to ``limit`` bytes: the
    request line and header fields as parsed, and, while a head is incomplete, the bytes that
    arrived for it (so one header that never ends is not kept growing)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpTools(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            self._in_head = True  # no request's head complete yet
            self._arrived = 0  # bytes received while the head is incomplete
            self._parsed = 0  # request line and header fields parsed
            self._too_large = False
            super().connection_made(transport)

        def on_message_begin(self) -> None:
            self._in_head, self._parsed = True, 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def _count(self, n: int) -> None:
            self._parsed += n
            if self._parsed > limit:
                self._too_large = True
                raise _HeadTooLarge

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._in_head:
                self._arrived = 0
                return
            self._arrived += len(data)
            if self._arrived > limit and not self.transport.is_closing():
                self._too_large = True
                self.send_400_response("")

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            logger.warning("request head over %d bytes from %s: 431", limit, self.client)
            self.transport.write(_headers_too_large(limit))
            self.transport.close()

    return BoundedHttpTools


def uvicorn_config(app: Any, *, limits: ServeLimits = ServeLimits(), **options: Any):
    """The ``uvicorn.Config`` of ``recdock-central``: ``options`` (host, port, log level...)
    plus the bounds of :class:`ServeLimits`."""
    import uvicorn

    try:
        http: Any = bounded_httptools(limits.max_header_bytes)
    except ImportError:  # no httptools: h11 keeps the same bound (and answers 400)
        http = "h11"
    return uvicorn.Config(
        app,
        http=http,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections,
        **options,
    )
