"""The central store's tus endpoint, over real HTTP (uvicorn on a loopback port)."""

from __future__ import annotations

import hashlib
import http.client
import stat
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from central.app import create_app
from central.auth import CredentialsError, load_tokens
from central.catalog import uploads
from central.command import main
from sync.upload.tus import TusUploader, UploadForbidden, UploadHashMismatch
from sync.wire.tusmeta import encode_metadata
from tests.central_server import (
    TOKEN_A,
    TOKEN_B,
    TOKENS,
    FaultProxy,
    make_file,
    serve_app,
    wait_for,
)

TUS = {"Tus-Resumable": "1.0.0"}


def auth(token: str) -> dict[str, str]:
    return {**TUS, "Authorization": f"Bearer {token}"}


@pytest.fixture
def central(tmp_path, central_db):
    data = tmp_path / "central"
    app = create_app(data, TOKENS, database=central_db)
    with serve_app(app) as url:
        yield url, data, app


def create(url: str, token: str, size: int, sha256: str, **meta: str) -> requests.Response:
    metadata = encode_metadata({"sha256": sha256, **meta})
    headers = {**auth(token), "Upload-Length": str(size), "Upload-Metadata": metadata}
    return requests.post(f"{url}/files/", headers=headers, timeout=10)


def test_upload_gives_receipt_and_read_only_object(central, tmp_path):
    url, data, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 3 * 1024 * 1024 + 17)
    sm3 = hashlib.new("sm3", path.read_bytes()).hexdigest()
    urls = []
    with TusUploader(f"{url}/files/", TOKEN_A, chunk_size=1024 * 1024) as up:
        receipt = up.upload(
            path,
            sha256=sha,
            sm3=sm3,
            metadata={"station": "ST-A", "device": "D1"},
            on_url=urls.append,
        )
    assert receipt.verified and receipt.sha256 == sha and receipt.size == path.stat().st_size
    assert receipt.object_id == f"sha256:{sha}"
    assert receipt.raw["sm3"] == sm3 and receipt.raw["metadata"]["device"] == "D1"
    assert urls == [receipt.upload_url]
    obj = data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == sha
    assert stat.S_IMODE(obj.stat().st_mode) == 0o400
    assert not list((data / "uploads").iterdir())


def test_empty_file_is_verified(central, tmp_path):
    url, _, _ = central
    path, sha = make_file(tmp_path / "empty.mp4", 0)
    receipt = TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha)
    assert receipt.verified and receipt.size == 0


def test_repeated_upload_gets_existing_receipt_without_data(central, tmp_path):
    url, _, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 2 * 1024 * 1024)
    up = TusUploader(f"{url}/files/", TOKEN_A, chunk_size=512 * 1024)
    first = up.upload(path, sha256=sha)
    sent = up.bytes_sent
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    second = up.upload(copy, sha256=sha)
    assert up.bytes_sent == sent  # not one byte again
    assert second.deduplicated and second.verified
    assert second.object_id == first.object_id
    assert second.upload_url != first.upload_url


def test_lying_about_sha256_is_rejected_then_resent(central, tmp_path):
    url, data, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 1024 * 1024)
    up = TusUploader(f"{url}/files/", TOKEN_A, chunk_size=256 * 1024)
    with pytest.raises(UploadHashMismatch) as caught:
        up.upload(path, sha256="0" * 64)
    assert caught.value.reason["actual"]["sha256"] == sha
    assert not list((data / "uploads").iterdir())  # the partial upload is gone
    assert up.upload(path, sha256=sha).verified


def test_bytes_flipped_in_transit_are_rejected_then_resent(central, tmp_path):
    url, _, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 1024 * 1024)
    port = int(url.rsplit(":", 1)[1])
    with FaultProxy(port, flips=[600_000]) as proxy:
        up = TusUploader(f"{proxy.url}/files/", TOKEN_A, chunk_size=256 * 1024)
        with pytest.raises(UploadHashMismatch):
            up.upload(path, sha256=sha)
    receipt = TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha)
    assert receipt.verified and receipt.sha256 == sha


