"""`recdock report` (rule clause 15; docs/report.md): the figures of a catalog filled by hand
with known sessions, recordings, checks, faults, holds and accesses, each expected number
written out below."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog, open_catalog, recordings, sessions
from agent.catalog.report import figures
from agent.cli.main import cli

SINCE, UNTIL = "2026-03-01 00:00:00", "2026-04-01 00:00:00"
FAIL = {"state": "FAIL"}


def check_results(*names_failed: str) -> str:
    all_names = ("battery", "storage", "clock")
    return json.dumps(
        [{"name": n, **(FAIL if n in names_failed else {"state": "pass"})} for n in all_names]
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = open_catalog(tmp_path / "home", "station-01")
    with cat.tx() as conn:
        for sid, serial, officer, unit in (
            ("s1", "DEV1", "o1", "unitA"),
            ("s2", "DEV2", "o2", "unitB"),
        ):
            sessions.insert(
                conn,
                {
                    "id": sid,
                    "station_id": "station-01",
                    "device_serial": serial,
                    "officer_id": officer,
                    "unit": unit,
                    "profile": "p",
                    "source": "x",
                    "store_dir": sid,
                    "started_at": "2026-03-01T00:00:00+00:00",
                },
            )
        for n, (sid, start, end, off, age, late) in enumerate(
            (
                (
                    "s1",
                    "2026-03-01T08:00:00+00:00",
                    "2026-03-01T08:30:00+00:00",
                    "2026-03-01T18:00:00+00:00",
                    10.0,
                    0,
                ),
                (
                    "s1",
                    "2026-03-01T09:00:00+00:00",
                    "2026-03-01T10:00:00+00:00",
                    "2026-03-02T12:00:00+00:00",
                    27.0,
                    1,
                ),
                ("s2", None, None, "2026-03-03T10:00:00+00:00", None, 0),
                ("s2", None, None, "2026-04-10T10:00:00+00:00", 5.0, 0),  # after the period
            ),
            start=1,
        ):
            serial, officer, unit = (
                ("DEV1", "o1", "unitA") if sid == "s1" else ("DEV2", "o2", "unitB")
            )
            recordings.insert(
                conn,
                {
                    "session_id": sid,
                    "station_id": "station-01",
                    "device_serial": serial,
                    "officer_id": officer,
                    "unit": unit,
                    "profile": "p",
                    "source_path": f"{n}.mp4",
                    "source_size": 1,
                    "store_path": f"{sid}/{n}.mp4",
                    "size": 1,
                    "sha256": f"{n:064x}",
                    "recorded_start": start,
                    "recorded_end": end,
                    "offloaded_at": off,
                    "age_hours": age,
                    "late": late,
                    "audit_seq": n,
                },
            )
        for sid, serial, at, ready, failed in (
            ("s1", "DEV1", "2026-03-01T18:00:00+00:00", 0, ("battery", "clock")),
            ("s1", "DEV1", "2026-03-02T12:00:00+00:00", 0, ("battery",)),
            ("s2", "DEV2", "2026-03-03T10:00:00+00:00", 1, ()),
        ):
            conn.execute(
                "INSERT INTO checks (session_id, device_serial, at, ready, results)"
                " VALUES (?, ?, ?, ?, ?)",
                (sid, serial, at, ready, check_results(*failed)),
            )
        for fid, kind, subject, opened, reported, resolved, evidence in (
            (
                "f1",
                "recorder.battery",
                "DEV1",
                "2026-03-02T00:00:00+00:00",
                "2026-03-02T01:00:00+00:00",
                "2026-03-02T20:00:00+00:00",
                None,
            ),
            (
                "f2",
                "recorder.overdue",
                "DEV2",
                "2026-03-05T00:00:00+00:00",
                "2026-03-06T06:00:00+00:00",
                None,
                '{"last_session_id": "s2"}',
            ),
            (
                "f3",
                "station.disk",
                "station",
                "2026-03-10T00:00:00+00:00",
                None,
                "2026-03-12T00:00:00+00:00",
                None,
            ),
        ):
            conn.execute(
                "INSERT INTO faults (id, kind, subject, detail, opened_at, last_seen_at,"
                " reported_at, resolved_at, evidence) VALUES (?, ?, ?, 'd', ?, ?, ?, ?, ?)",
                (fid, kind, subject, opened, opened, reported, resolved, evidence),
            )
        conn.execute(
            "INSERT INTO holds (id, scope, device_serial, reason, origin, placed_at)"
            " VALUES ('H-1', 'device', 'DEV1', 'complaint', 'station',"
            " '2026-03-04T00:00:00+00:00')"
        )
        conn.execute(
            "INSERT INTO access_requests (id, requested_by, requested_at, scope,"
            " purpose) VALUES ('A-1', 'carol', '2026-03-04T01:00:00+00:00', 'hold', 'p')"
        )
        conn.execute(
            "INSERT INTO access_log (at, action, by, what, outcome, audit_seq) VALUES"
            " ('2026-03-05T00:00:00+00:00', 'export.refused', 'carol', '{}', 'refused', 9)"
        )
    return cat


def by_key(rows: list[dict]) -> dict:
    return {r["key"]: r for r in rows}


def test_the_figures_match_a_catalog_built_by_hand(catalog: Catalog) -> None:
    got = figures(catalog, SINCE, UNTIL)
    unit = by_key(got["by_unit"])
    assert {
        k: unit["unitA"][k]
        for k in ("recordings", "hours", "with_age", "within_24h", "share_within_24h", "late")
    } == {
        "recordings": 2,
        "hours": 1.5,
        "with_age": 2,
        "within_24h": 1,
        "share_within_24h": 0.5,
        "late": 1,
    }
    assert (unit["unitA"]["checks"], unit["unitA"]["checks_failed"]) == (2, 2)
    assert unit["unitA"]["check_failures"] == {"battery": 2, "clock": 1}
    assert unit["unitA"]["dockings_late"] == 0
    assert (unit["unitB"]["recordings"], unit["unitB"]["hours"]) == (1, 0)
    assert unit["unitB"]["share_within_24h"] is None  # no recording with a known age
    assert (unit["unitB"]["checks"], unit["unitB"]["checks_failed"]) == (1, 0)
    assert unit["unitB"]["dockings_late"] == 1
    assert by_key(got["by_officer"])["o1"]["recordings"] == 2
    recorder = by_key(got["by_recorder"])
    assert recorder["DEV2"]["dockings_late"] == 1 and recorder["DEV1"]["dockings_late"] == 0
    assert got["totals"]["recordings"] == 3  # the one offloaded in April is not counted
    faults = got["faults"]["totals"]
    assert {
        k: faults[k]
        for k in (
            "opened",
            "reported",
            "reported_within_24h",
            "repaired",
            "repaired_within_24h",
            "open_past_24h",
            "mean_hours_to_report",
            "mean_hours_to_repair",
        )
    } == {
        "opened": 3,
        "reported": 2,
        "reported_within_24h": 1,
        "repaired": 2,
        "repaired_within_24h": 1,
        "open_past_24h": 1,
        "mean_hours_to_report": 15.5,
        "mean_hours_to_repair": 34.0,
    }
    assert set(by_key(got["faults"]["by_recorder"])) == {"DEV1", "DEV2", "station"}
    assert got["holds"] == {"placed": 1, "by_reason": {"complaint": 1}, "released": 0}
    assert got["exports"] == {"export.refused": 1}
    assert got["access_requests"] == {"pending": 1}


def test_each_group_counts_only_its_own_failed_checks(catalog: Catalog) -> None:
    """unitB's recorder fails the same check as unitA's: each unit counts its own (grouping
    by the name ``key`` grouped by json_each's own ``key`` column, the index in the list)."""
    with catalog.tx() as conn:
        conn.execute(
            "INSERT INTO checks (session_id, device_serial, at, ready, results)"
            " VALUES ('s2', 'DEV2', '2026-03-04T10:00:00+00:00', 0, ?)",
            (check_results("battery"),),
        )
    unit = by_key(figures(catalog, SINCE, UNTIL)["by_unit"])
    assert unit["unitA"]["check_failures"] == {"battery": 2, "clock": 1}
    assert unit["unitB"]["check_failures"] == {"battery": 1}


def test_the_command_prints_the_same_figures_as_json_and_csv(catalog: Catalog, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    home = str(catalog.path.parent)
    args = ["--home", home, "report", "--from", "2026-03-01", "--to", "2026-03-31"]
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert by_key(json.loads(as_json.output)["by_unit"])["unitA"]["hours"] == 1.5
    as_csv = CliRunner().invoke(cli, [*args, "--csv"])
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert ["by_unit", "unitA", "check_failures.battery", "2"] in rows
    assert ["faults", "all", "open_past_24h", "1"] in rows
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0 and "unitA" in text.output
