"""De-duplication per station (issue 9): a receipt without bytes only for content the same
station already uploaded. Another station that knows a file's sha256 and size (both are in
every ``file.stored`` event) must send the bytes; the store still keeps one object, and the
claimant's metadata is never attached to another station's upload."""

from __future__ import annotations

import requests

from central.app import create_app
from sync.upload.tus import TusUploader
from sync.wire.tusmeta import encode_metadata
from tests.central_server import TOKEN_A, TOKEN_B, TOKENS, make_file, serve_app

TUS = {"Tus-Resumable": "1.0.0"}


def auth(token: str) -> dict[str, str]:
    return {**TUS, "Authorization": f"Bearer {token}"}


def test_another_station_gets_no_receipt_for_bytes_it_never_sent(tmp_path, central_db):
    data = tmp_path / "central"
    path, sha = make_file(tmp_path / "clip.mp4", 256 * 1024 + 5)
    size = path.stat().st_size
    with serve_app(create_app(data, TOKENS, database=central_db)) as url:
        a = TusUploader(f"{url}/files/", TOKEN_A).upload(
            path, sha256=sha, metadata={"device": "A-CAM"}
        )
        obj = data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
        inode = obj.stat().st_ino
        # station B claims the content with its own metadata, sending no byte
        meta = encode_metadata({"sha256": sha, "device": "B-FORGED"})
        claim = requests.post(
            f"{url}/files/",
            headers={**auth(TOKEN_B), "Upload-Length": str(size), "Upload-Metadata": meta},
            timeout=10,
        )
        assert claim.status_code == 201, claim.text
        assert "Upload-Receipt" not in claim.headers, "a receipt for bytes never sent"
        assert claim.headers.get("Upload-Offset", "0") == "0"
        receipt = requests.get(f"{claim.headers['Location']}/receipt", headers=auth(TOKEN_B))
        assert receipt.status_code == 409  # incomplete: the bytes must come first
        # B sends the bytes and then has its own receipt; the store keeps one object
        b_up = TusUploader(f"{url}/files/", TOKEN_B)
        b = b_up.upload(path, sha256=sha, metadata={"device": "B-CAM"})
        assert b_up.bytes_sent == size
        assert b.verified and not b.deduplicated and b.raw["station"] == "ST-B"
        assert b.raw["metadata"]["device"] == "B-CAM"
        # A's receipt is A's, with A's metadata, whatever B claimed or sent
        again = requests.get(f"{a.upload_url}/receipt", headers=auth(TOKEN_A), timeout=10).json()
        assert again["station"] == "ST-A" and again["metadata"]["device"] == "A-CAM"
        head = requests.head(a.upload_url, headers=auth(TOKEN_A), timeout=10)
        assert "B-" not in head.headers["Upload-Metadata"]
        # a repeat by B, now that B itself uploaded it, is answered without bytes
        sent = b_up.bytes_sent
        repeat = b_up.upload(path, sha256=sha, metadata={"device": "B-CAM"})
        assert repeat.deduplicated and b_up.bytes_sent == sent and repeat.raw["station"] == "ST-B"
    assert obj.stat().st_ino == inode  # one object, never replaced
    assert [p.name for p in obj.parent.iterdir()] == [sha]
