"""`recdock export` and `recdock access` (rule clauses 12, 13, 34, 35; docs/export.md,
docs/access.md): footage leaves the station only under a valid approval, as two labelled BagIt
copies that `bagit` and `sha256sum -c` both accept; every refusal is logged.

The people are local user names: the tests run as root and say who runs a command with
SUDO_USER, as sudo does (agent/access/people.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import bagit
import pytest
from click.testing import CliRunner, Result

from agent.access.export import payload_plan
from agent.catalog import Catalog, access, access_log, audit, holds, open_catalog
from agent.cli.main import cli
from agent.config import SHIPPED_PROFILES, load_config
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from tests.recorders import make_folder_recorder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="people are told apart by SUDO_USER")

CONFIG = """
[store]
reserve_bytes = 0
[access]
approvers = ["alice", "bob"]
unit = "城东执法中队"
"""


class Station:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.config = tmp_path / "recdock.toml"
        self.config.write_text(CONFIG, encoding="utf-8")
        self.dests = (tmp_path / "disc1", tmp_path / "disc2")
        for d in self.dests:
            d.mkdir()

    def catalog(self) -> Catalog:
        return open_catalog(self.home, load_config(self.config).station_id)

    def run(self, who: str, *args: str) -> Result:
        return CliRunner(env={"SUDO_USER": who}).invoke(
            cli, ["--home", str(self.home), "--config", str(self.config), *args]
        )

    def request(self, who: str, *args: str) -> str:
        result = self.run(who, "access", "request", "--purpose", "complaint review", *args)
        assert result.exit_code == 0, result.output
        return result.output.split(":")[0]

    def export(self, who: str, request_id: str, hold_id: str) -> Result:
        return self.run(
            who, "export", "--hold", hold_id, "--access", request_id, *map(str, self.dests)
        )

    def leftovers(self) -> list[str]:
        return sorted(str(p.relative_to(d)) for d in self.dests for p in d.iterdir())


@pytest.fixture
def station(tmp_path: Path) -> Station:
    """Two recorders offloaded into a real store; a hold on the first one's recordings."""
    st = Station(tmp_path)
    config = load_config(st.config)
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    catalog = st.catalog()
    for serial in ("SIM0001", "SIM0002"):
        rec = make_folder_recorder(tmp_path / serial, serial=serial, files=2, size=40_000)
        report = Offloader(config, st.home, catalog, keep_source=True).run(rec, profile)
        assert report.ok, report.failures
    st.hold = holds.place(
        catalog,
        {
            "scope": "device",
            "device_serial": "SIM0001",
            "reason": "complaint",
            "case_name": "张某投诉案",
            "case_number": "CD-2026-017",
            "placed_by": "alice",
        },
    )
    st.held = [r["id"] for r in holds.recordings_held_by(catalog, st.hold)]
    st.other = [
        r["id"] for r in catalog.query("SELECT id FROM recordings") if r["id"] not in st.held
    ]
    assert len(st.held) == 2 and len(st.other) == 2
    catalog.close()
    return st


def bag_info(path: Path) -> dict[str, str]:
    return dict(bagit.Bag(str(path)).info)