def test_station_sees_only_its_own_uploads(central, tmp_path):
    url, data, _ = central
    size = 1000
    path, sha = make_file(tmp_path / "clip.mp4", size)
    resp = create(url, TOKEN_B, size, sha, station="ST-B")
    assert resp.status_code == 201
    b_upload = resp.headers["Location"]
    patch = {
        **auth(TOKEN_A),
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
    assert requests.head(b_upload, headers=auth(TOKEN_A), timeout=5).status_code == 403
    assert requests.patch(b_upload, data=b"x", headers=patch, timeout=5).status_code == 403
    assert requests.delete(b_upload, headers=auth(TOKEN_A), timeout=5).status_code == 403
    assert requests.get(f"{b_upload}/receipt", headers=auth(TOKEN_A), timeout=5).status_code == 403
    assert requests.head(b_upload, headers=auth(TOKEN_B), timeout=5).status_code == 200
    # another station's id in the metadata
    assert create(url, TOKEN_A, size, sha, station="ST-B").status_code == 403
    with pytest.raises(UploadForbidden):
        TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha, metadata={"station": "ST-B"})
    # no token, or an unknown one
    for headers in (TUS, auth("not-a-known-token-000000")):
        assert requests.head(b_upload, headers=headers, timeout=5).status_code == 401
        assert requests.post(f"{url}/files/", headers=headers, timeout=5).status_code == 401
        assert requests.delete(b_upload, headers=headers, timeout=5).status_code == 401
    # stored media cannot be read, and a complete upload cannot be deleted
    receipt = TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha)
    obj = f"{url}/objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    for target in (receipt.upload_url, obj, f"{url}/files/{sha}"):
        assert requests.get(target, headers=auth(TOKEN_A), timeout=5).status_code in (404, 405)
    assert requests.delete(receipt.upload_url, headers=auth(TOKEN_A), timeout=5).status_code == 403
    assert (data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).exists()


def test_termination_drops_only_unfinished_upload(central, tmp_path):
    url, data, _ = central
    resp = create(url, TOKEN_A, 10, "a" * 64)
    location = resp.headers["Location"]
    assert len(list((data / "uploads").iterdir())) == 1  # its bytes; its record is in the database
    TusUploader(f"{url}/files/", TOKEN_A).terminate(location)
    assert requests.head(location, headers=auth(TOKEN_A), timeout=5).status_code == 404
    assert not list((data / "uploads").iterdir())


def test_ids_from_urls_never_reach_the_filesystem(central):
    url, _, _ = central
    for bad in ("..%2f..%2freceipts.sqlite", "..", "ABC", "0" * 31 + "g", "%2e%2e"):
        resp = requests.head(f"{url}/files/{bad}", headers=auth(TOKEN_A), timeout=5)
        assert resp.status_code in (404, 405), bad


def test_protocol_rules(central):
    url, _, _ = central
    resp = requests.options(f"{url}/files/", timeout=5)
    assert resp.status_code == 204
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) == {"creation", "termination"}
    assert int(resp.headers["Tus-Max-Size"]) > 0
    # wrong protocol version, missing sha256
    headers = {**auth(TOKEN_A), "Tus-Resumable": "0.2.2", "Upload-Length": "1"}
    assert requests.post(f"{url}/files/", headers=headers, timeout=5).status_code == 412
    headers = {**auth(TOKEN_A), "Upload-Length": "1", "Upload-Metadata": ""}
    assert requests.post(f"{url}/files/", headers=headers, timeout=5).status_code == 400
    # offset mismatch, wrong content type
    location = create(url, TOKEN_A, 10, "b" * 64).headers["Location"]
    patch = {**auth(TOKEN_A), "Content-Type": "application/offset+octet-stream"}
    resp = requests.patch(location, data=b"abc", headers={**patch, "Upload-Offset": "3"}, timeout=5)
    assert resp.status_code == 409 and resp.headers["Upload-Offset"] == "0"
    resp = requests.patch(
        location, data=b"abc", headers={**patch, "Content-Type": "text/plain"}, timeout=5
    )
    assert resp.status_code == 415
    resp = requests.patch(location, data=b"abc", headers={**patch, "Upload-Offset": "0"}, timeout=5)
    assert resp.status_code == 204 and resp.headers["Upload-Offset"] == "3"
    resp = requests.patch(
        location, data=b"x" * 20, headers={**patch, "Upload-Offset": "3"}, timeout=5
    )
    assert resp.status_code == 413 and resp.headers["Upload-Offset"] == "10"


def test_acknowledged_offset_survives_a_restart(tmp_path, central_db):
    data = tmp_path / "central"
    sha = hashlib.sha256(b"1234567890").hexdigest()
    headers = {**auth(TOKEN_A), "Content-Type": "application/offset+octet-stream"}
    with serve_app(create_app(data, TOKENS, database=central_db)) as url:
        location = create(url, TOKEN_A, 10, sha).headers["Location"]
        resp = requests.patch(location, data=b"12345", headers={**headers, "Upload-Offset": "0"})
        assert resp.status_code == 204
    upload_id = location.rsplit("/", 1)[1]
    with open(data / "uploads" / f"{upload_id}.part", "ab") as f:
        f.write(b"bytes never acknowledged")
    with serve_app(create_app(data, TOKENS, database=central_db)) as url:
        location = f"{url}/files/{upload_id}"
        resp = requests.head(location, headers=auth(TOKEN_A), timeout=5)
        assert resp.headers["Upload-Offset"] == "5"
        resp = requests.patch(location, data=b"67890", headers={**headers, "Upload-Offset": "5"})
        assert resp.status_code == 204
        resp = requests.get(resp.headers["Upload-Receipt"], headers=auth(TOKEN_A), timeout=10)
        wait_for(
            lambda: requests.get(f"{location}/receipt", headers=auth(TOKEN_A)).status_code == 200
        )
    assert (data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).read_bytes() == b"1234567890"


