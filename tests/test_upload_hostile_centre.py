"""The station's uploader against a lying or misdirecting centre (issue 9): numbers that are not
ASCII digits, and a Location or Upload-Receipt that points at another origin. A scripted server
(real HTTP on loopback) answers each request from a list and records what it received."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.upload.tus import TusUploader, UploadError, UploadRejected
from tests.central_server import TOKEN_A, make_file

Answer = tuple[int, dict[str, str]]


class Scripted:
    """A loopback HTTP server answering each method from its own list of (status, headers)."""

    def __init__(self, answers: dict[str, list[Answer]] | None = None) -> None:
        self.answers = {m: list(a) for m, a in (answers or {}).items()}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                scripted.requests.append((self.command, self.path, dict(self.headers)))
                queue = scripted.answers.get(self.command) or [(404, {})]
                status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value.replace("{origin}", scripted.origin))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_HEAD = do_PATCH = do_GET = do_DELETE = _answer

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Scripted]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)

    def tokens_seen(self) -> list[str]:
        return [h.get("Authorization", "") for _, _, h in self.requests]


TUS = {"Tus-Resumable": "1.0.0"}


def test_numbers_that_are_not_ascii_digits_are_treated_as_absent(tmp_path):
    """``Retry-After: ²`` and ``Upload-Offset: ²`` made the uploader raise ValueError (a crash,
    not an UploadError); they are now read as absent: the backoff takes its own delay and the
    uploader asks the server's offset with HEAD."""
    path, _ = make_file(tmp_path / "clip.mp4", 3)
    centre = Scripted(
        {
            "POST": [
                (429, {**TUS, "Retry-After": "²"}),
                (201, {**TUS, "Location": "/files/abc"}),
            ],
            "PATCH": [(204, {**TUS, "Upload-Offset": "²"}), (204, {**TUS, "Upload-Offset": "3"})],
            "HEAD": [(200, {**TUS, "Upload-Offset": "3", "Upload-Length": "3"})],
        }
    )
    with centre.running():
        up = TusUploader(f"{centre.origin}/files/", TOKEN_A, backoff=0.01, retries=3)
        receipt = up.upload(path, sha256="ab" * 32)
    assert not receipt.verified  # a plain tus answer: no receipt
    assert [m for m, _, _ in centre.requests] == ["POST", "POST", "PATCH", "HEAD"]


def test_the_token_never_follows_a_location_to_another_origin(tmp_path):
    path, _ = make_file(tmp_path / "clip.mp4", 3)
    elsewhere = Scripted({"PATCH": [(204, {**TUS, "Upload-Offset": "3"})]})
    with elsewhere.running():
        centre = Scripted({"POST": [(201, {**TUS, "Location": f"{elsewhere.origin}/files/abc"})]})
        with centre.running():
            up = TusUploader(f"{centre.origin}/files/", TOKEN_A, backoff=0.01)
            with pytest.raises(UploadRejected, match="another origin"):
                up.upload(path, sha256="ab" * 32)
    assert elsewhere.requests == [], "the station token went to another origin"


def test_the_token_never_follows_an_upload_receipt_to_another_origin(tmp_path):
    path, _ = make_file(tmp_path / "clip.mp4", 3)
    elsewhere = Scripted({"GET": [(200, {})]})
    with elsewhere.running():
        centre = Scripted(
            {
                "POST": [(201, {**TUS, "Location": "/files/abc"})],
                "PATCH": [
                    (
                        204,
                        {
                            **TUS,
                            "Upload-Offset": "3",
                            "Upload-Receipt": f"{elsewhere.origin}/files/abc/receipt",
                        },
                    )
                ],
            }
        )
        with centre.running():
            up = TusUploader(f"{centre.origin}/files/", TOKEN_A, backoff=0.01)
            with pytest.raises(UploadError, match="another origin"):
                up.upload(path, sha256="ab" * 32)
    assert elsewhere.requests == [], "the station token went to another origin"


def test_a_stored_upload_url_on_another_origin_is_dropped_not_resumed(tmp_path):
    """A catalog row keeps the Location of an earlier endpoint: after the endpoint changed,
    resuming it would send the token to the old host. The upload starts anew instead."""
    path, _ = make_file(tmp_path / "clip.mp4", 3)
    old = Scripted({"HEAD": [(200, {**TUS, "Upload-Offset": "0", "Upload-Length": "3"})]})
    with old.running():
        centre = Scripted(
            {
                "POST": [(201, {**TUS, "Location": "/files/new"})],
                "PATCH": [(204, {**TUS, "Upload-Offset": "3"})],
            }
        )
        with centre.running():
            up = TusUploader(f"{centre.origin}/files/", TOKEN_A, backoff=0.01)
            receipt = up.upload(path, sha256="ab" * 32, upload_url=f"{old.origin}/files/old")
    assert old.requests == [], "the station token went to the old endpoint"
    assert receipt.upload_url == f"{centre.origin}/files/new"


def test_a_413_with_retry_after_is_waited_for_and_one_without_is_a_rejection(tmp_path):
    """The centre answers 413 with Retry-After while its disk is short (a temporary refusal,
    RFC 9110): the uploader backs off and tries again; a 413 without it refuses the file."""
    path, _ = make_file(tmp_path / "clip.mp4", 3)
    centre = Scripted(
        {
            "POST": [
                (413, {**TUS, "Retry-After": "1"}),
                (201, {**TUS, "Location": "/files/abc"}),
                (413, TUS),
            ],
            "PATCH": [(204, {**TUS, "Upload-Offset": "3"})],
        }
    )
    with centre.running():
        up = TusUploader(f"{centre.origin}/files/", TOKEN_A, backoff=0.01, max_backoff=0.05)
        assert up.upload(path, sha256="ab" * 32).upload_url == f"{centre.origin}/files/abc"
        with pytest.raises(UploadRejected, match="too large"):
            up.upload(path, sha256="ab" * 32)
