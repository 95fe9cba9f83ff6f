"""Pre-shift checks (rule clause 4) on folder recorders and real FAT32 images (fusefat)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.catalog import Catalog, audit, open_catalog, outbox
from agent.checks import CheckReport, record_checks, run_checks
from agent.checks.rules import shift_need_bytes
from agent.config import SHIPPED_PROFILES, Config
from agent.offload import FileResult, Offloader, OffloadReport
from agent.recorder.profiles import Profile, ProfileSet
from agent.recorder.simulated import STATUS_FILE, TIME_FILE, apply_firmware
from agent.recorder.status import RecorderInfo, read_info
from agent.seams.clock.simulated import SimulatedClock
from sync.wire import topics
from tests.conftest import needs_fusefat
from tests.recorders import fat_mount, make_fat_recorder, make_folder_recorder, recdock

MiB = 1024 * 1024
SMALL = {"files": 2, "size": 256 * 1024}
# 0.01 h at 8 Mbit/s = 36 MB: a 72 MiB FAT image has room for it, a filled one does not
CHECKS = {"shift_hours": 0.01, "min_battery_pct": 80.0, "clock_tolerance_s": 2.0}


def config(**checks: Any) -> Config:
    return Config.model_validate({"station_id": "st-test", "checks": {**CHECKS, **checks}})


@pytest.fixture
def sim() -> Profile:
    return ProfileSet.load([SHIPPED_PROFILES]).get("simulated")


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    cat = open_catalog(home, "st-test")
    yield cat
    cat.close()


def folder_reconnect(root: Path) -> Callable[[], Path]:
    """The simulated dock re-docking a folder recorder: its firmware runs, same root."""

    def again() -> Path:
        apply_firmware(root)
        return root

    return again


def offload_all(cfg: Config, home: Path, cat: Catalog, root: Path, sim: Profile) -> OffloadReport:
    report = Offloader(cfg, home, cat).run(root, sim)
    assert report.ok, report.failures
    return report


def check(
    root: Path, sim: Profile, cfg: Config, clock: SimulatedClock | None = None, **kw: Any
) -> CheckReport:
    return run_checks(root, sim, cfg, clock=clock or SimulatedClock(synchronised=True), **kw)


def years_2000_offset() -> float:
    return (datetime(2000, 1, 1, tzinfo=UTC) - datetime.now(UTC)).total_seconds()


# -- healthy, and each check failing on its own --------------------------------------------


def test_healthy_folder_recorder_after_offload_is_ready(
    tmp_path: Path, home: Path, catalog: Catalog, sim: Profile
) -> None:
    cfg = config()
    root = make_folder_recorder(tmp_path / "rec", "SIM0001", **SMALL)
    off = offload_all(cfg, home, catalog, root, sim)
    rep = check(root, sim, cfg, offload=off, info=off.info, writable=True)
    assert rep.ready, rep.reasons
    assert [r.name for r in rep.results] == [
        "battery",
        "storage",
        "clock",
        "firmware",
        "offload",
        "late",
    ]
    assert all(r.ok is True for r in rep.results)
    assert rep.reasons == []
    assert rep.result("battery").value == "90 %"
    assert rep.result("battery").threshold == ">= 80 %"
    assert rep.result("offload").value == "2 of 2 verified in the store"
    assert rep.result("firmware").threshold == "any"
    assert abs(rep.clock_offset_s or 99) <= 2
    assert rep.clock_set is False and rep.clock_offset_after_s is None
    assert not (root / TIME_FILE).exists()  # within tolerance: never written
    assert rep.device_serial == "SIM0001"


def test_low_battery_is_not_ready_with_value_and_threshold(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, battery=45.0)
    rep = check(root, sim, config(), catalog=None)
    assert not rep.ready
    bat = rep.result("battery")
    assert (bat.ok, bat.value, bat.threshold) == (False, "45 %", ">= 80 %")
    assert "not charging" in bat.detail
    assert "battery 45 % < 80 %" in rep.reasons
    assert len(rep.reasons) == 1  # nothing else failed


def test_charging_says_about_how_many_minutes(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, battery=45.0, charging=True)
    rep = check(root, sim, config())
    assert not rep.ready
    # the device estimates 55 minutes to full; 35 of the 55 points are below 80 %
    assert rep.result("battery").detail == "charging, about 35 minutes to 80 %"
    assert rep.reasons == ["battery 45 % < 80 %, charging, about 35 minutes to 80 %"]


def test_charging_estimate_falls_back_to_the_profile_rate(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, battery=50.0, charging=True)
    status = json.loads((root / STATUS_FILE).read_text())
    status["minutes_to_full"] = None  # this recorder gives no estimate of its own
    (root / STATUS_FILE).write_text(json.dumps(status))
    rep = check(root, sim, config())
    # simulated profile: charge_pct_per_minute = 1.0 -> 30 points = 30 minutes
    assert rep.result("battery").detail == "charging, about 30 minutes to 80 %"


def test_battery_at_the_threshold_passes(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, battery=80.0)
    assert check(root, sim, config()).result("battery").ok is True


def test_unapproved_firmware_is_not_ready(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, firmware="1.9.9")
    rep = check(root, sim, config(approved_firmware=["2.1.0", "2.2.0"]))
    fw = rep.result("firmware")
    assert (fw.ok, fw.value, fw.threshold) == (False, "1.9.9", "one of 2.1.0, 2.2.0")
    assert rep.reasons == ["firmware 1.9.9 not approved"]
    ok = check(
        make_folder_recorder(tmp_path / "rec2", files=0, firmware="2.2.0"),
        sim,
        config(approved_firmware=["2.1.0", "2.2.0"]),
    )
    assert ok.result("firmware").ok is True and ok.ready


def test_firmware_not_reported_fails_against_an_approved_list(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0)
    status = json.loads((root / STATUS_FILE).read_text())
    del status["firmware"]
    (root / STATUS_FILE).write_text(json.dumps(status))
    rep = check(root, sim, config(approved_firmware=["2.1.0"]))
    assert rep.result("firmware").ok is False
    assert "did not report" in rep.result("firmware").detail


def test_recordings_not_offloaded_are_left_behind(
    tmp_path: Path, home: Path, catalog: Catalog, sim: Profile
) -> None:
    root = make_folder_recorder(tmp_path / "rec", **SMALL)
    rep = check(root, sim, config(), catalog=catalog)
    off = rep.result("offload")
    assert off.ok is False and off.value == "0 of 2 in the catalog"
    assert "not offloaded" in off.detail
    # offloaded with the source kept: every file is in the catalog now
    Offloader(config(), home, catalog, keep_source=True).run(root, sim)
    again = check(root, sim, config(), catalog=catalog)
    assert again.result("offload").ok is True, again.result("offload").detail
    assert again.ready


def test_without_a_catalog_or_offload_nothing_left_behind_is_unknown(
    tmp_path: Path, sim: Profile
) -> None:
    root = make_folder_recorder(tmp_path / "rec", **SMALL)
    rep = check(root, sim, config())
    assert rep.result("offload").ok is None
    assert rep.result("offload").state == "unknown"
    assert rep.ready  # unknown does not block (docs/checks.md)


def test_a_failed_offload_is_not_ready_and_says_why(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0)
    info = RecorderInfo(serial="SIM0001", profile="simulated")
    report = OffloadReport("sess", "SIM0001", info)
    report.files = [
        FileResult("DCIM/100RDSIM/A.MP4", "stored"),
        FileResult("DCIM/100RDSIM/B.MP4", "failed", "cannot open (Input/output error)"),
    ]
    rep = check(root, sim, config(), offload=report, info=info)
    off = rep.result("offload")
    assert off.ok is False
    assert off.value == "1 of 2 verified in the store"
    assert off.detail == "DCIM/100RDSIM/B.MP4: cannot open (Input/output error)"
    assert rep.reasons == ["offload: only 1 of 2 verified in the store"]


def test_late_recordings_are_flagged_with_their_age_but_do_not_block(
    tmp_path: Path, home: Path, catalog: Catalog, sim: Profile
) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=2, size=1024, age_hours=30)
    plain = check(root, sim, config())
    assert len(plain.late) == 2 and all(x["age_hours"] > 30 for x in plain.late)
    off = offload_all(config(), home, catalog, root, sim)
    rep = check(root, sim, config(), offload=off, info=off.info)
    late = rep.result("late")
    assert late.ok is True and late.value == "2 late"
    assert late.threshold == "<= 24 h old at docking"
    assert {x["source_path"] for x in rep.late} == {f.source_path for f in off.files}
    assert rep.ready


def test_a_model_without_battery_or_clock_shows_unknown(tmp_path: Path) -> None:
    generic = ProfileSet.load([SHIPPED_PROFILES]).get("generic-msc")
    root = make_folder_recorder(tmp_path / "rec", files=0)
    rep = run_checks(
        root,
        generic,
        config(),
        clock=SimulatedClock(),
        info=RecorderInfo(serial="USB123", profile="generic-msc"),
        writable=True,
    )
    assert rep.result("battery").ok is None and rep.result("battery").value == "unknown"
    assert rep.result("clock").ok is None
    assert rep.clock_offset_s is None
    assert rep.device_serial == "USB123"
    assert rep.ready


# -- the clock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [3600.0, "year2000"], ids=["one-hour-ahead", "year-2000"])
def test_clock_off_is_set_and_confirmed_after_reconnect_folder(
    tmp_path: Path, sim: Profile, offset: float | str
) -> None:
    off_s = years_2000_offset() if offset == "year2000" else float(offset)
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=off_s)
    rep = check(root, sim, config(), writable=True, reconnect=folder_reconnect(root))
    clk = rep.result("clock")
    assert rep.clock_set is True
    assert rep.clock_offset_s is not None and abs(rep.clock_offset_s - off_s) < 3
    assert rep.clock_offset_after_s is not None and abs(rep.clock_offset_after_s) <= 2
    assert clk.ok is True, clk.detail
    assert "set from the NTP-synchronised station clock" in clk.detail
    assert rep.ready, rep.reasons
    assert not (root / TIME_FILE).exists()  # the firmware consumed it


def test_clock_offset_is_measured_at_docking_when_the_caller_says_when(
    tmp_path: Path, sim: Profile
) -> None:
    """A real recorder writes its clock once, at docking: after a long offload the offset is
    taken from the values read at docking, not from the stale file against the time now."""
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=0)
    station = SimulatedClock(synchronised=False)
    docked_at = station.now()
    info = read_info(root, sim)
    later = SimulatedClock(synchronised=False, offset_s=600)  # the offload took 10 minutes
    stale = check(root, sim, config(), later, info=info)
    assert stale.clock_offset_s is not None and stale.clock_offset_s < -590
    right = check(root, sim, config(), later, info=info, clock_read_at=docked_at)
    assert right.clock_offset_s is not None and abs(right.clock_offset_s) <= 2
    assert right.result("clock").ok is True
    assert abs((later.now() - docked_at) - timedelta(seconds=600)).total_seconds() < 5


def test_clock_set_without_reconnect_asks_to_redock(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=3600)
    rep = check(root, sim, config(), writable=True)
    assert rep.clock_set is True and rep.clock_offset_after_s is None
    assert rep.result("clock").ok is False
    assert "clock set; re-dock to confirm" in rep.result("clock").detail
    assert rep.reasons == ["clock set; re-dock to confirm"]
    written = (root / TIME_FILE).read_text().strip()
    assert (
        abs(
            (datetime.strptime(written, sim.clock.time_format).replace(tzinfo=sim.tz()))
            - datetime.now(UTC)
        ).total_seconds()
        < 3
    )


def test_unsynchronised_station_clock_never_sets_the_recorder_clock(
    tmp_path: Path, sim: Profile
) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=3600)
    calls: list[int] = []

    def reconnect() -> Path:
        calls.append(1)
        return root

    rep = check(
        root, sim, config(), SimulatedClock(synchronised=False), writable=True, reconnect=reconnect
    )
    assert not (root / TIME_FILE).exists()
    assert calls == []
    assert rep.clock_set is False and rep.clock_offset_after_s is None
    assert rep.result("clock").ok is False
    assert "station clock is not NTP-synchronised" in rep.result("clock").detail
    assert not rep.ready
    assert rep.reasons == [f"clock {rep.result('clock').value} off; station clock not synchronised"]
    assert "SIMULATED" in rep.station_clock


def test_read_only_recorder_or_setting_off_measures_but_does_not_set(
    tmp_path: Path, sim: Profile
) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=-600)
    ro = check(root, sim, config(), writable=False)
    assert "mounted read-only" in ro.result("clock").detail
    off = check(root, sim, config(set_clock=False), writable=True)
    assert "checks.set_clock = false" in off.result("clock").detail
    for rep in (ro, off):
        assert rep.clock_set is False and rep.result("clock").ok is False
        assert rep.clock_offset_s is not None and abs(rep.clock_offset_s + 600) < 3
    assert not (root / TIME_FILE).exists()


def test_a_time_file_name_taken_by_a_symlink_is_not_followed(tmp_path: Path, sim: Profile) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=3600)
    target = tmp_path / "outside.txt"
    target.write_text("keep")
    (root / TIME_FILE).symlink_to(target)
    rep = check(root, sim, config(), writable=True, reconnect=folder_reconnect(root))
    assert target.read_text() == "keep"
    assert rep.clock_set is False and rep.result("clock").ok is False
    assert "not a regular file" in rep.result("clock").detail


# -- real FAT32 images through fusefat -----------------------------------------------------------


@contextlib.contextmanager
def docked_fat(image: Path, mnt: Path) -> Iterator[tuple[Path, Callable[[], Path]]]:
    """A FAT image docked read-write, and a reconnect that remounts it like the simulated dock."""
    with contextlib.ExitStack() as stack:
        mount = stack.enter_context(fat_mount(image, mnt, rw=True))
        apply_firmware(mnt)
        mounts = [mount]

        def reconnect() -> Path:
            mounts[-1].unmount()
            again = stack.enter_context(fat_mount(image, mnt, rw=True))
            mounts.append(again)
            apply_firmware(mnt)
            return mnt

        yield mnt, reconnect


@needs_fusefat
def test_healthy_fat_recorder_after_offload_is_ready(
    tmp_path: Path, home: Path, catalog: Catalog, sim: Profile
) -> None:
    cfg = config()
    image = make_fat_recorder(tmp_path / "rec.img", "FAT0001", **SMALL)
    with docked_fat(image, tmp_path / "mnt") as (root, reconnect):
        off = offload_all(cfg, home, catalog, root, sim)
        rep = check(root, sim, cfg, offload=off, info=off.info, writable=True, reconnect=reconnect)
        assert rep.ready, rep.reasons
        free = rep.result("storage")
        assert free.ok is True
        assert free.threshold == ">= 34.3 MiB (0.01 h at 8 Mbit/s)"
        assert not list((root / "DCIM").rglob("*.MP4"))  # cleared: nothing left behind


@needs_fusefat
def test_full_fat_recorder_is_not_ready(tmp_path: Path, sim: Profile) -> None:
    cfg = config()
    image = make_fat_recorder(
        tmp_path / "rec.img", "FAT0002", files=3, size=14 * MiB, capacity=72 * MiB
    )
    with docked_fat(image, tmp_path / "mnt") as (root, _):
        rep = check(root, sim, cfg, writable=True)
    storage = rep.result("storage")
    assert storage.ok is False
    need = shift_need_bytes(sim, cfg)
    assert storage.value.endswith(" MiB free")
    free = float(storage.value.split()[0]) * MiB
    assert 20 * MiB < free < need  # about 72 - 42 MiB, less than the 36 MB a shift needs
    assert any(r.startswith("storage ") for r in rep.reasons)
    assert not rep.ready


@needs_fusefat
@pytest.mark.parametrize("offset", [3600.0, "year2000"], ids=["one-hour-ahead", "year-2000"])
def test_fat_clock_off_is_set_through_a_remount(
    tmp_path: Path, sim: Profile, offset: float | str
) -> None:
    off_s = years_2000_offset() if offset == "year2000" else float(offset)
    image = make_fat_recorder(tmp_path / "rec.img", "FAT0003", files=0, clock_offset=off_s)
    with docked_fat(image, tmp_path / "mnt") as (root, reconnect):
        rep = check(root, sim, config(), writable=True, reconnect=reconnect)
        assert not (root / TIME_FILE).exists()
        status = json.loads((root / STATUS_FILE).read_text())
    assert rep.clock_set
    assert rep.clock_offset_s is not None and abs(rep.clock_offset_s - off_s) < 3
    assert rep.clock_offset_after_s is not None and abs(rep.clock_offset_after_s) <= 2
    assert abs(status["rtc_offset_s"]) <= 2
    assert rep.ready, rep.reasons


@needs_fusefat
def test_fat_unsynchronised_station_clock_writes_nothing(tmp_path: Path, sim: Profile) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "FAT0004", files=0, clock_offset=3600)
    with docked_fat(image, tmp_path / "mnt") as (root, reconnect):
        rep = check(
            root,
            sim,
            config(),
            SimulatedClock(synchronised=False),
            writable=True,
            reconnect=reconnect,
        )
        assert not (root / TIME_FILE).exists()
    assert not rep.clock_set and not rep.ready
    assert "not NTP-synchronised" in rep.result("clock").detail


@needs_fusefat
def test_fat_mounted_read_only_cannot_be_set(tmp_path: Path, sim: Profile) -> None:
    image = make_fat_recorder(tmp_path / "rec.img", "FAT0005", files=0, clock_offset=3600)
    with fat_mount(image, tmp_path / "mnt", rw=False) as m:
        # the caller claims writable, the mount is not: the write fails cleanly
        rep = check(m.mountpoint, sim, config(), writable=True)
    assert rep.clock_set is False
    assert rep.result("clock").ok is False
    assert "read-only" in rep.result("clock").detail


# -- the simulated firmware ---------------------------------------------------------------------


def test_simulated_firmware_applies_and_deletes_the_time_file(tmp_path: Path) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=-7200)
    now = datetime(2026, 11, 27, 1, 0, 0, tzinfo=UTC)
    apply_firmware(root, now)  # no time file: the RTC keeps its offset
    status = json.loads((root / STATUS_FILE).read_text())
    assert status["rtc_offset_s"] == -7200
    assert status["clock"] == "2026-11-27T07:00:00"  # +08:00, two hours behind
    (root / TIME_FILE).write_text("2026-11-27 09:00:05\n")
    apply_firmware(root, now)
    status = json.loads((root / STATUS_FILE).read_text())
    assert status["rtc_offset_s"] == 5.0
    assert status["clock"] == "2026-11-27T09:00:05"
    assert not (root / TIME_FILE).exists()
    (root / TIME_FILE).write_text("not a time")
    apply_firmware(root, now)  # ignored, consumed
    assert json.loads((root / STATUS_FILE).read_text())["rtc_offset_s"] == 5.0
    assert not (root / TIME_FILE).exists()


# -- recording a check -------------------------------------------------------------------------


def test_record_checks_writes_row_session_drift_audit_and_retained_health(
    tmp_path: Path, home: Path, catalog: Catalog, sim: Profile
) -> None:
    cfg = config()
    root = make_folder_recorder(tmp_path / "rec", "SIM0009", clock_offset=3600, **SMALL)
    off = offload_all(cfg, home, catalog, root, sim)
    rep = check(
        root, sim, cfg, offload=off, info=off.info, writable=True, reconnect=folder_reconnect(root)
    )
    record_checks(catalog, rep, device_serial="SIM0009", session_id=off.session_id, bay=3)

    rows = catalog.query("SELECT * FROM checks")
    assert len(rows) == 1
    row = rows[0]
    assert (row["device_serial"], row["bay"], row["session_id"]) == ("SIM0009", 3, off.session_id)
    assert row["ready"] == 1
    assert row["clock_offset_s"] == pytest.approx(rep.clock_offset_s)
    assert row["clock_offset_after_s"] == pytest.approx(rep.clock_offset_after_s)
    assert [r["name"] for r in json.loads(row["results"])][0] == "battery"
    sess = catalog.query("SELECT clock_offset_s FROM sessions WHERE id = ?", (off.session_id,))
    assert abs(sess[0]["clock_offset_s"] - 3600) < 3

    entries = [e for e in audit.entries(catalog) if e.kind == "checks"]
    assert len(entries) == 1
    assert entries[0].subject == "SIM0009"
    assert entries[0].data["ready"] is True and entries[0].data["bay"] == 3
    assert audit.check_chain(catalog) == []

    topic = topics.recorder("st-test", "SIM0009")
    health = catalog.query("SELECT * FROM outbox WHERE topic = ?", (topic,))
    assert len(health) == 1 and health[0]["retain"] == 1
    payload = json.loads(health[0]["payload"])
    assert payload["ready"] is True
    assert payload["checks"]["battery"]["value"] == "90 %"
    assert payload["clock_set"] is True
    # the numbers themselves, for the centre's trends (sync/wire/schemas/recorder.json)
    assert payload["battery_pct"] == 90 and isinstance(payload["free_bytes"], int)
    assert payload["firmware"] and "officer" in payload and "unit" in payload
    # the audit entry is queued as an event too (rule 3)
    events = [m for m in outbox.pending(catalog.conn, 1000) if m.topic == topics.event("st-test")]
    assert any(json.loads(m.payload)["kind"] == "checks" for m in events)

    # a newer check supersedes the unsent retained health message
    again = check(root, sim, cfg, offload=off, info=off.info)
    record_checks(catalog, again, device_serial="SIM0009", session_id=None, bay=3)
    assert len(catalog.query("SELECT * FROM outbox WHERE topic = ?", (topic,))) == 1
    assert len(catalog.query("SELECT * FROM checks")) == 2


def test_record_checks_is_one_transaction(
    tmp_path: Path, catalog: Catalog, sim: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder_recorder(tmp_path / "rec", files=0)
    rep = check(root, sim, config())
    before = (len(list(audit.entries(catalog))), catalog.query("SELECT count(*) AS n FROM outbox"))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr("agent.catalog.checks.outbox.enqueue", broken)
    with pytest.raises(RuntimeError):
        record_checks(catalog, rep, device_serial="SIM0001", session_id=None, bay=None)
    assert catalog.query("SELECT * FROM checks") == []
    after = (len(list(audit.entries(catalog))), catalog.query("SELECT count(*) AS n FROM outbox"))
    assert after == before


# -- the command line -----------------------------------------------------------------------------


def write_config(tmp_path: Path, **checks: Any) -> Path:
    lines = ['station_id = "st-test"', "[checks]"]
    for k, v in {**CHECKS, **checks}.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path = tmp_path / "recdock.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_check_prints_every_check_and_exits_0_when_ready(tmp_path: Path, home: Path) -> None:
    # a station clock that is not synchronised does not set the recorder's (a CI machine's may
    # not be), and on a loaded machine seconds pass between the firmware's write and the check
    cfg = write_config(tmp_path, clock_tolerance_s=60)
    root = make_folder_recorder(tmp_path / "rec", "CLI0001", **SMALL)
    assert recdock("offload", str(root), home=home, config=cfg).returncode == 0
    # docked again: its firmware writes its running clock (the one written when the recorder
    # was made is as old as the offload, which on a loaded machine passes the 2 s tolerance)
    apply_firmware(root)
    res = recdock("check", str(root), home=home, config=cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for name in ("battery", "storage", "clock", "firmware", "offload", "late"):
        line = next(ln for ln in lines if ln.startswith(name))
        assert "pass" in line or "unknown" in line, line
    bat = next(ln for ln in lines if ln.startswith("battery"))
    assert "90 %" in bat and ">= 80 %" in bat
    assert lines[-1] == "READY"
    assert "station clock: system clock (" in res.stdout
    cat = Catalog(home / "catalog.db", station_id="st-test", create=False)
    try:
        assert [r["device_serial"] for r in cat.query("SELECT * FROM checks")] == ["CLI0001"]
    finally:
        cat.close()


def test_cli_check_exits_1_when_not_ready(tmp_path: Path, home: Path) -> None:
    cfg = write_config(tmp_path)
    root = make_folder_recorder(tmp_path / "rec", files=0, battery=30.0, firmware="0.9")
    res = recdock("check", str(root), home=home, config=cfg)
    assert res.returncode == 1
    assert "NOT READY: battery 30 % < 80 %" in res.stdout
    js = recdock("check", str(root), "--json", home=home, config=cfg)
    assert js.returncode == 1
    data = json.loads(js.stdout)
    assert data["ready"] is False
    assert {r["name"] for r in data["results"]} == {
        "battery",
        "storage",
        "clock",
        "firmware",
        "offload",
        "late",
    }


def test_cli_simulated_station_clock_sets_then_redock_confirms(tmp_path: Path, home: Path) -> None:
    # the simulated recorder writes its clock when it is docked, and each check runs later in a
    # subprocess: a 30 s tolerance keeps a loaded machine's delays out of a one-hour offset
    cfg = write_config(tmp_path, clock_tolerance_s=30)
    root = make_folder_recorder(tmp_path / "rec", files=0, clock_offset=3600)
    first = recdock(
        "check", str(root), "--simulated-station-clock", "synchronised", home=home, config=cfg
    )
    assert first.returncode == 1
    assert "clock set; re-dock to confirm" in first.stdout
    assert "SIMULATED station clock" in first.stderr  # said out loud, never silent
    assert (root / TIME_FILE).exists()
    apply_firmware(root)  # the recorder is re-docked: its firmware applies the time
    second = recdock(
        "check", str(root), "--simulated-station-clock", "synchronised", home=home, config=cfg
    )
    assert second.returncode == 0, second.stdout
    apply_firmware(root)  # docked again: the firmware writes its running clock
    ro = recdock(
        "check",
        str(root),
        "--read-only",
        "--simulated-station-clock",
        "unsynchronised",
        home=home,
        config=cfg,
    )
    assert ro.returncode == 0  # in tolerance now; nothing written
    assert not (root / TIME_FILE).exists()
