"""The API describes itself (issue 9): schemathesis (from PyPI) runs against a live
``recdock-central --api-docs``, once with a station token over the tus routes and once with a
reader token over the JSON API, and finds no server error, no undocumented status and no
response that breaks the document (its schema, content type or headers), and no route that
ignores its token. The run is bounded: a fixed number of examples, deterministic generation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.central_server import TOKEN_A, live_central

READER_TOKEN = "reader-token-0123456789abcdef"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ROOT = Path(__file__).resolve().parent.parent
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "ignored_auth",
        "use_after_free",
    ]
)
# tus answers a request without Tus-Resumable with 412 (the protocol says so), and a header
# too long with 431: rejections as much as a 400 is
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "409", "412", "413", "415", "422", "429", "431"]
[checks.missing_required_header]
expected-statuses = ["400", "401", "403", "412", "415", "422"]
"""


@pytest.fixture
def central(tmp_path, central_db):
    readers = tmp_path / "api-tokens.toml"
    readers.write_text(f'[readers]\nsupervisor = "{READER_TOKEN}"\n')
    args = ("--api-docs", "--api-tokens", str(readers))
    if "://" in central_db:  # PostgreSQL: recdock-central --database URL
        args += ("--database", central_db)
    with live_central(tmp_path / "data" / "central", *args) as url:
        yield url


def schemathesis(tmp_path: Path, url: str, token: str, paths: str) -> subprocess.CompletedProcess:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            *("--config-file", str(config), "run", f"{url}/openapi.json"),
            *("--checks", CHECKS, "--include-path-regex", paths),
            *("-H", f"Authorization: Bearer {token}"),
            *("--max-examples", "25", "--generation-deterministic", "--workers", "1"),
            *("--phases", "examples,coverage,fuzzing", "--no-color"),
            *("--request-timeout", "10", "--max-failures", "20"),
            *("--report", "junit", "--report-dir", str(tmp_path / "report")),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


def test_the_tus_routes_keep_to_their_document(central, tmp_path):
    done = schemathesis(tmp_path, central, TOKEN_A, "^/files")
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "passed" in done.stdout


def test_the_json_api_keeps_to_its_document(central, tmp_path):
    done = schemathesis(tmp_path, central, READER_TOKEN, "^/api")
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "passed" in done.stdout


def test_the_document_declares_the_tus_headers_and_statuses(central):
    doc = requests.get(f"{central}/openapi.json", timeout=10).json()
    create = doc["paths"]["/files/"]["post"]
    assert {p["name"] for p in create["parameters"]} >= {
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Metadata",
    }
    assert {"201", "400", "401", "403", "412", "413", "429", "431"} <= set(create["responses"])
    assert "Location" in create["responses"]["201"]["headers"]
    patch = doc["paths"]["/files/{upload_id}"]["patch"]
    assert "application/offset+octet-stream" in patch["requestBody"]["content"]
    assert {"204", "409", "412", "415"} <= set(patch["responses"])
    assert "Upload-Offset" in patch["responses"]["204"]["headers"]
    assert set(doc["components"]["securitySchemes"]) == {"stationToken", "readerToken"}
