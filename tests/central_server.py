"""Test helpers: a real uvicorn server on a free loopback port, a TCP proxy that cuts or corrupts
the client's stream at chosen byte positions, and waiting on a condition with a deadline."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

TOKEN_A = "token-of-station-a-0123456789"
TOKEN_B = "token-of-station-b-0123456789"
TOKENS = {TOKEN_A: "ST-A", TOKEN_B: "ST-B"}


def make_file(path: Path, size: int, seed: int = 0) -> tuple[Path, str]:
    """A file of ``size`` pseudo-random bytes; returns it and its SHA-256."""
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(size) if size else b""
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01):
    """Return the first truthy value of ``condition()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        time.sleep(interval)


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.contextmanager
def serve_app(app, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yield its base URL ``http://127.0.0.1:port``."""
    sock = _listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


class FaultProxy:
    """A TCP proxy in front of ``upstream_port``.

    Counts the bytes the client sends over all connections. When the count reaches the next
    position in ``cuts``, both sides of the current connection are reset (RST, no FIN): a real
    cut. A position in ``flips`` has its byte inverted on the way through.
    """

    def __init__(self, upstream_port: int, *, cuts=(), flips=()):
        self.upstream_port = upstream_port
        self.cuts = sorted(cuts)
        self.flips = set(flips)
        self.sent = 0
        self.cuts_done = 0
        self._lock = threading.Lock()
        self._sock = _listen()
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # shutdown wakes the thread blocked in recv() on the other direction; only then does
            # close() release the socket (and, with linger 0, send the RST)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        upstream.shutdown(socket.SHUT_WR)
                    return
                with self._lock:
                    start = self.sent
                    cut_at = self.cuts[0] if self.cuts else None
                    if cut_at is not None and start + len(data) >= cut_at:
                        data = data[: max(0, cut_at - start)]
                        self.cuts.pop(0)
                        self.cuts_done += 1
                        cut = True
                    else:
                        cut = False
                    self.sent += len(data)
                    flips = [p - start for p in self.flips if start <= p < start + len(data)]
                if flips:
                    buf = bytearray(data)
                    for i in flips:
                        buf[i] ^= 0xFF
                    data = bytes(buf)
                if data:
                    upstream.sendall(data)
                if cut:
                    self._reset(client, upstream)
                    return
        except OSError:
            self._reset(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
        except OSError:
            self._reset(client, upstream)


def free_port() -> int:
    with contextlib.closing(_listen()) as sock:
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_central(
    data: Path,
    *args: str,
    tokens: dict[str, str] | None = None,
    timeout: float = 20.0,
    port: int | None = None,
    log_name: str = "recdock-central.log",
) -> Iterator[str]:
    """``recdock-central`` itself, as a process on a free loopback port (or ``port``: the
    same one again after a stop), with a tokens file written beside ``data`` (station tokens:
    ``tokens``, default :data:`TOKENS`) and its log in ``log_name`` there (one each when
    several workers share ``data``); yields its base URL and stops it (SIGTERM) at the end."""
    import subprocess
    import sys

    import requests

    data.parent.mkdir(parents=True, exist_ok=True)
    tokens_file = data.parent / "central-tokens.toml"
    lines = [f'"{station}" = "{token}"' for token, station in (tokens or TOKENS).items()]
    tokens_file.write_text("[stations]\n" + "\n".join(lines) + "\n")
    port = port or free_port()
    central = Path(sys.executable).with_name("recdock-central")
    log_path = data.parent / log_name
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(central),
            *("--data", str(data), "--tokens", str(tokens_file), "--port", str(port)),
            *("--log-level", "warning", *args),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"recdock-central exited: {log_path.read_text()}")
        try:
            return requests.options(f"{url}/files/", timeout=1).status_code == 204
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout, interval=0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