def test_expire_uploads_removes_only_abandoned_ones(central, tmp_path):
    url, data, app = central
    old = create(url, TOKEN_A, 10, "d" * 64).headers["Location"].rsplit("/", 1)[1]
    new = create(url, TOKEN_A, 10, "e" * 64).headers["Location"].rsplit("/", 1)[1]
    uploads.set_touched(app.state.uploads.db_path, old, time.time() - 3600)
    assert app.state.uploads.expire_uploads(older_than=600) == [old]
    assert sorted(p.name for p in (data / "uploads").iterdir()) == [f"{new}.part"]
    assert [r["id"] for r in uploads.records(app.state.uploads.db_path)] == [new]


def patch(location: str, offset: int, body: bytes, timeout: float = 10) -> requests.Response:
    headers = {
        **auth(TOKEN_A),
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    return requests.patch(location, data=body, headers=headers, timeout=timeout)


def test_expiry_leaves_an_upload_alone_while_a_patch_writes_it(central, tmp_path):
    url, data, app = central
    path, sha = make_file(tmp_path / "clip.mp4", 1536 * 1024)
    body = path.read_bytes()
    location = create(url, TOKEN_A, len(body), sha).headers["Location"]
    part = data / "uploads" / f"{location.rsplit('/', 1)[1]}.part"
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    conn.putrequest("PATCH", urlsplit(location).path)
    for name, value in {
        **auth(TOKEN_A),
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(body)),
    }.items():
        conn.putheader(name, value)
    conn.endheaders()
    first = 1024 * 1024 + 4096  # more than the server's write batch: it reaches the disk
    conn.send(body[:first])
    wait_for(lambda: part.stat().st_size >= 1024 * 1024)  # the PATCH is writing
    assert app.state.uploads.expire_uploads(older_than=0) == []
    conn.send(body[first:])
    resp = conn.getresponse()
    assert resp.status == 204 and resp.getheader("Upload-Offset") == str(len(body))
    conn.close()
    receipt = wait_for(
        lambda: (
            requests.get(f"{location}/receipt", headers=auth(TOKEN_A), timeout=5)
            .json()
            .get("sha256")
        )
    )
    assert receipt == sha
    assert (data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).read_bytes() == body


def test_a_patch_racing_expiry_is_refused_never_acknowledged_then_lost(
    central, tmp_path, monkeypatch
):
    """Expiry has decided to delete an upload when the PATCH resuming it arrives: the PATCH is
    answered 404 (the upload is gone), never 204 for bytes that are then deleted."""
    url, data, app = central
    store = app.state.uploads
    path, sha = make_file(tmp_path / "clip.mp4", 4000)
    body = path.read_bytes()
    location = create(url, TOKEN_A, len(body), sha).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    assert patch(location, 0, body[:1000]).status_code == 204
    # hold expiry right after it has read the upload's record: the moment it decides
    deciding, go = threading.Event(), threading.Event()
    outcome: list[list[str]] = []
    expiry = threading.Thread(target=lambda: outcome.append(store.expire_uploads(older_than=0)))
    real_load = store.load

    def load(some_id):
        info = real_load(some_id)
        if threading.current_thread() is expiry and some_id == upload_id:
            deciding.set()
            go.wait(10)
        return info

    monkeypatch.setattr(store, "load", load)
    expiry.start()
    try:
        assert deciding.wait(10)
        resumed = patch(location, 1000, body[1000:2000])
    finally:
        go.set()
        expiry.join(10)
    assert outcome == [[upload_id]]
    assert resumed.status_code in (404, 410), (
        f"PATCH answered {resumed.status_code} while its upload was being deleted"
    )
    assert not list((data / "uploads").iterdir())
    # after expiry: a clean 404 for HEAD and PATCH, and the station sends the file again
    assert requests.head(location, headers=auth(TOKEN_A), timeout=5).status_code == 404
    assert patch(location, 1000, body[1000:]).status_code == 404
    assert TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha).sha256 == sha


