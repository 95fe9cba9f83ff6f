"""The centre's hardened defaults (issue 9): its data readable by its own user only (files 0600,
objects 0400, folders 0700, whatever the umask), and no API documentation served unless
``--api-docs`` asks for it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import requests

from central.app import create_app
from sync.upload.tus import TusUploader, UploadHashMismatch
from tests.central_server import TOKEN_A, TOKEN_B, TOKENS, live_central, make_file, serve_app


@pytest.fixture
def open_umask():
    """The umask of a careless shell: what the data's modes must not depend on."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_central_data_is_readable_by_its_user_only(tmp_path, open_umask, central_db):
    """(With the catalog on PostgreSQL, neither the catalog nor the receipts are files here.)"""
    data = tmp_path / "central"
    path, sha = make_file(tmp_path / "clip.mp4", 100_000)
    other, _ = make_file(tmp_path / "other.mp4", 1000, seed=2)
    postgres = "://" in central_db
    with serve_app(create_app(data, TOKENS, database=central_db if postgres else None)) as url:
        TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha)
        TusUploader(f"{url}/files/", TOKEN_A).upload(path, sha256=sha)  # answered from a receipt
        with pytest.raises(UploadHashMismatch):
            TusUploader(f"{url}/files/", TOKEN_B).upload(other, sha256="0" * 64)
        requests.post(  # an unfinished upload: its record and partial file
            f"{url}/files/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Authorization": f"Bearer {TOKEN_A}",
                "Upload-Length": "10",
                "Upload-Metadata": "sha256 " + _b64("c" * 64),
            },
            timeout=10,
        ).raise_for_status()
        found = modes(data)
    obj = f"objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    assert found[obj] == 0o400
    if postgres:
        assert not any(name.endswith((".sqlite", ".db")) for name in found), found
    else:
        assert found["receipts.sqlite"] == 0o600 and found["central-catalog.db"] == 0o600
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (data / name).is_dir() else 0o400 if name == obj else 0o600)
    }
    assert wrong == {}, f"not private: {wrong}"
    assert any(name.endswith(".part") for name in found)  # the unfinished upload was looked at


def test_an_existing_world_readable_data_folder_is_closed_at_start(tmp_path, open_umask):
    data = tmp_path / "central"
    data.mkdir(mode=0o755)
    (data / "receipts.sqlite").touch(mode=0o644)
    create_app(data, TOKENS)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "receipts.sqlite").stat().st_mode) == 0o600


def test_no_api_documentation_without_api_docs(tmp_path):
    with serve_app(create_app(tmp_path / "central", TOKENS)) as url:
        for route in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert requests.get(f"{url}{route}", timeout=5).status_code == 404, route
    with serve_app(create_app(tmp_path / "central", TOKENS, api_docs=True)) as url:
        assert requests.get(f"{url}/openapi.json", timeout=5).json()["openapi"].startswith("3.")
        assert requests.get(f"{url}/docs", timeout=5).status_code == 200


def test_recdock_central_serves_api_documentation_only_with_the_option(tmp_path):
    with live_central(tmp_path / "a" / "central") as url:
        assert requests.get(f"{url}/openapi.json", timeout=5).status_code == 404
        assert requests.get(f"{url}/docs", timeout=5).status_code == 404
    with live_central(tmp_path / "b" / "central", "--api-docs") as url:
        assert requests.get(f"{url}/openapi.json", timeout=5).status_code == 200


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_reader_and_station_tokens_open_only_their_own_routes(tmp_path):
    """A compromised reader cannot upload; a station cannot read the JSON API."""
    reader = "reader-token-0123456789abcdef"
    app = create_app(tmp_path / "central", TOKENS, api_tokens={reader: "supervisor"})
    with serve_app(app) as url:
        create = {
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {reader}",
            "Upload-Length": "1",
            "Upload-Metadata": "sha256 " + _b64("c" * 64),
        }
        assert requests.post(f"{url}/files/", headers=create, timeout=5).status_code == 401
        as_station = {"Authorization": f"Bearer {TOKEN_A}"}
        assert requests.get(f"{url}/api/stations", headers=as_station, timeout=5).status_code == 401
        as_reader = {"Authorization": f"Bearer {reader}"}
        assert requests.get(f"{url}/api/stations", headers=as_reader, timeout=5).status_code == 200
