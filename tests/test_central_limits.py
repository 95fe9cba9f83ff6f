"""The central store's HTTP limits and hostile headers: each crossed, each answered with a clear
4xx naming the limit, never a 500 and never a stored oversize record (issue 9)."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
from urllib.parse import urlsplit

import pytest
import requests

from central.app import create_app
from central.limits import UploadLimits
from sync.upload.tus import TusUploader
from sync.wire.tusmeta import ascii_int, encode_metadata
from tests.central_server import TOKEN_A, TOKEN_B, TOKENS, make_file, serve_app

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


# -- Upload-Metadata -------------------------------------------------------------------------


def post(url: str, length: int, metadata: str, token: str = TOKEN_A):
    headers = {**auth(token), "Upload-Length": str(length), "Upload-Metadata": metadata}
    return requests.post(f"{url}/files/", headers=headers, timeout=30)


def metadata(**extra: str) -> str:
    return encode_metadata({"sha256": SHA, **extra})


@pytest.mark.parametrize("size", [5000, 8 * 1024 * 1024], ids=["5000-bytes", "8-MiB"])
def test_an_oversize_upload_metadata_is_refused_and_nothing_stored(central, size):
    """An 8 MiB Upload-Metadata was stored and broke the next HEAD (issue 9)."""
    url, data = central
    resp = post(url, 10, metadata(note="x" * size))
    assert resp.status_code == 431, resp.text
    assert resp.json()["error"] == "metadata_too_large"
    assert "4096" in resp.json()["detail"]
    assert uploads_stored(data) == []


def test_upload_metadata_with_too_many_keys_is_refused(central):
    url, data = central
    resp = post(url, 10, metadata(**{f"k{i}": "v" for i in range(40)}))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "too_many_keys"
    assert uploads_stored(data) == []
    assert post(url, 10, metadata(**{f"k{i}": "v" for i in range(31)})).status_code == 201


# -- per station ------------------------------------------------------------------------------


def limited(tmp_path, database=None, **limits):
    app = create_app(tmp_path / "central", TOKENS, limits=UploadLimits(**limits), database=database)
    return serve_app(app)


def test_open_uploads_per_station(tmp_path):
    with limited(tmp_path, open_uploads=3) as url:
        made = [post(url, 10, metadata()) for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 201]
        refused = post(url, 10, metadata())
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_uploads"
        assert ascii_int(refused.headers["Retry-After"]) > 0
        assert post(url, 10, metadata(), TOKEN_B).status_code == 201  # per station
        requests.delete(made[0].headers["Location"], headers=auth(), timeout=10)
        assert post(url, 10, metadata()).status_code == 201
    assert len(uploads_stored(tmp_path / "central")) == 4  # 3 of A's and B's one: each its .part


def test_unfinished_bytes_per_station(tmp_path):
    with limited(tmp_path, unfinished_bytes=1000) as url:
        first = post(url, 600, metadata())
        assert first.status_code == 201
        refused = post(url, 600, metadata())
        assert refused.status_code == 429 and refused.json()["error"] == "unfinished_bytes"
        never = post(url, 1001, metadata())
        assert never.status_code == 413 and "Retry-After" not in never.headers
        assert post(url, 600, metadata(), TOKEN_B).status_code == 201  # per station
        sent = requests.patch(
            first.headers["Location"],
            data=b"x" * 300,
            headers={
                **auth(),
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=10,
        )
        assert sent.status_code == 204
        assert post(url, 600, metadata()).status_code == 201  # 300 + 600 left to send


def test_stored_bytes_per_day_per_station(tmp_path, central_db):
    """(The day's bytes are read from the receipts: on both databases.)"""
    path, sha = make_file(tmp_path / "clip.mp4", 600)
    with limited(tmp_path, central_db, daily_bytes=1000) as url:
        assert TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha).verified
        refused = post(url, 600, metadata())
        assert refused.status_code == 429 and refused.json()["error"] == "daily_bytes"
        assert 0 < ascii_int(refused.headers["Retry-After"]) <= 86400
        assert post(url, 400, metadata()).status_code == 201
        assert post(url, 1, metadata()).status_code == 429  # 600 stored + 400 announced
        assert post(url, 600, metadata(), TOKEN_B).status_code == 201  # per station
        # a repeat of stored content stores no byte: answered from the station's own receipt
        assert TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha).deduplicated
        assert post(url, 1001, metadata(), TOKEN_B).status_code == 413  # never fits a day


def test_five_hundred_creations_of_64_gib_are_not_all_accepted(tmp_path):
    """The finding of issue 9: 500 creations of 64 GiB uploads (32 TiB announced) were all
    accepted. With the default limits a station holds at most 128 GiB announced and the data
    disk keeps its reserve; every refusal is a 4xx, none a 500."""
    size = 64 * 1024**3
    with serve_app(create_app(tmp_path / "central", TOKENS)) as url:
        statuses = [post(url, size, metadata()).status_code for _ in range(500)]
    accepted = statuses.count(201)
    assert accepted <= 2
    assert set(statuses) <= {201, 413, 429}, sorted(set(statuses))
    assert len(uploads_stored(tmp_path / "central")) == accepted


# -- the data disk ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint, size: str):
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs as the data disk: run as root")
def test_a_creation_that_would_cross_the_disk_reserve_is_refused(tmp_path):
    MiB = 1024 * 1024
    with tmpfs(tmp_path / "disk", "64m") as disk:
        app = create_app(disk / "central", TOKENS, limits=UploadLimits(disk_reserve=16 * MiB))
        with serve_app(app) as url:
            assert post(url, 40 * MiB, metadata()).status_code == 201
            # 64 MiB free, 40 MiB promised: 20 MiB more would leave less than the reserve
            refused = post(url, 20 * MiB, metadata(), TOKEN_B)
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"] == "insufficient_storage"
            assert "Retry-After" in refused.headers
            assert post(url, 4 * MiB, metadata(), TOKEN_B).status_code == 201
        assert len(uploads_stored(disk / "central")) == 2
