"""The station's tus uploader against real servers: ours (through a cutting proxy), tuspyserver."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_UNAVAILABLE, RecdockError
from central.app import create_app
from sync.upload import errors
from sync.upload.tus import (
    TokenBucket,
    TusUploader,
    UploadAuthError,
    UploadRetriesExhausted,
)
from sync.wire.tusmeta import decode_metadata, encode_metadata
from tests.central_server import TOKEN_A, TOKENS, FaultProxy, make_file, serve_app

MiB = 1024 * 1024


@pytest.fixture
def central(tmp_path):
    data = tmp_path / "central"
    with serve_app(create_app(data, TOKENS)) as url:
        yield url, data


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def stored(data, sha: str):
    return data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def test_upload_resumes_after_random_cuts(central, tmp_path):
    url, data = central
    size, chunk = 8 * MiB + 123, 512 * 1024
    path, sha = make_file(tmp_path / "long.mp4", size, seed=7)
    rng = random.Random(20240611)
    cuts = sorted(rng.randrange(1, size) for _ in range(24))
    with FaultProxy(port_of(url), cuts=cuts) as proxy:
        up = TusUploader(f"{proxy.url}/files/", TOKEN_A, chunk_size=chunk, backoff=0.01)
        receipt = up.upload(path, sha256=sha, metadata={"station": "ST-A"})
        assert proxy.cuts_done == len(cuts)
    assert receipt.verified and receipt.sha256 == sha
    assert hashlib.sha256(stored(data, sha).read_bytes()).hexdigest() == sha
    resent = up.bytes_sent - size
    assert 0 <= resent <= len(cuts) * chunk, (resent, len(cuts) * chunk)


def test_a_cut_body_stops_its_read_ahead_before_the_next_patch(central, tmp_path, monkeypatch):
    """The read-ahead thread of a PATCH cut mid-body shares the file and the buffers with the
    next PATCH: it must be stopped before that one starts, even while something (a log
    handler, pytest's caplog) keeps the failed request's exception, and so the frame that was
    iterating the body, alive.

    A connection reset while sending (not EPIPE, which urllib3 swallows) leaves the body's
    iterator in that frame; a real cut gives one or the other at random, so the cut is made
    here, at the socket's seam: one piece of the body sent, then ECONNRESET."""
    url, data = central
    size, chunk = 24 * MiB, 12 * MiB
    path, sha = make_file(tmp_path / "clip.mp4", size, seed=5)
    kept: list[BaseException] = []
    alive_at_patch: list[int] = []
    real_request, real_patch = TusUploader._request, TusUploader._patch

    def request(self, method, url, **kwargs):  # type: ignore[no-untyped-def]
        if method == "PATCH" and not kept:
            pieces = iter(kwargs["data"])  # as http.client's send loop holds it
            next(pieces)
            try:
                raise ConnectionResetError(104, "Connection reset by peer")
            except ConnectionResetError as exc:
                kept.append(exc)  # as a log record holding exc_info would
                raise requests.ConnectionError(exc) from exc
        return real_request(self, method, url, **kwargs)

    def patch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        alive_at_patch.append(
            sum(t.name == "recdock-read-ahead" and t.is_alive() for t in threading.enumerate())
        )
        return real_patch(self, *args, **kwargs)

    monkeypatch.setattr(TusUploader, "_request", request)
    monkeypatch.setattr(TusUploader, "_patch", patch)
    up = TusUploader(f"{url}/files/", TOKEN_A, chunk_size=chunk, backoff=0.01)
    receipt = up.upload(path, sha256=sha)
    assert kept, "the first PATCH must have been cut"
    assert receipt.verified and hashlib.sha256(stored(data, sha).read_bytes()).hexdigest() == sha
    assert len(alive_at_patch) >= 3 and set(alive_at_patch) == {0}, alive_at_patch


def test_upload_resumes_from_the_stored_url_after_a_crash(central, tmp_path):
    url, data = central
    size, chunk = 4 * MiB, 256 * 1024
    path, sha = make_file(tmp_path / "clip.mp4", size, seed=3)
    urls: list[str] = []
    with FaultProxy(port_of(url), cuts=[3 * MiB]) as proxy:
        first = TusUploader(f"{proxy.url}/files/", TOKEN_A, chunk_size=chunk, retries=0)
        with pytest.raises(UploadRetriesExhausted, match="resume"):
            first.upload(path, sha256=sha, on_url=urls.append)
    assert len(urls) == 1
    resumed_url = urls[0].replace(proxy.url, url)
    second = TusUploader(f"{url}/files/", TOKEN_A, chunk_size=chunk)
    receipt = second.upload(path, sha256=sha, upload_url=resumed_url, on_url=urls.append)
    assert receipt.verified and receipt.upload_url == resumed_url
    assert len(urls) == 1  # no new upload was created
    assert first.bytes_sent + second.bytes_sent <= size + chunk
    assert stored(data, sha).exists()


def test_unknown_upload_url_starts_anew(central, tmp_path):
    url, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 1000)
    up = TusUploader(f"{url}/files/", TOKEN_A)
    receipt = up.upload(path, sha256=sha, upload_url=f"{url}/files/{'0' * 32}")
    assert receipt.verified and receipt.upload_url != f"{url}/files/{'0' * 32}"


