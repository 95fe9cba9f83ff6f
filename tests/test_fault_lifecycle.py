"""A fault's lifecycle at the station (agent/catalog/faults.py, docs/faults.md): open, reported,
acknowledged, resolved; one fault per condition while open; every step audited and published
as the retained fault's new state; `recdock faults`, `ack` and `resolve` on the command line."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog, outbox
from agent.catalog import faults as F
from agent.cli.main import cli
from agent.errors import FaultStateError
from sync.wire import topics


@pytest.fixture
def catalog(home: Path) -> Catalog:
    c = Catalog(home / "catalog.db", station_id="ST-1")
    yield c
    c.close()


def retained(catalog: Catalog, fid: str) -> str | None:
    """The newest queued value of the fault's retained topic ('' once cleared)."""
    topic = topics.fault("ST-1", fid)
    rows = [m for m in outbox.pending(catalog.conn, limit=10_000) if m.topic == topic]
    return rows[-1].payload.decode() if rows else None


def audit_kinds(catalog: Catalog, fid: str) -> list[tuple[str, dict]]:
    rows = catalog.conn.execute(
        "SELECT kind, data FROM audit WHERE subject = ? ORDER BY seq", (fid,)
    ).fetchall()
    return [(k, json.loads(d)) for k, d in rows]


def test_the_same_condition_opens_one_fault_and_keeps_its_newest_evidence(catalog) -> None:
    a = F.report_fault(catalog, "recorder.clock", "A1", "reset", evidence={"year": 2000})
    b = F.report_fault(catalog, "recorder.clock", "A1", "reset again", evidence={"year": 1970})
    assert a.id == b.id and b.occurrences == 2 and b.evidence == {"year": 1970}
    assert len(F.list_faults(catalog)) == 1
    ((kind, data),) = audit_kinds(catalog, a.id)
    assert kind == "fault.open" and data["evidence"] == {"year": 2000}
    row = catalog.conn.execute("SELECT evidence FROM faults WHERE id = ?", (a.id,)).fetchone()
    assert json.loads(row[0]) == {"year": 1970}


def test_each_step_is_audited_and_the_retained_fault_shows_it(catalog) -> None:
    fid = F.report_fault(catalog, "store", "store", "full", evidence={"free": 1}).id
    assert json.loads(retained(catalog, fid))["state"] == "open"
    with catalog.tx() as conn:
        F.mark_reported(catalog, conn, fid, by="centre", command_id="c-1")
    assert json.loads(retained(catalog, fid))["state"] == "reported"
    with catalog.tx() as conn:
        F.acknowledge(catalog, conn, fid, by="li", note="on it")
    shown = json.loads(retained(catalog, fid))
    assert shown["state"] == "acknowledged" and shown["acknowledged_by"] == "li"
    assert shown["evidence"] == {"free": 1} and shown["reported_at"]
    with catalog.tx() as conn:
        F.resolve(catalog, conn, fid, by="li", note="disk replaced")
    assert retained(catalog, fid) == ""
    steps = audit_kinds(catalog, fid)
    assert [k for k, _ in steps] == [
        "fault.open",
        "fault.reported",
        "fault.acknowledged",
        "fault.resolved",
    ]
    assert steps[1][1]["command_id"] == "c-1" and steps[3][1]["note"] == "disk replaced"
    fault = F.get_fault(catalog, fid)
    assert fault.state == "resolved" and fault.resolved_by == "li"
    with pytest.raises(FaultStateError, match="resolved already"), catalog.tx() as conn:
        F.acknowledge(catalog, conn, fid, by="li")
    # the condition seen again opens a new fault under the same id, from the start
    again = F.report_fault(catalog, "store", "store", "full again")
    assert again.state == "open" and again.acknowledged_by is None and again.occurrences == 1


