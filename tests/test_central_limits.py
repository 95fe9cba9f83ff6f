"""The central store's HTTP limits and hostile headers: each crossed, each answered with a clear
4xx naming the limit, never a 500 and never a stored oversize record (issue 9)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from central.app import create_app
from tests.central_server import TOKEN_A, TOKENS, serve_app

TUS = {"Tus-Resumable": "1.0.0"}
SHA = "ab" * 32


def auth(token: str = TOKEN_A) -> dict[str, str]:
    return {**TUS, "Authorization": f"Bearer {token}"}


def raw_request(url: str, method: str, path: str, headers: dict[str, bytes | str], body=b""):
    """One request with header values sent byte for byte (requests refuses some of them)."""
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def central(tmp_path):
    data = tmp_path / "central"
    with serve_app(create_app(data, TOKENS)) as url:
        yield url, data


def uploads_stored(data) -> list[str]:
    return sorted(p.name for p in (data / "uploads").iterdir())


NOT_ASCII_NUMBERS = {
    "superscript-two": "²".encode("latin-1"),  # str.isdigit() says yes, int() says no
    "arabic-indic": "١٢".encode(),  # digits to Unicode, sent as UTF-8 bytes
    "5000-digits": b"1" * 5000,  # more digits than int() converts
    "plus-sign": b"+5",
    "hex": b"0x10",
    "underscore": b"1_0",
}


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS.values(), ids=NOT_ASCII_NUMBERS.keys())
def test_upload_length_must_be_ascii_digits(central, value):
    url, data = central
    status, _, body = raw_request(
        url,
        "POST",
        "/files/",
        {**auth(), "Upload-Length": value, "Upload-Metadata": f"sha256 {_b64(SHA)}"},
    )
    assert status == 400, body
    assert b"Upload-Length" in body
    assert uploads_stored(data) == []


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS.values(), ids=NOT_ASCII_NUMBERS.keys())
def test_upload_offset_must_be_ascii_digits(central, value):
    url, _ = central
    status, headers, _ = raw_request(
        url,
        "POST",
        "/files/",
        {**auth(), "Upload-Length": "3", "Upload-Metadata": f"sha256 {_b64(SHA)}"},
    )
    assert status == 201
    path = urlsplit(headers["location"]).path
    status, _, body = raw_request(
        url,
        "PATCH",
        path,
        {**auth(), "Upload-Offset": value, "Content-Type": "application/offset+octet-stream"},
        b"abc",
    )
    assert status == 400, body
    assert b"Upload-Offset" in body


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
