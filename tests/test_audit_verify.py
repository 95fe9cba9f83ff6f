"""`recdock verify` (rule 2): every change, removal or reordering of store files and of
audit-log entries is found and named. Each test tampers with the real SQLite file or the store
directly, as an intruder or a failing disk would."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from agent.errors import EXIT_FAILED
from sync.wire.chain import GENESIS, entry_hash
from tests.recorders import make_folder_recorder, recdock

FILES = 3


@pytest.fixture
def station(tmp_path: Path, home: Path) -> tuple[Path, Path]:
    """A home with one offloaded recorder; returns (home, config)."""
    config = tmp_path / "recdock.toml"
    config.write_text("[store]\nreserve_bytes = 0\n")
    rec = make_folder_recorder(tmp_path / "rec", "AUDIT1", files=FILES, size=50_000)
    result = recdock("offload", str(rec), home=home, config=config)
    assert result.returncode == 0, result.stderr
    return home, config


def db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "catalog.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def run_verify(home: Path, config: Path) -> tuple[int, list[str]]:
    result = recdock("verify", home=home, config=config)
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout.splitlines()
    problems = [line[len("PROBLEM: ") :] for line in out if line.startswith("PROBLEM: ")]
    return result.returncode, [*problems, out[-1]]


def problems_of(home: Path, config: Path) -> list[str]:
    code, lines = run_verify(home, config)
    assert code == EXIT_FAILED, lines
    return [line for line in lines if not line.startswith("NOT INTACT")]


def recordings(home: Path) -> list[sqlite3.Row]:
    with db(home) as conn:
        return conn.execute("SELECT * FROM recordings ORDER BY id").fetchall()


def writable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_intact_store_verifies(station: tuple[Path, Path]) -> None:
    home, config = station
    code, lines = run_verify(home, config)
    assert code == 0, lines
    assert lines[-1].startswith(f"intact: {FILES} files")
    # verifying is itself an audited event, and the chain stays valid after it
    assert run_verify(home, config)[0] == 0
    kinds = [r["kind"] for r in db(home).execute("SELECT kind FROM audit ORDER BY seq")]
    assert kinds.count("verify") == 2


def test_chain_is_recomputable_without_our_code(station: tuple[Path, Path]) -> None:
    home, _ = station
    prev = GENESIS
    for row in db(home).execute("SELECT * FROM audit ORDER BY seq"):
        assert row["prev_hash"] == prev
        assert (
            entry_hash(prev, row["seq"], row["at"], row["kind"], row["subject"], row["data"])
            == row["hash"]
        )
        prev = row["hash"]


def test_altered_audit_entry(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[1]
    with db(home) as conn:
        data = json.loads(
            conn.execute("SELECT data FROM audit WHERE seq = ?", (rec["audit_seq"],)).fetchone()[0]
        )
        data["size"] += 1
        conn.execute(
            "UPDATE audit SET data = ? WHERE seq = ?",
            (json.dumps(data, sort_keys=True, separators=(",", ":")), rec["audit_seq"]),
        )
    problems = problems_of(home, config)
    assert any(f"entry {rec['audit_seq']} (file.stored" in p and "altered" in p for p in problems)


def test_removed_entry_in_the_middle(station: tuple[Path, Path]) -> None:
    home, config = station
    with db(home) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 3")
    problems = problems_of(home, config)
    assert any("entry 4 found where entry 3 was expected" in p for p in problems), problems
    assert any("entry 4 does not follow" in p for p in problems), problems


def test_removed_tail_entry_that_a_recording_references(station: tuple[Path, Path]) -> None:
    home, config = station
    last = recordings(home)[-1]
    with db(home) as conn:  # cut the log back: what is left is a valid, shorter chain
        conn.execute("DELETE FROM audit WHERE seq >= ?", (last["audit_seq"],))
    problems = problems_of(home, config)
    assert any(
        p.startswith(last["store_path"]) and f"audit entry {last['audit_seq']} is missing" in p
        for p in problems
    ), problems


def test_reordered_entries(station: tuple[Path, Path]) -> None:
    home, config = station
    cols = "at, kind, subject, data, prev_hash, hash"
    with db(home) as conn:
        a = conn.execute(f"SELECT {cols} FROM audit WHERE seq = 2").fetchone()
        b = conn.execute(f"SELECT {cols} FROM audit WHERE seq = 3").fetchone()
        assert tuple(a) != tuple(b)
        sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
        conn.execute("BEGIN")
        conn.execute(f"UPDATE audit SET {sets} WHERE seq = 2", tuple(b))
        conn.execute(f"UPDATE audit SET {sets} WHERE seq = 3", tuple(a))
        conn.execute("COMMIT")
    problems = problems_of(home, config)
    assert any("entry 2 does not follow" in p for p in problems), problems
    assert any("entry 3 does not follow" in p or "entry 3" in p for p in problems), problems


def test_store_file_changed(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[0]
    path = home / "store" / rec["store_path"]
    writable(path)
    with path.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0x01]))
    problems = problems_of(home, config)
    assert any(p.startswith(rec["store_path"]) and "writable" in p for p in problems), problems
    path.chmod(0o444)  # covering its tracks: the hash still tells
    problems = problems_of(home, config)
    assert [p for p in problems if rec["store_path"] in p] == [
        next(p for p in problems if p.startswith(rec["store_path"]) and "changed" in p)
    ]


def test_store_file_removed(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[2]
    (home / "store" / rec["store_path"]).unlink()
    problems = problems_of(home, config)
    assert f"{rec['store_path']}: missing from the store (removed)" in problems


def test_store_file_added(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[0]
    session_dir = (home / "store" / rec["store_path"]).parents[3]
    assert (session_dir / "manifest-sha256.txt").exists()
    intruder = session_dir / "media" / "DCIM" / "planted.MP4"
    intruder.write_bytes(b"not offloaded by us")
    rel = intruder.relative_to(home / "store").as_posix()
    problems = problems_of(home, config)
    assert f"{rel}: in the store but not in the catalog (added)" in problems


def test_file_added_at_the_store_root(station: tuple[Path, Path]) -> None:
    home, config = station
    (home / "store" / "README").write_text("hello")
    assert "README: in the store but not in the catalog (added)" in problems_of(home, config)


def test_catalog_row_edited(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[1]
    with db(home) as conn:
        conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", ("0" * 64, rec["id"]))
    problems = problems_of(home, config)
    mine = [p for p in problems if p.startswith(rec["store_path"])]
    assert any("disagrees with its audit entry" in p for p in mine), problems
    assert any("changed in the store" in p for p in mine), problems


def test_manifest_edited(station: tuple[Path, Path]) -> None:
    home, config = station
    rec = recordings(home)[0]
    manifest = (home / "store" / rec["store_path"]).parents[3] / "manifest-sha256.txt"
    writable(manifest)
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[1:]) + "\n")
    problems = problems_of(home, config)
    assert any("manifest-sha256.txt: does not match the catalog" in p for p in problems)


def test_every_problem_is_named_at_once(station: tuple[Path, Path]) -> None:
    home, config = station
    recs = recordings(home)
    (home / "store" / recs[0]["store_path"]).unlink()
    with db(home) as conn:
        conn.execute("UPDATE recordings SET sha256 = ? WHERE id = ?", ("f" * 64, recs[1]["id"]))
        conn.execute("UPDATE audit SET kind = 'x' WHERE seq = 1")
    problems = problems_of(home, config)
    assert any(recs[0]["store_path"] in p and "removed" in p for p in problems)
    assert any(recs[1]["store_path"] in p for p in problems)
    assert any("entry 1" in p and "altered" in p for p in problems)


def test_verify_without_a_catalog_is_a_clear_error(tmp_path: Path) -> None:
    result = recdock("verify", home=tmp_path / "nohome")
    assert result.returncode == 74 and "catalog not found" in result.stderr
    assert not (tmp_path / "nohome" / "catalog.db").exists()
    assert os.listdir(tmp_path) == ["nohome"] or not (tmp_path / "nohome").exists()


# -- a cut end of the log (issue 10, item 3) -----------------------------------------------------


def session_id(home: Path) -> str:
    with db(home) as conn:
        return conn.execute("SELECT id FROM sessions").fetchone()[0]


def test_a_cut_end_that_took_the_removals_and_the_session_end_is_named(
    station: tuple[Path, Path],
) -> None:
    """The last entries of a hand offload are its removals and its session.end: cut them off
    and what is left is a valid, shorter chain. The catalog's columns still say the files
    left the recorder and the session ended."""
    home, config = station
    sid = session_id(home)
    with db(home) as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM audit ORDER BY seq")]
        assert kinds[-FILES - 1 :] == ["file.removed_from_recorder"] * FILES + ["session.end"]
        conn.execute(
            "DELETE FROM audit WHERE kind IN ('file.removed_from_recorder', 'session.end')"
        )
    problems = problems_of(home, config)
    assert any(
        p.startswith(f"session {sid}: the catalog says it ended") and "session.end" in p
        for p in problems
    ), problems
    for rec in recordings(home):
        assert any(
            p.startswith(rec["store_path"])
            and "left the recorder" in p
            and "file.removed_from_recorder entry is missing" in p
            for p in problems
        ), problems


def test_a_cut_after_a_check_is_named_and_stays_named(station: tuple[Path, Path]) -> None:
    """Cut the last check's own entry: no column records it, the chain is valid without it,
    and the next check appends its entry at the freed number. The head the check kept
    outside the catalog names it, and every check after names it again."""
    home, config = station
    assert run_verify(home, config)[0] == 0
    with db(home) as conn:
        (last,) = conn.execute("SELECT max(seq) FROM audit").fetchone()
        conn.execute("DELETE FROM audit WHERE seq = ?", (last,))
    problems = problems_of(home, config)
    cut = [p for p in problems if f"entry {last} " in p and "is gone" in p]
    assert cut and "its end was cut" in cut[0], problems
    again = problems_of(home, config)  # the freed number holds the second check's entry now
    assert any(cut[0] in p for p in again), again


def test_a_cut_written_over_by_new_entries_is_named(
    station: tuple[Path, Path], tmp_path: Path
) -> None:
    home, config = station
    assert run_verify(home, config)[0] == 0
    with db(home) as conn:
        (last,) = conn.execute("SELECT max(seq) FROM audit").fetchone()
        conn.execute("DELETE FROM audit WHERE seq = ?", (last,))
    rec = make_folder_recorder(tmp_path / "rec2", "AUDIT2", files=1, size=10_000)
    assert recdock("offload", str(rec), home=home, config=config).returncode == 0
    problems = problems_of(home, config)
    assert any(f"entry {last} is not the one recdock verify saw there" in p for p in problems), (
        problems
    )


def test_a_session_record_that_disagrees_with_the_catalog_is_named(
    station: tuple[Path, Path],
) -> None:
    home, config = station
    rec = recordings(home)[0]
    record = (home / "store" / rec["store_path"]).parents[3] / "session.json"
    data = json.loads(record.read_text())
    data["files"][0]["sha256"] = "0" * 64
    writable(record)
    record.write_text(json.dumps(data))
    problems = problems_of(home, config)
    assert any(
        "session.json: the session's record does not match the catalog" in p
        and rec["store_path"] in p
        for p in problems
    ), problems


def test_a_deleted_catalog_row_is_named_by_the_entry_that_stored_it(
    station: tuple[Path, Path],
) -> None:
    home, config = station
    rec = recordings(home)[1]
    with db(home) as conn:
        conn.execute("DELETE FROM recordings WHERE id = ?", (rec["id"],))
    problems = problems_of(home, config)
    assert (
        f"{rec['store_path']}: audit entry {rec['audit_seq']} (file.stored) catalogued it, "
        "but the catalog has no row for it (the row was deleted)"
    ) in problems, problems
