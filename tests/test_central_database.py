"""The centre's catalog on either database (central/catalog/db.py; docs/central.md, "Catalog on
PostgreSQL"): the placeholders psycopg is given, the database a URL names, a password never
shown, the schema made and migrated once on both, and two workers storing one station's
events at once keeping its chain whole."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.catalog import Catalog
from central.catalog import MIGRATIONS, CentralCatalog, db, now_utc
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from tests.signing_keys import new_key, queued, register
from tests.test_mqtt import add_events

STATION = "ST-A"
KEY = new_key()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT '?', x FROM t WHERE y = ?", "SELECT '?', x FROM t WHERE y = %s"),
        ("SELECT 1 WHERE k LIKE 'recorder.%'", "SELECT 1 WHERE k LIKE 'recorder.%%'"),
        ("SELECT 10 % 3", "SELECT 10 %% 3"),
        (
            "SELECT ':a' WHERE u = :unit OR :unit IS NULL",
            "SELECT ':a' WHERE u = %(unit)s OR %(unit)s IS NULL",
        ),  # fmt: skip
        ("SELECT d::jsonb #>> '{a,b}' FROM t", "SELECT d::jsonb #>> '{a,b}' FROM t"),
        ("SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = %s"),
    ],
)
def test_placeholders_become_psycopgs_outside_string_literals(sql: str, expected: str) -> None:
    assert db.to_psycopg(sql) == expected


def test_a_url_names_its_database_and_a_password_is_never_shown(tmp_path: Path) -> None:
    assert db.parse(tmp_path / "c.db").path == tmp_path / "c.db"
    assert db.parse(f"sqlite://{tmp_path}/c.db").path == tmp_path / "c.db"
    assert db.parse(f"sqlite:///{tmp_path}/c.db").path == tmp_path / "c.db"
    assert db.parse("postgresql://u@h/n").dialect is db.POSTGRESQL
    assert db.parse("postgres://u@h/n").dialect is db.POSTGRESQL
    assert db.redacted("postgresql://alice:s3cret@db.example:5432/n") == (
        "postgresql://alice:***@db.example:5432/n"
    )
    assert str(db.parse("postgresql://alice:s3cret@h/n")) == "postgresql://alice:***@h/n"
    with pytest.raises(ValueError, match="postgresql://") as refused:
        db.parse("mysql://alice:s3cret@h/n")
    assert "s3cret" not in str(refused.value)


def test_a_postgresql_that_cannot_be_reached_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    import psycopg

    url = f"postgresql://alice:s3cret@/recdock?host={tmp_path}&connect_timeout=2"
    with pytest.raises(psycopg.OperationalError) as failed:
        CentralCatalog(url)
    assert "alice:***@" in str(failed.value) and "s3cret" not in str(failed.value)


def test_the_server_logs_its_catalog_without_the_password(
    tmp_path: Path, postgres_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    from central.app import create_app
    from tests.central_server import TOKENS

    # the test cluster trusts its socket: the password is not checked, only carried
    url = postgres_cluster.fresh_database().replace("postgres@", "postgres:s3cret@")
    with caplog.at_level(logging.INFO):
        app = create_app(tmp_path / "data", TOKENS, database=url)
    app.state.catalog.close()
    assert "postgres:***@" in caplog.text and "s3cret" not in caplog.text
    assert not (tmp_path / "data" / "receipts.sqlite").exists(), "receipts go with the catalog"


def test_an_empty_database_gets_the_schema_and_each_migration_once(
    tmp_path: Path, request: pytest.FixtureRequest, central_db: str
) -> None:
    if "://" in central_db:  # not the migrated template: an empty database
        central_db = request.getfixturevalue("postgres_cluster").fresh_database(empty=True)
    for _ in range(2):
        catalog = CentralCatalog(central_db)
        versions = [r[0] for r in catalog.conn.execute("SELECT version FROM schema_version")]
        assert versions == [v for v, _, _ in MIGRATIONS]
        assert catalog.counts()["stations"] == 0
        catalog.close()


def test_a_column_added_since_a_table_was_made_is_added_to_an_older_catalog(
    central_db: str,
) -> None:
    """An older catalog's ``faults`` lacks the columns added since (each owner's COLUMNS):
    opening it adds them, on both databases."""
    catalog = CentralCatalog(central_db)
    with catalog.tx() as conn:
        conn.execute("DROP INDEX faults_device")
        conn.execute("ALTER TABLE faults DROP COLUMN resolution_note")
        conn.execute("ALTER TABLE faults DROP COLUMN device")
    assert "device" not in db.columns(catalog.conn, "faults")
    catalog.close()
    again = CentralCatalog(central_db)
    assert {"device", "resolution_note"} <= db.columns(again.conn, "faults")
    assert again.faults(include_resolved=True) == []
    again.close()


def side_by_side(work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(0)`` and ``work(1)`` at once, as two workers would; what either raised."""
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return failures


