"""`recdock hold add|release|list` (rule clause 12): a hold names something that exists, says
why, and every change is in the audit log (so it travels to the centre)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.catalog import holds, open_catalog, recordings
from agent.cli import hold as hold_cli
from agent.cli.main import cli
from agent.errors import EXIT_FAILED
from tests.recorders import make_folder_recorder


@pytest.fixture
def station(tmp_path: Path) -> tuple[Path, Path]:
    """A home with one offloaded recorder (3 files); returns (home, config)."""
    home, config = tmp_path / "home", tmp_path / "recdock.toml"
    config.write_text("[store]\nreserve_bytes = 0\n")
    rec = make_folder_recorder(tmp_path / "rec", "HOLD01", files=3, size=10_000)
    assert run(home, config, "offload", str(rec)).exit_code == 0
    return home, config


def run(home: Path, config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "--config", str(config), *args])


def catalog(home: Path):
    return open_catalog(home, "", create=False)


def test_the_cli_offers_the_catalogs_reasons() -> None:
    assert hold_cli.REASONS == holds.REASONS


def test_a_hold_on_a_recording_by_path_is_placed_audited_and_listed(station) -> None:
    home, config = station
    cat = catalog(home)
    rec = recordings.listing(cat)[1]
    result = run(
        home, config, "hold", "add", "--recording", rec["store_path"], "--reason", "complaint",
        "--case-name", "Market St", "--case-number", "2026-17", "--by", "sgt.li", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    placed = json.loads(result.output)
    assert placed["recording_id"] == rec["id"] and placed["recordings"] == 1
    assert placed["placed_by"] == "sgt.li" and placed["origin"] == "station"
    last = cat.query("SELECT kind, subject, data FROM audit ORDER BY seq DESC LIMIT 1")[0]
    assert (last["kind"], last["subject"]) == ("hold.placed", placed["id"])
    assert json.loads(last["data"])["case_number"] == "2026-17"
    listed = json.loads(run(home, config, "hold", "list", "--json").output)
    assert [(h["id"], h["recordings"], h["case_number"]) for h in listed] == [
        (placed["id"], 1, "2026-17")
    ]


def test_a_hold_on_a_device_over_a_range_covers_its_recordings(station) -> None:
    home, config = station
    result = run(
        home, config, "hold", "add", "--device", "HOLD01", "--from", "2000-01-01",
        "--reason", "other", "--text", "inquiry", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["recordings"] == 3
    cut = run(
        home, config, "hold", "add", "--device", "HOLD01", "--to", "2000-01-01",
        "--reason", "major_case", "--json",
    )  # fmt: skip
    assert json.loads(cut.output)["recordings"] == 0


def test_release_needs_a_reason_is_audited_and_only_once(station) -> None:
    home, config = station
    placed = run(home, config, "hold", "add", "--session", session_id(home), "--reason",
                 "obstruction", "--json")  # fmt: skip
    hold_id = json.loads(placed.output)["id"]
    assert run(home, config, "hold", "release", hold_id).exit_code == 2  # --reason missing
    ok = run(home, config, "hold", "release", hold_id, "--reason", "case closed")
    assert ok.exit_code == 0, ok.output
    cat = catalog(home)
    assert cat.query("SELECT kind FROM audit ORDER BY seq DESC LIMIT 1")[0]["kind"] == (
        "hold.released"
    )
    again = run(home, config, "hold", "release", hold_id, "--reason", "again")
    assert again.exit_code == EXIT_FAILED and "released already" in again.output
    assert json.loads(run(home, config, "hold", "list", "--json").output) == []
    assert len(json.loads(run(home, config, "hold", "list", "--all", "--json").output)) == 1


def session_id(home: Path) -> str:
    return recordings.listing(catalog(home))[0]["session_id"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--recording", "9999"), "no recording '9999'"),
        (("--recording", "2026/no/such.mp4"), "no recording '2026/no/such.mp4'"),
        (("--session", "S-nope"), "no session 'S-nope'"),
        (("--device", "NOPE1"), "no device 'NOPE1'"),
        (("--officer", "999999"), "no officer '999999'"),
    ],
)
def test_a_hold_on_what_does_not_exist_is_a_clear_error(station, args, named) -> None:
    home, config = station
    result = run(home, config, "hold", "add", *args, "--reason", "complaint")
    assert result.exit_code == EXIT_FAILED, result.output
    assert named in result.output
    assert holds.listing(catalog(home), released=True) == []


def test_other_needs_text_and_one_target_only(station) -> None:
    home, config = station
    no_text = run(home, config, "hold", "add", "--device", "HOLD01", "--reason", "other")
    assert no_text.exit_code == 2 and "--text" in no_text.output
    both = run(home, config, "hold", "add", "--device", "HOLD01", "--officer", "100001",
               "--reason", "complaint")  # fmt: skip
    assert both.exit_code == 2 and "exactly one" in both.output


def test_a_range_compares_a_recorders_local_start_in_utc(tmp_path: Path) -> None:
    """A recorder's start carries its own offset (+08:00): 08:00+08:00 is 00:00 UTC, before a
    hold from 01:00 UTC, and inside one from 23:30 UTC the day before."""
    from tests.test_holds_catalog import hold as hold_row

    cat = open_catalog(tmp_path / "home", "st-1")
    with cat.tx() as conn:
        conn.execute(
            "INSERT INTO sessions (id, station_id, device_serial, profile, source, store_dir,"
            " started_at) VALUES ('s1', 'st-1', 'D1', 'p', 'src', 'd', '2026-01-01')"
        )
        recordings.insert(
            conn,
            {
                "session_id": "s1", "station_id": "st-1", "device_serial": "D1",
                "profile": "p", "source_path": "a.mp4", "source_size": 1,
                "store_path": "d/a.mp4", "size": 1, "sha256": "0" * 64,
                "recorded_start": "2026-01-01T08:00:00+08:00",
                "offloaded_at": "2026-01-01T02:00:00+00:00", "audit_seq": 1,
            },
        )  # fmt: skip
        later = holds.add(
            conn, hold_row(scope="device", device_serial="D1", from_at="2026-01-01T01:00:00+00:00")
        )
        around = holds.add(
            conn,
            hold_row(scope="device", device_serial="D1", from_at="2025-12-31T23:30:00+00:00",
                     to_at="2026-01-01T00:30:00+00:00"),
        )  # fmt: skip
    assert holds.recordings_held_by(cat, later) == []
    assert len(holds.recordings_held_by(cat, around)) == 1
