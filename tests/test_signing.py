"""The station signs everything it publishes, with a key only it can read.

The publisher signs each outbox row as it hands it to the link, whatever queued it (what is
signed: sync/wire/signing.py, tests/test_wire_signing.py); the link signs
its own status messages and the Last Will; the key is made once by ``recdock enrol``, mode
0400, and refused when others can read it; MQTT credentials never go without TLS unless
``[mqtt] insecure_lab`` says so, which is logged at every start.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest

from agent.catalog import Catalog, audit, outbox
from agent.config import load_config
from agent.config.keys import create_signing_key, load_signing_key, signing_key_path
from agent.config.links import MqttConfig
from agent.errors import ConfigError
from sync.mqtt.link import MqttLink
from sync.mqtt.publisher import OutboxPublisher
from sync.wire import topics
from sync.wire.signing import public_key_text, verify_doc
from tests.memory_link import MemoryLink
from tests.mosquitto import Mosquitto, Subscriber
from tests.recorders import recdock, wait_for
from tests.signing_keys import new_key
from tests.test_mqtt import (
    add_events,
    needs_mosquitto,
    needs_openssl,
    start_station,
    write_station_config,
)

STATION = "ST-S1"


# -- the publisher signs at hand-over ----------------------------------------------------------


def test_the_publisher_signs_every_message_it_hands_over_and_keeps_rows_unsigned(
    home: Path,
) -> None:
    from agent.catalog.faults import report_fault

    key = new_key()
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 3)
    report_fault(catalog, "store.full", "store", "full")
    unsigned = {m.id: m.payload for m in outbox.pending(catalog.conn)}
    assert all(b'"sig"' not in p for p in unsigned.values()), "the outbox keeps rows unsigned"
    link = MemoryLink()
    link.hold_acks = True
    link.connect()
    pub = OutboxPublisher(catalog.path, STATION, link, signing_key=key, idle_poll_s=0.05)
    pub.start()
    try:
        wait_for(lambda: len(link.broker.log) == len(unsigned), what="every row handed over")
    finally:
        pub.stop()
    for message in link.broker.log:
        verify_doc(key.public_key(), message.topic, json.loads(message.payload))


def test_a_message_too_large_once_signed_stays_in_the_outbox(home: Path, caplog) -> None:
    key = new_key()
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    with catalog.tx():
        audit.append(catalog, "test.big", "x", {"pad": "x" * 10_000})
    add_events(catalog, 1)
    link = MemoryLink()
    link.connect()
    pub = OutboxPublisher(
        catalog.path, STATION, link, signing_key=key, max_message_bytes=4096, idle_poll_s=0.05
    )
    pub.start()
    try:
        wait_for(lambda: len(link.broker.log) == 1, what="the small one sent")
        wait_for(lambda: outbox.backlog(catalog.conn) == 1, what="the small one acknowledged")
    finally:
        pub.stop()
    assert "max_message_bytes" in caplog.text
    [left] = outbox.pending(catalog.conn)
    assert json.loads(left.payload)["kind"] == "test.big", "the large row stays"


@needs_mosquitto
@needs_openssl
def test_the_link_signs_online_stopped_and_the_last_will(tmp_path: Path, home: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        config = write_station_config(tmp_path / "station.toml", broker, STATION)
        Catalog(home / "catalog.db", station_id=STATION).close()
        sub = Subscriber(broker)
        proc = start_station(home, config)  # makes <home>/signing-key
        key = load_signing_key(home / "signing-key")
        topic = topics.status(STATION)

        def states() -> list[str]:
            return [json.loads(p)["state"] for p, _ in sub.on(topic)]

        try:
            wait_for(lambda: "online" in states(), 15, "online")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            wait_for(lambda: "offline" in states(), 20, "the Last Will")
            proc = start_station(home, config)
            wait_for(lambda: states().count("online") >= 2, 15, "online again")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            wait_for(lambda: "stopped" in states(), 15, "stopped")
        finally:
            if proc.poll() is None:
                proc.kill()
            sub.close()
    for payload, _ in sub.on(topic):
        verify_doc(key.public_key(), topic, json.loads(payload))


# -- the key: made once, private, found where the station looks --------------------------------


def test_recdock_enrol_makes_a_private_key_once_and_prints_its_public_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = recdock("enrol", home=home)
    assert first.returncode == 0, first.stderr
    path = home / "signing-key"
    assert path.stat().st_mode & 0o777 == 0o400
    public = public_key_text(load_signing_key(path))
    assert f"public key: {public}" in first.stdout
    assert f"recdock-central enrol station-01 --public-key {public}" in first.stdout
    again = recdock("enrol", home=home)
    assert again.returncode == 0 and public in again.stdout, "the key is made once"
    rekeyed = recdock("enrol", "--rekey", home=home)
    assert rekeyed.returncode == 0 and public not in rekeyed.stdout
    assert path.stat().st_mode & 0o777 == 0o400


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing-key"
    create_signing_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 0400"):
        load_signing_key(path)
    os.chmod(path, 0o600)
    assert load_signing_key(path) is not None
    with pytest.raises(ConfigError, match="exists already"):
        create_signing_key(path)


def test_a_missing_key_stops_the_publisher_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recdock enrol"):
        load_signing_key(tmp_path / "none")


def test_the_key_is_found_in_the_config_then_the_credential_then_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert signing_key_path(MqttConfig(), home) == home / "signing-key"
    (creds / "signing-key").write_text("x")
    assert signing_key_path(MqttConfig(), home) == creds / "signing-key"
    chosen = tmp_path / "etc" / "key"
    assert signing_key_path(MqttConfig(signing_key=chosen), home) == chosen


# -- credentials only over TLS -----------------------------------------------------------------


def write_config(path: Path, mqtt: str) -> Path:
    path.write_text(f'station_id = "{STATION}"\n[mqtt]\nenabled = true\n{mqtt}\n')
    return path


def test_mqtt_credentials_without_tls_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", 'username = "ST-S1"\npassword = "secret-pw"')
    with pytest.raises(ConfigError, match="insecure_lab"):
        load_config(config)
    result = recdock("status", home=tmp_path / "home", config=config)
    assert result.returncode == 78 and "without TLS" in result.stderr
    with_tls = write_config(tmp_path / "t.toml", 'username = "ST-S1"\n[mqtt.tls]\nenabled = true')
    assert load_config(with_tls).mqtt.username == "ST-S1"


def test_insecure_lab_allows_them_and_says_so_at_every_start(tmp_path: Path, caplog) -> None:
    config = write_config(
        tmp_path / "c.toml", 'username = "ST-S1"\npassword = "secret-pw"\ninsecure_lab = true'
    )
    mqtt = load_config(config).mqtt
    for _ in range(2):  # two starts, two warnings
        with caplog.at_level(logging.WARNING, logger="sync.mqtt"):
            MqttLink(mqtt, STATION, signing_key=new_key())
    warnings = [r for r in caplog.records if "insecure_lab" in r.getMessage()]
    assert len(warnings) == 2
    assert "secret-pw" not in caplog.text, "no secret in the log"