def test_two_workers_storing_one_stations_events_at_once_keep_its_chain_whole(
    home: Path, central_db: str
) -> None:
    """Two consumers (two connections, as two recdock-central workers have) store the same
    station's events at once, each every other one: the head ends at the last event with no
    gap and nothing counted twice. SQLite takes the writers in turn (BEGIN IMMEDIATE);
    PostgreSQL does because an event reads its station's chain head FOR UPDATE."""
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 120)
    messages = [m for m in queued(station, KEY) if m[0].endswith("/event")]
    workers = [
        MqttConsumer(
            CentralCatalog(central_db),
            ConsumerSettings(port=1),
            keys=StationKeys(register({STATION: KEY})),
        )
        for _ in range(2)
    ]
    outcomes: list[str] = []

    def work(n: int) -> None:
        for topic, payload in messages[n::2]:
            outcomes.append(workers[n].handle(topic, payload))

    assert side_by_side(work) == [] and outcomes == ["stored"] * len(messages)
    chain = workers[0].catalog.chain(STATION)
    assert (chain["state"], chain["head_seq"], chain["missing"]) == ("ok", len(messages), [])
    assert workers[1].catalog.station(STATION)["events"] == len(messages)
    for w in workers:
        w.catalog.close()


def test_a_message_undone_by_its_savepoint_takes_back_what_it_moved_of_the_chain(
    home: Path, central_db: str
) -> None:
    """A transaction reads a station's chain once and writes it once, before the commit
    (central/catalog/chains.py). A message whose savepoint is rolled back after its event was
    stored (something later in the same message failed) takes back its move of the chain with
    its row: the same event stored again afterwards extends the head, and the station counts
    the events its table holds."""
    station = Catalog(home / "catalog.db", station_id=STATION)
    add_events(station, 3)
    docs = [json.loads(p) for t, p in queued(station, KEY) if t.endswith("/event")]
    catalog = CentralCatalog(central_db)
    with catalog.tx():
        assert catalog.record_event(docs[0], received_at=now_utc()) == "stored"
        with pytest.raises(RuntimeError), catalog.savepoint():
            assert catalog.record_event(docs[1], received_at=now_utc()) == "stored"
            raise RuntimeError("the message failed after its event was stored")
        for doc in docs[1:]:
            assert catalog.record_event(doc, received_at=now_utc()) == "stored"
    chain = catalog.chain(STATION)
    assert (chain["state"], chain["head_seq"], chain["missing"]) == ("ok", 3, [])
    assert catalog.station(STATION)["events"] == 3 == len(catalog.event_ids(STATION))
    with catalog.tx():  # a duplicate in a later transaction is one, from the row written
        assert catalog.record_event(docs[2], received_at=now_utc()) == "duplicate"
    catalog.close()


def test_two_workers_whose_batches_name_stations_in_another_order_never_deadlock(
    home: Path, central_db: str
) -> None:
    """Worker 0's batches carry station A's event then B's, worker 1's B's then A's: taken as
    they come, each would hold one station's row and wait for the other's (PostgreSQL aborts
    one of them as a deadlock, and the worker retries its whole batch). A batch takes its
    stations' rows first, in name order (stations.hold_rows), so they only wait."""
    keys = {"ST-A": new_key(), "ST-B": new_key()}
    events = {}
    for name, key in keys.items():
        station = Catalog(home / f"{name}.db", station_id=name)
        add_events(station, 60)
        events[name] = [m for m in queued(station, key) if m[0].endswith("/event")]
    workers = [
        MqttConsumer(
            CentralCatalog(central_db), ConsumerSettings(port=1), keys=StationKeys(register(keys))
        )
        for _ in range(2)
    ]

    def work(n: int) -> None:
        order = ("ST-A", "ST-B") if n == 0 else ("ST-B", "ST-A")
        for i in range(n, 60, 2):
            batch = [(*events[name][i], False) for name in order]
            assert workers[n].handler.handle_batch(batch) == ["stored", "stored"]

    assert side_by_side(work) == []
    for name in keys:
        chain = workers[0].catalog.chain(name)
        assert (chain["state"], chain["head_seq"], chain["missing"]) == ("ok", 60, []), chain
    for w in workers:
        w.catalog.close()


def test_a_nul_in_a_path_or_query_is_refused_before_the_catalog(
    tmp_path: Path, central_db: str
) -> None:
    """PostgreSQL's text holds no NUL, so a lookup with one would fail there (SQLite finds
    nothing): every route answers 422 at once, on both."""
    import requests

    from central.app import create_app
    from tests.central_server import TOKENS, serve_app

    reader = "reader-token-0123456789abcdef"
    app = create_app(tmp_path / "data", TOKENS, api_tokens={reader: "supervisor"},
                     database=central_db)  # fmt: skip
    auth = {"Authorization": f"Bearer {reader}"}
    with serve_app(app) as url:
        for path in (
            "/api/fleet/recorders?unit=%00",
            "/api/stations/ST%00A",
            "/api/faults?station=a%00",
        ):
            r = requests.get(f"{url}{path}", headers=auth, timeout=10)
            assert r.status_code == 422 and "NUL" in r.json()["detail"][0]["msg"], (path, r.text)
        assert requests.get(f"{url}/api/fleet/recorders?unit=U1", headers=auth, timeout=10).ok
    app.state.catalog.close()