def test_independent_tus_client_tuspy(central, tmp_path):
    from tusclient import client as tus_client

    url, data, _ = central
    path, sha = make_file(tmp_path / "clip.mp4", 1536 * 1024 + 3)
    client = tus_client.TusClient(f"{url}/files/", headers={"Authorization": f"Bearer {TOKEN_B}"})
    uploader = client.uploader(
        str(path), chunk_size=512 * 1024, metadata={"sha256": sha, "station": "ST-B"}
    )
    uploader.upload()
    receipt_url = f"{uploader.url}/receipt"

    def receipt():
        resp = requests.get(receipt_url, headers=auth(TOKEN_B), timeout=5)
        return resp.json() if resp.status_code == 200 else None

    body = wait_for(receipt, timeout=10)
    assert body["sha256"] == sha and body["station"] == "ST-B" and body["verified"]
    obj = data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    assert obj.read_bytes() == path.read_bytes()


def test_tokens_file_and_cli_help(tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[stations]\n"ST-A" = "{TOKEN_A}"\n')
    assert load_tokens(tokens) == {TOKEN_A: "ST-A"}
    tokens.write_text('[stations]\n"ST-A" = "short"\n')
    with pytest.raises(CredentialsError, match="shorter"):
        load_tokens(tokens)
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--data", "--tokens", "--host", "--port"):
        assert option in result.output


def test_a_verification_the_server_cannot_finish_is_an_error_not_endless_waiting(central, tmp_path):
    """Disk trouble on the central side: the receipt request says so (500), never 202 forever."""
    import hashlib
    import shutil
    from urllib.parse import urljoin

    url, data, _app = central
    objects = data / "objects"
    shutil.rmtree(objects, ignore_errors=True)
    objects.write_text("not a folder: storing the object fails\n")
    body = b"evidence" * 1000
    sha = hashlib.sha256(body).hexdigest()
    created = create(url, TOKEN_A, len(body), sha, station="ST-A")
    assert created.status_code == 201, created.text
    location = urljoin(f"{url}/files/", created.headers["Location"])
    patched = requests.patch(
        location,
        data=body,
        headers={
            **auth(TOKEN_A),
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=10,
    )
    assert patched.status_code == 204, patched.text
    answer = requests.get(f"{location}/receipt", headers=auth(TOKEN_A), timeout=30)
    assert answer.status_code == 500, answer.text
    assert "verify_failed" in answer.text


def test_a_verification_finished_before_it_is_registered_does_not_freeze_the_server(tmp_path):
    """start_verify runs on the event loop. A job can be over (a tiny file, or the server's
    own disk failing at once) before start_verify has registered its clean-up: that must
    neither deadlock the caller nor leave the finished job registered."""
    from concurrent.futures import wait

    from central.upload import UploadStore

    store = UploadStore(tmp_path / "central")
    info = store.create("ST-A", 3, hashlib.sha256(b"abc").hexdigest(), None, {})
    real_submit = store._executor.submit

    def submit_and_let_it_finish(fn, *args):  # type: ignore[no-untyped-def]
        job = real_submit(fn, *args)
        wait([job])  # the job is over before start_verify goes on
        return job

    store._executor.submit = submit_and_let_it_finish  # type: ignore[method-assign]
    token = store.begin_write(info.id)
    with store.open_for_append(info) as f:
        f.write(b"abc")
    info.offset = 3
    assert store.save(info, token)
    store.end_write(info.id, token)
    started: list[object] = []
    caller = threading.Thread(target=lambda: started.append(store.start_verify(info)), daemon=True)
    caller.start()
    caller.join(5)
    assert not caller.is_alive(), "start_verify deadlocked on a job that had already finished"
    assert started[0].result() is None
    assert store.verifying(info.id) is None, "a finished job stays registered"
    assert store.receipt(info.id)["sha256"] == hashlib.sha256(b"abc").hexdigest()
    store.close()


def test_expiry_verifies_a_complete_upload_and_never_deletes_it(tmp_path):
    """A complete upload left unverified (its worker stopped before verifying) and untouched past
    the expiry: expiry hands it to verification, after releasing the upload's lease (else the
    verification finds the lease held and does nothing), and never deletes it."""
    from central.upload import UploadStore

    store = UploadStore(tmp_path / "central")
    body = b"complete, not yet verified"
    info = store.create("ST-A", len(body), hashlib.sha256(body).hexdigest(), None, {})
    token = store.begin_write(info.id)
    with store.open_for_append(info) as f:
        f.write(body)
    info.offset = len(body)
    assert store.save(info, token)
    store.end_write(info.id, token)
    uploads.set_touched(store.db_path, info.id, time.time() - 3600)
    real_start = store.start_verify

    def start_and_finish(some):  # a verification thread quicker than expiry
        job = real_start(some)
        job.result(10)
        return job

    store.start_verify = start_and_finish  # type: ignore[method-assign]
    try:
        assert store.expire_uploads(older_than=600) == []
        wait_for(lambda: store.receipt(info.id) is not None, 10)
        assert store.object_path(info.sha256).read_bytes() == body
    finally:
        store.close()