def test_an_approved_export_writes_two_labelled_bags_bagit_and_sha256sum_accept(
    station: Station,
) -> None:
    rid = station.request("carol", "--hold", station.hold)
    assert station.run("alice", "access", "approve", rid, "--days", "7").exit_code == 0
    catalog = station.catalog()
    head_before = audit.head(catalog)
    # the recordings' own unit (the register's, or the recorder's status file) names the copy
    units = {r["unit"] for r in catalog.query("SELECT unit FROM recordings")}
    assert units == {"patrol-1"}
    result = station.export("carol", rid, station.hold)
    assert result.exit_code == 0, result.output

    bags = [next(d.iterdir()) for d in station.dests]
    assert bags[0].name == bags[1].name and not bags[0].name.startswith(".")
    for n, path in enumerate(bags, start=1):
        bagit.Bag(str(path)).validate()  # structure and every fixity, read back
        assert (path / "bagit.txt").read_text() == (
            "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
        )
        check = subprocess.run(
            ["sha256sum", "-c", "manifest-sha256.txt"],
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count(": OK") == 2
        info = bag_info(path)
        assert info["Recdock-Copy"] == f"{n} of 2"
        assert info["Recdock-Case-Number"] == "CD-2026-017"
        assert info["Recdock-Case-Name"] == "张某投诉案"
        assert info["Recdock-Exported-By"] == "carol"
        assert info["Recdock-Approved-By"] == "alice"
        assert info["Recdock-Station"] == "station-01"
        assert (int(info["Recdock-Audit-Head-Seq"]), info["Recdock-Audit-Head-Hash"]) == (
            head_before
        )
        assert info["Bag-Software-Agent"].startswith("recdock ")
        assert info["Payload-Oxum"] == "80000.2"
        label = (path / "LABEL.txt").read_text(encoding="utf-8")
        for want in (
            "单位 (unit): patrol-1",
            "制作人 (maker): carol",
            "制作时间 (made at): ",
            "案件名称 (case name): 张某投诉案",
            "案件编号 (case number): CD-2026-017",
            f"第 {n} 份，共 2 份",
        ):
            assert want in label, label
        assert "LABEL.txt" in (path / "tagmanifest-sha256.txt").read_text()
        listed = json.loads((path / "recdock-recordings.json").read_text(encoding="utf-8"))
        assert sorted(r["id"] for r in listed) == station.held

    rows = access_log.entries(catalog)
    assert [r["action"] for r in rows] == ["export"]
    entry = [e for e in audit.entries(catalog) if e.kind == "export.written"]
    assert len(entry) == 1 and entry[0].seq == rows[0]["audit_seq"]
    assert entry[0].data["bags"] == [str(b) for b in bags]
    assert entry[0].data["payload_oxum"] == "80000.2"
    assert entry[0].data["recording_ids"] == station.held


def refuse_case(station: Station, case: str) -> tuple[str, str]:
    """Make the access request of ``case``; returns its id and what the refusal must say."""
    catalog = station.catalog()
    if case == "not approved":
        return station.request("carol", "--hold", station.hold), "has not been approved"
    if case == "refused":
        rid = station.request("carol", "--hold", station.hold)
        assert station.run("bob", "access", "refuse", rid, "--note", "no case").exit_code == 0
        return rid, "was refused by bob"
    if case == "expired":
        rid = station.request("carol", "--hold", station.hold)
        access.decide(
            catalog,
            rid,
            decision="approved",
            by="alice",
            valid_until="2020-01-01T00:00:00+00:00",
            note=None,
        )
        return rid, "ran out at 2020-01-01"
    if case == "other recordings":
        rid = station.request("carol", *[f"--recording={i}" for i in station.other])
        assert station.run("alice", "access", "approve", rid).exit_code == 0
        return rid, "does not cover recording(s) " + str(station.held[0])
    if case == "self-approved":
        rid = station.request("alice", "--hold", station.hold)
        result = station.run("alice", "access", "approve", rid)
        assert result.exit_code == 77 and "another approver must" in result.output
        # a self-approval that reached the catalog anyway (written by hand, or an old rule)
        access.decide(
            catalog,
            rid,
            decision="approved",
            by="alice",
            valid_until="2099-01-01T00:00:00+00:00",
            note=None,
        )
        return rid, "approved by its own requester alice"
    assert case == "approver without the role"
    rid = station.request("carol", "--hold", station.hold)
    access.decide(
        catalog,
        rid,
        decision="approved",
        by="mallory",
        valid_until="2099-01-01T00:00:00+00:00",
        note=None,
    )
    return rid, "approved by mallory, who is not an approver"


@pytest.mark.parametrize(
    "case",
    [
        "not approved",
        "refused",
        "expired",
        "other recordings",
        "self-approved",
        "approver without the role",
    ],
)
def test_an_export_without_a_valid_approval_is_refused_and_logged(
    station: Station, case: str
) -> None:
    rid, says = refuse_case(station, case)
    result = station.export("carol", rid, station.hold)
    assert result.exit_code == 77, result.output
    assert says in result.output, result.output
    assert station.leftovers() == []
    rows = [r for r in access_log.entries(station.catalog()) if r["action"] == "export.refused"]
    assert len(rows) == 1 and rows[0]["by"] == "carol" and says in rows[0]["reason"]
    kinds = [e.kind for e in audit.entries(station.catalog())]
    assert kinds.count("export.refused") == 1 and "export.written" not in kinds


def test_a_request_that_does_not_exist_is_refused_and_logged(station: Station) -> None:
    result = station.export("carol", "A-000000000000", station.hold)
    assert result.exit_code == 77 and "does not exist" in result.output
    assert [r["action"] for r in access_log.entries(station.catalog())] == ["export.refused"]


def test_only_an_approver_other_than_the_requester_decides(station: Station) -> None:
    rid = station.request("carol", "--hold", station.hold)
    refused = station.run("mallory", "access", "approve", rid)
    assert refused.exit_code == 77 and "only the approvers listed" in refused.output
    assert access.get(station.catalog(), rid)["decision"] is None
    assert [r["action"] for r in access_log.entries(station.catalog())] == ["approve.refused"]
    assert station.run("bob", "access", "approve", rid).exit_code == 0
    req = access.get(station.catalog(), rid)
    assert (req["decision"], req["decided_by"]) == ("approved", "bob")
    kinds = [e.kind for e in audit.entries(station.catalog())]
    assert ["access.requested", "access.decision_refused", "access.approved"] == [
        k for k in kinds if k.startswith("access.")
    ]


def test_a_corrupted_store_file_stops_the_export_and_leaves_no_bag(station: Station) -> None:
    rid = station.request("carol", "--hold", station.hold)
    assert station.run("alice", "access", "approve", rid).exit_code == 0
    catalog = station.catalog()
    row = catalog.query("SELECT store_path FROM recordings WHERE id = ?", (station.held[1],))[0]
    damaged = station.home / "store" / row["store_path"]
    os.chmod(damaged, 0o644)
    with open(damaged, "r+b") as f:
        f.seek(1000)
        f.write(b"X")
    result = station.export("carol", rid, station.hold)
    assert result.exit_code == 74, result.output
    assert str(damaged) in result.output and "no longer matches the catalog" in result.output
    assert station.leftovers() == []  # no partial folder, nothing that looks like a bag
    assert [r["action"] for r in access_log.entries(catalog)] == ["export.failed"]


def test_names_taken_twice_in_a_bag_keep_both_files() -> None:
    rows = [
        {"id": 7, "store_path": "2026/01/02/SIM1/S-a/media/DCIM/A%25B.MP4"},
        {"id": 9, "store_path": "2026/01/02/SIM1/S-a/media/DCIM/A#25B.MP4"},
    ]
    assert [name for _, name in payload_plan(rows)] == [
        "SIM1/S-a/DCIM/A#25B.MP4",
        "SIM1/S-a/DCIM/A#25B~9.MP4",
    ]
