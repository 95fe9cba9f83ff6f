"""The station never sends its upload token over plain ``http://`` unless the configuration
says ``[upload] insecure_lab = true``, and then it says so at every start (issue 9)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from agent.config import Config, load_config
from agent.errors import ConfigError
from sync.upload.worker import UploadWorker
from tests.central_server import TOKEN_A


def write(tmp_path: Path, upload: str) -> Path:
    path = tmp_path / "recdock.toml"
    path.write_text(f'station_id = "ST-A"\n[upload]\nenabled = true\n{upload}\n')
    return path


def start_worker(config: Config, home: Path) -> UploadWorker:
    return UploadWorker(config, home, stop=threading.Event())


def test_a_token_in_the_config_over_http_stops_the_station_at_start(tmp_path):
    path = write(tmp_path, f'endpoint = "http://central.example/files/"\ntoken = "{TOKEN_A}"')
    with pytest.raises(ConfigError, match="insecure_lab") as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "https://" in str(caught.value)


def test_a_token_from_the_credentials_over_http_is_refused_at_start(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "upload-token").write_text(TOKEN_A + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(write(tmp_path, 'endpoint = "http://central.example/files/"'))
    with pytest.raises(ConfigError, match="insecure_lab"):
        start_worker(config, tmp_path / "home")


def test_insecure_lab_allows_it_and_says_so_at_every_start(tmp_path, caplog):
    config = load_config(
        write(
            tmp_path,
            f'endpoint = "http://127.0.0.1:9/files/"\ntoken = "{TOKEN_A}"\ninsecure_lab = true',
        )
    )
    with caplog.at_level(logging.WARNING, logger="sync.upload.worker"):
        for _ in range(2):
            start_worker(config, tmp_path / "home").close()
    said = [r for r in caplog.records if "insecure_lab" in r.getMessage()]
    assert len(said) == 2 and all(r.levelno == logging.WARNING for r in said)
    assert TOKEN_A not in caplog.text  # the warning names the endpoint, never the token


def test_https_or_no_token_needs_no_exception(tmp_path, caplog):
    for upload in (
        f'endpoint = "https://central.example/files/"\ntoken = "{TOKEN_A}"',
        'endpoint = "http://central.example/files/"',
    ):
        with caplog.at_level(logging.WARNING, logger="sync.upload.worker"):
            start_worker(load_config(write(tmp_path, upload)), tmp_path / "home").close()
        assert "insecure_lab" not in caplog.text