def test_bad_token_says_what_to_check(central, tmp_path):
    url, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 10)
    with pytest.raises(UploadAuthError, match="clip.mp4.*token"):
        TusUploader(f"{url}/files/", "wrong-token-00000000000").upload(path, sha256=sha)


def test_works_against_tuspyserver_without_receipt(tmp_path):
    from fastapi import FastAPI
    from tuspyserver import create_tus_router

    files = tmp_path / "tuspyserver"
    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=str(files)))
    path, sha = make_file(tmp_path / "clip.mp4", 3 * MiB + 5, seed=11)
    with serve_app(app) as url:
        up = TusUploader(f"{url}/files", None, chunk_size=MiB)
        receipt = up.upload(path, sha256=sha, metadata={"station": "ST-A"})
    assert not receipt.verified and receipt.object_id is None
    upload_id = receipt.upload_url.rstrip("/").rsplit("/", 1)[1]
    assert (files / upload_id).read_bytes() == path.read_bytes()


def test_memory_stays_bounded_for_a_256_mib_file(central, tmp_path):
    url, _ = central
    size = 256 * MiB
    path = tmp_path / "big.mp4"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: zeros
    sha = hashlib.sha256()
    block = bytes(MiB)
    for _ in range(size // MiB):
        sha.update(block)
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from sync.upload.tus import TusUploader
        up = TusUploader({url + "/files/"!r}, {TOKEN_A!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        receipt = up.upload({str(path)!r}, sha256={sha.hexdigest()!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        json.dump({{"extra_kib": after - before, "verified": receipt.verified}}, sys.stdout)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result["verified"]
    assert result["extra_kib"] < 40 * 1024, result


def test_bandwidth_limit_paces_the_upload(central, tmp_path):
    url, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 1536 * 1024)
    up = TusUploader(f"{url}/files/", TOKEN_A, bandwidth_limit=2 * MiB, chunk_size=512 * 1024)
    start = time.monotonic()
    up.upload(path, sha256=sha)
    # 1.5 MiB at 2 MiB/s with a 512 KiB burst: at least 0.5 s
    assert time.monotonic() - start >= 0.45


def test_token_bucket_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(1000, burst=100, clock=lambda: now[0], sleep=sleep)
    for _ in range(20):
        bucket.consume(100)
    assert sum(slept) == pytest.approx(1.9)  # 2000 bytes at 1000 B/s, minus the 100 B burst


@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
            min_size=1,
        ),
        st.text(),
    )
)
def test_metadata_round_trip(metadata):
    assert decode_metadata(encode_metadata(metadata)) == metadata


@pytest.mark.parametrize(
    ("error", "exit_code", "permanent"),
    [
        (errors.UploadError, EXIT_FAILED, False),
        (errors.UploadHashMismatch, EXIT_FAILED, False),
        (errors.UploadAuthError, EXIT_CONFIG, True),
        (errors.UploadForbidden, EXIT_CONFIG, True),
        (errors.UploadRejected, EXIT_FAILED, True),
        (errors.UploadRetriesExhausted, EXIT_UNAVAILABLE, False),
        (errors.UploadReceiptTimeout, EXIT_FAILED, False),
        (errors.UploadStopped, EXIT_FAILED, False),
        (errors.UploadReceiptInvalid, EXIT_FAILED, False),
    ],
)
def test_upload_errors_are_recdock_errors(error, exit_code, permanent):
    exc = error("clip.mp4: what went wrong; what to do", path="clip.mp4")
    assert isinstance(exc, RecdockError) and isinstance(exc, errors.UploadError)
    assert (exc.exit_code, exc.permanent, exc.path) == (exit_code, permanent, "clip.mp4")


def test_a_busy_server_refusing_a_termination_is_an_upload_error(tmp_path):
    """DELETE answered 503 (or 423, 429): terminate() raises an UploadError the worker handles,
    not the client's internal retry signal, which used to crash a pass (exit 70)."""
    import http.server
    import threading

    from sync.upload.errors import UploadError

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.send_header("Retry-After", "1")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/files/abc"
        with TusUploader(url, token=TOKEN_A, backoff=0.01, retries=0) as uploader:
            with pytest.raises(UploadError, match="HTTP 503"):
                uploader.terminate(url)
    finally:
        server.shutdown()
        server.server_close()