def test_the_station_resolves_a_condition_only_once_it_stayed_gone(catalog) -> None:
    fid = F.report_fault(catalog, "station.temperature", "cpu", "hot").id
    t0 = datetime.now(UTC)
    assert not F.condition_gone(
        catalog, "station.temperature", "cpu", hold_s=600, note="ok", now=t0
    )
    later = t0 + timedelta(seconds=599)
    assert not F.condition_gone(
        catalog, "station.temperature", "cpu", hold_s=600, note="ok", now=later
    )
    # seen again: the wait starts over
    F.report_fault(catalog, "station.temperature", "cpu", "hot")
    later = t0 + timedelta(seconds=700)
    assert not F.condition_gone(
        catalog, "station.temperature", "cpu", hold_s=600, note="ok", now=later
    )
    assert F.get_fault(catalog, fid).resolved_at is None
    done = later + timedelta(seconds=600)
    assert F.condition_gone(catalog, "station.temperature", "cpu", hold_s=600, note="ok", now=done)
    fault = F.get_fault(catalog, fid)
    assert fault.state == "resolved" and fault.resolved_by == "station"
    assert "gone since" in fault.resolve_note


def test_an_unreported_fault_is_one_the_centre_has_not_confirmed_in_time(catalog) -> None:
    fault = F.report_fault(catalog, "store", "store", "full")
    in_two_hours = datetime.now(UTC) + timedelta(hours=2)
    assert fault.unreported(1.0, in_two_hours) and not fault.unreported(1.0)
    with catalog.tx() as conn:
        reported = F.mark_reported(catalog, conn, fault.id, by="centre", command_id="c")
    assert not reported.unreported(1.0, in_two_hours)


def test_recdock_faults_ack_and_resolve_record_who_and_when(home: Path, catalog) -> None:
    fid = F.report_fault(catalog, "store", "store", "full").id
    run = CliRunner().invoke
    listed = run(cli, ["--home", str(home), "faults"])
    assert listed.exit_code == 0 and fid in listed.output and "open" in listed.output
    acked = run(cli, ["--home", str(home), "faults", "ack", fid, "--note", "on it"])
    assert acked.exit_code == 0, acked.output
    assert run(cli, ["--home", str(home), "faults", "resolve", fid]).exit_code == 2  # no note
    done = run(cli, ["--home", str(home), "faults", "resolve", fid, "--note", "freed space"])
    assert done.exit_code == 0, done.output
    steps = audit_kinds(catalog, fid)
    assert [k for k, _ in steps] == ["fault.open", "fault.acknowledged", "fault.resolved"]
    assert steps[1][1]["by"] == getpass.getuser() and steps[2][1]["note"] == "freed space"
    shown = json.loads(run(cli, ["--home", str(home), "faults", "--all", "--json"]).output)
    assert shown[0]["state"] == "resolved" and shown[0]["resolved_by"] == getpass.getuser()
    again = run(cli, ["--home", str(home), "faults", "ack", fid])
    assert again.exit_code == 1 and "resolved already" in again.output
    unknown = run(cli, ["--home", str(home), "faults", "ack", "no-such-fault"])
    assert unknown.exit_code == 1 and "no fault 'no-such-fault'" in unknown.output


def test_recdock_status_names_a_fault_the_centre_has_not_confirmed(home: Path, catalog) -> None:
    from agent.config import Config
    from agent.station.status import render, snapshot

    fault = F.report_fault(catalog, "store", "store", "full")
    config = Config(bays={"usb-1": 1})
    now = datetime.now(UTC)
    assert snapshot(catalog, config, home, now)["unreported_faults"] == []
    later = snapshot(catalog, config, home, now + timedelta(hours=1, minutes=1))
    assert later["unreported_faults"] == [fault.id] and later["faults"][0]["unreported"]
    text = render(later)
    assert "FAULTS NOT REPORTED: 1 fault(s) not confirmed by the centre within 1 h" in text
    assert "NOT REPORTED" in text.splitlines()[-1]
    with catalog.tx() as conn:
        F.mark_reported(catalog, conn, fault.id, by="centre", command_id="c")
    assert snapshot(catalog, config, home, now + timedelta(hours=2))["unreported_faults"] == []
