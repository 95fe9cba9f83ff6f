"""``recdock-central`` as it runs (a live process on loopback): request headers, connections
and requests in flight are bounded, each crossing answered with a clear status, never a 500
(issue 9); and every option of the command explains itself."""

from __future__ import annotations

import base64
import contextlib
import socket
from urllib.parse import urlsplit

import requests

from central.command import main
from tests.central_server import TOKEN_A, live_central, wait_for
from tests.test_cli import missing_help

TUS = {"Tus-Resumable": "1.0.0"}


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def answer_status(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the answer on ``sock`` (and what came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return int(data.split(b" ", 2)[1]), data


def send_head(url: str, header_value_bytes: int) -> tuple[int, bytes]:
    """A POST whose one header carries ``header_value_bytes`` bytes, sent while the server
    may already have answered and closed."""
    head = (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        b"Authorization: Bearer " + TOKEN_A.encode() + b"\r\nUpload-Length: 1\r\n"
        b"Upload-Metadata: note " + b"A" * header_value_bytes + b"\r\n\r\n"
    )
    with contextlib.closing(connect(url)) as sock:
        with contextlib.suppress(OSError):  # the server may close before all of it is sent
            for start in range(0, len(head), 65536):
                sock.sendall(head[start : start + 65536])
        return answer_status(sock)


def test_request_headers_over_the_bound_are_refused_with_431(tmp_path):
    with live_central(tmp_path / "central", "--max-header-bytes", "16384") as url:
        for size in (20_000, 8 * 1024 * 1024):
            status, data = send_head(url, size)
            assert status == 431, data[:300]
            assert b"headers_too_large" in data
        # a body of any size is no header: a large PATCH still goes through
        sha = "0" * 64
        created = requests.post(
            f"{url}/files/",
            headers={
                **TUS,
                "Authorization": f"Bearer {TOKEN_A}",
                "Upload-Length": str(4 * 1024 * 1024),
                "Upload-Metadata": f"sha256 {base64.b64encode(sha.encode()).decode()}",
            },
            timeout=10,
        )
        assert created.status_code == 201, created.text
        sent = requests.patch(
            created.headers["Location"],
            data=b"\0" * (4 * 1024 * 1024),
            headers={
                **TUS,
                "Authorization": f"Bearer {TOKEN_A}",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=30,
        )
        assert sent.status_code == 204, sent.text


def test_connections_past_the_bound_get_uvicorns_503_not_a_500(tmp_path):
    with live_central(tmp_path / "central", "--max-connections", "3") as url:
        options = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n"
        held = [connect(url), connect(url)]
        try:
            for sock in held:  # each answered, and kept open (keep-alive)
                sock.sendall(options)
                assert answer_status(sock)[0] == 204
            with contextlib.closing(connect(url)) as third:
                third.sendall(options)
                status, data = answer_status(third)
            assert status == 503, data
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: requests.options(f"{url}/files/", timeout=5).status_code == 204)


def test_requests_in_flight_past_the_bound_get_429(tmp_path):
    with live_central(tmp_path / "central", "--max-requests", "2") as url:
        sha = "0" * 64
        meta = f"sha256 {base64.b64encode(sha.encode()).decode()}"
        auth = {**TUS, "Authorization": f"Bearer {TOKEN_A}"}
        held = []
        for _ in range(2):  # two PATCHes whose bodies never finish: inside the app
            loc = requests.post(
                f"{url}/files/",
                headers={**auth, "Upload-Length": "100", "Upload-Metadata": meta},
                timeout=10,
            ).headers["Location"]
            sock = connect(url)
            sock.sendall(
                f"PATCH {urlsplit(loc).path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                f"Authorization: Bearer {TOKEN_A}\r\nUpload-Offset: 0\r\n"
                "Content-Type: application/offset+octet-stream\r\nContent-Length: 100\r\n\r\n"
                "0123456789".encode()
            )
            held.append(sock)
        try:

            def refused() -> tuple[dict, str] | None:
                resp = requests.options(f"{url}/files/", timeout=5)
                assert resp.status_code in (204, 429), resp.status_code
                if resp.status_code == 429:
                    return resp.json(), resp.headers["Retry-After"]
                return None

            body, retry_after = wait_for(refused)
            assert body["error"] == "busy" and retry_after == "1"
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: requests.options(f"{url}/files/", timeout=5).status_code == 204)


def test_every_option_of_recdock_central_has_help():
    assert missing_help(main) == []
