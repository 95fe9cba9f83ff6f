"""The station's audit chain against the head the centre holds (sync/anchor.py).

Issue 9: deleting audit entry 3 from catalog.db and re-hashing the rest passes ``recdock
verify``, and the station never compared its chain with what the centre received. Now
``recdock verify --against-central`` asks the real central store (uvicorn on loopback) for the
head it holds and fails on any disagreement, and the daemon's daily check opens a critical
fault. Only entries not yet published can still be rewritten unseen (docs/architecture.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.catalog import Catalog, audit
from agent.catalog.faults import list_faults
from agent.config import Config, load_config
from central.app import create_app
from central.consumer import ConsumerSettings, MqttConsumer
from sync.services import AnchorService, configured_services
from sync.wire.chain import GENESIS, entry_hash
from tests.central_server import TOKEN_A, TOKENS, serve_app
from tests.mosquitto import free_port
from tests.recorders import recdock
from tests.signing_keys import new_key, queued, register
from tests.test_mqtt import add_events

STATION = "ST-A"  # TOKENS gives it TOKEN_A
KEY = new_key()


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[str, MqttConsumer]]:
    """A running central store (HTTP) whose consumer the test feeds directly."""
    app = create_app(
        tmp_path / "central",
        TOKENS,
        mqtt=ConsumerSettings(port=1),  # never connects: the test feeds it
        station_keys=register({STATION: KEY}),
    )
    with serve_app(app) as url:
        yield url, app.state.consumer


def station_config(tmp_path: Path, url: str, **anchor: str) -> Path:
    path = tmp_path / "station.toml"
    lines = [f'station_id = "{STATION}"', "[upload]", "enabled = true"]
    lines += [
        f'endpoint = "{url}/files/"',
        f'token = "{TOKEN_A}"',
        "insecure_lab = true",
        "[anchor]",
    ]
    lines += [f"{k} = {v}" for k, v in anchor.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def published(catalog: Catalog, consumer: MqttConsumer) -> None:
    """Everything queued so far reaches the centre (as the publisher would send it)."""
    for topic, payload in queued(catalog, KEY):
        consumer.handle(topic, payload)
    with catalog.tx() as conn:
        conn.execute("DELETE FROM outbox")


def rewrite_without(db: Path, seq: int) -> None:
    """What a root user can do: delete one entry, renumber and re-hash the rest."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT seq, at, kind, subject, data FROM audit WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
    prev_hash = prev[0] if prev else GENESIS
    with conn:
        conn.execute("DELETE FROM audit WHERE seq >= ?", (seq,))
        for old_seq, at, kind, subject, data in rows:
            new_seq = old_seq - 1
            digest = entry_hash(prev_hash, new_seq, at, kind, subject, data)
            conn.execute(
                "INSERT INTO audit (seq, at, kind, subject, data, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_seq, at, kind, subject, data, prev_hash, digest),
            )
            prev_hash = digest
    conn.close()


def test_a_rewritten_published_entry_passes_verify_but_not_verify_against_central(
    tmp_path: Path, home: Path, centre
) -> None:
    url, consumer = centre
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 6)
    published(catalog, consumer)
    config = station_config(tmp_path, url)
    agrees = recdock("verify", "--against-central", home=home, config=config)
    assert agrees.returncode == 0, agrees.stdout + agrees.stderr
    assert "central store: agrees" in agrees.stdout
    catalog.close()

    rewrite_without(home / "catalog.db", 3)
    alone = recdock("verify", home=home, config=config)
    assert alone.returncode == 0, "the local check alone cannot see it (the finding)"
    against = recdock("verify", "--against-central", "--json", home=home, config=config)
    assert against.returncode == 1, against.stdout + against.stderr
    report = json.loads(against.stdout)
    assert report["ok"] is False and report["central"]["ok"] is False
    assert any("removed" in p or "rewritten" in p for p in report["central"]["problems"])


def test_a_removed_tail_of_published_entries_is_found(tmp_path: Path, home: Path, centre) -> None:
    url, consumer = centre
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 5)
    published(catalog, consumer)
    with catalog.tx() as conn:
        conn.execute("DELETE FROM audit WHERE seq > 3")  # a test's hand, as a root user's
    catalog.close()
    against = recdock(
        "verify", "--against-central", home=home, config=station_config(tmp_path, url)
    )
    assert against.returncode == 1
    assert "published entries were removed" in against.stdout


def test_entries_not_yet_published_are_not_a_disagreement(
    tmp_path: Path, home: Path, centre
) -> None:
    url, consumer = centre
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 3)
    published(catalog, consumer)
    add_events(catalog, 4, start=3)  # still in the outbox: the centre has not seen them
    catalog.close()
    config = station_config(tmp_path, url)
    result = recdock("verify", "--against-central", home=home, config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    # entry 8 is verify's own record of this run
    assert "its head is entry 3, the local log ends at entry 8" in result.stdout


def test_a_centre_that_cannot_be_asked_is_not_a_disagreement(tmp_path: Path, home: Path) -> None:
    Catalog(home / "catalog.db", station_id=STATION).close()
    config = station_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    result = recdock("verify", "--against-central", home=home, config=config)
    assert result.returncode == 69, result.stdout + result.stderr
    assert "did not answer" in result.stderr


def test_the_daily_check_opens_a_critical_fault_on_disagreement_and_resolves_it(
    tmp_path: Path, home: Path, centre
) -> None:
    url, consumer = centre
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    add_events(catalog, 4)
    published(catalog, consumer)
    config = load_config(station_config(tmp_path, url))
    assert any(isinstance(s, AnchorService) for s in configured_services(config, home))
    service = AnchorService(config, home)
    assert service.check_once().ok
    assert list_faults(catalog) == []
    catalog.close()

    rewrite_without(home / "catalog.db", 2)
    report = service.check_once()
    assert report is not None and not report.ok
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    [fault] = list_faults(catalog)
    assert (fault.kind, fault.severity) == ("chain.central", "critical")
    assert "rewritten" in fault.detail or "removed" in fault.detail

    # the operator investigates and re-baselines the centre onto the station's chain as it is
    consumer.catalog.rebaseline(
        STATION, operator_name="li.wei", reason="checked on site", base=audit.head(catalog)
    )
    catalog.close()
    assert service.check_once().ok
    catalog = Catalog(home / "catalog.db", station_id=STATION)
    assert list_faults(catalog) == [], "an agreeing check resolves the fault"
    catalog.close()


def test_the_daily_check_is_off_without_uploads_or_when_switched_off(
    tmp_path: Path, home: Path
) -> None:
    config = load_config(station_config(tmp_path, "https://central.example", enabled="false"))
    assert not any(isinstance(s, AnchorService) for s in configured_services(config, home))
    plain = Config()
    assert not any(isinstance(s, AnchorService) for s in configured_services(plain, home))
    assert config.anchor.base_url("https://central.example/files/") == "https://central.example"
