"""Which recordings a hold covers (rule clause 12, docs/architecture.md's table owners): the one
SQL fragment retention's purge query and export's selection both rest on (agent/catalog/holds.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.catalog import Catalog, holds, recordings, sessions


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog.sqlite", station_id="st-1")
    with cat.tx() as conn:
        for sid, serial, officer in (("s1", "DEV1", "o1"), ("s2", "DEV2", "o2")):
            sessions.insert(
                conn,
                {
                    "id": sid,
                    "station_id": "st-1",
                    "device_serial": serial,
                    "officer_id": officer,
                    "profile": "generic",
                    "source": "sim",
                    "store_dir": f"store/{sid}",
                    "started_at": "2026-01-01T00:00:00+00:00",
                },
            )
        for n, (sid, serial, officer, start) in enumerate(
            (
                ("s1", "DEV1", "o1", "2026-01-01T08:00:00+00:00"),
                ("s1", "DEV1", "o1", "2026-01-01T12:00:00+00:00"),
                ("s2", "DEV2", "o2", None),  # no recorded start: its offload time counts
            ),
            start=1,
        ):
            recordings.insert(
                conn,
                {
                    "session_id": sid,
                    "station_id": "st-1",
                    "device_serial": serial,
                    "officer_id": officer,
                    "profile": "generic",
                    "source_path": f"DCIM/{n}.mp4",
                    "source_size": 1,
                    "store_path": f"store/{sid}/{n}.mp4",
                    "size": 1,
                    "sha256": f"{n:064x}",
                    "recorded_start": start,
                    "offloaded_at": "2026-01-02T09:00:00+00:00",
                    "audit_seq": n,
                },
            )
    return cat


def hold(**kw: object) -> dict[str, object]:
    return {"reason": "complaint", "placed_at": "2026-01-03T00:00:00+00:00", **kw}


def held_ids(cat: Catalog, hold_id: str) -> list[int]:
    return [r["id"] for r in holds.recordings_held_by(cat, hold_id)]


def unheld_ids(cat: Catalog) -> list[int]:
    return [
        r["id"]
        for r in cat.query(
            f"SELECT r.id FROM recordings r WHERE {holds.not_held_sql('r')} ORDER BY r.id"
        )
    ]


def test_each_scope_covers_what_it_names(catalog: Catalog) -> None:
    with catalog.tx() as conn:
        one = holds.add(conn, hold(scope="recording", recording_id=2))
        sess = holds.add(conn, hold(scope="session", session_id="s2"))
        morning = holds.add(
            conn,
            hold(
                scope="device",
                device_serial="DEV1",
                from_at="2026-01-01T00:00:00+00:00",
                to_at="2026-01-01T10:00:00+00:00",
            ),
        )
        officer = holds.add(
            conn, hold(scope="officer", officer_id="o2", from_at="2026-01-02T00:00:00+00:00")
        )
    assert held_ids(catalog, one) == [2]
    assert held_ids(catalog, sess) == [3]
    assert held_ids(catalog, morning) == [1]  # 12:00 is past the range's open end
    assert held_ids(catalog, officer) == [3]  # by its offload time: the recorder gave no start
    assert unheld_ids(catalog) == []


def test_a_released_hold_protects_nothing_but_still_names_its_recordings(catalog: Catalog) -> None:
    with catalog.tx() as conn:
        hid = holds.add(conn, hold(scope="device", device_serial="DEV1", case_number="A-7"))
    assert unheld_ids(catalog) == [3]
    with catalog.tx() as conn:
        assert holds.release(conn, hid, by="admin", reason="case closed", at="2026-02-01")
        assert not holds.release(conn, hid, by="admin", reason="again", at="2026-02-02")
    assert unheld_ids(catalog) == [1, 2, 3]
    assert held_ids(catalog, hid) == [1, 2]
    assert holds.get(catalog, hid)["release_reason"] == "case closed"
    assert [h["id"] for h in holds.by_case(catalog, "A-7")] == [hid]
    assert holds.listing(catalog) == []
    assert [h["id"] for h in holds.listing(catalog, released=True)] == [hid]


def test_holds_on_a_recording_and_bad_words_refused(catalog: Catalog) -> None:
    with catalog.tx() as conn:
        a = holds.add(conn, hold(scope="recording", recording_id=1))
        b = holds.add(conn, hold(scope="officer", officer_id="o1", reason="major_case"))
        with pytest.raises(ValueError, match="reason"):
            holds.add(conn, hold(scope="recording", recording_id=1, reason="because"))
        with pytest.raises(ValueError, match="scope"):
            holds.add(conn, hold(scope="unit", reason="other"))
    assert sorted(h["id"] for h in holds.holds_on(catalog, 1)) == sorted([a, b])
    assert holds.holds_on(catalog, 3) == []


def test_placing_and_lifting_are_audited_in_the_chain(catalog: Catalog) -> None:
    from agent.catalog import audit

    hid = holds.place(
        catalog,
        {
            "scope": "session",
            "session_id": "s1",
            "reason": "obstruction",
            "case_number": "B-1",
            "placed_by": "admin",
        },
    )
    assert holds.lift(catalog, hid, by="admin", reason="case closed")
    assert not holds.lift(catalog, hid, by="admin", reason="twice")
    kinds = [(e.kind, e.subject) for e in audit.entries(catalog)]
    assert kinds == [("hold.placed", hid), ("hold.released", hid)]
    placed = next(e for e in audit.entries(catalog) if e.kind == "hold.placed").data
    assert placed["case_number"] == "B-1" and placed["origin"] == "station"
    assert list(audit.chain_problems(catalog)) == []


def test_held_footage_is_uploaded_first(catalog: Catalog) -> None:
    """A hold sends its footage to the centre's copy before older unheld footage (the upload
    worker's order: held, then late, then oldest)."""
    order = [r["id"] for r in recordings.pending_upload(catalog, not_held=holds.not_held_sql("r"))]
    assert order == [1, 2, 3]
    holds.place(catalog, hold(scope="recording", recording_id=3))
    order = [r["id"] for r in recordings.pending_upload(catalog, not_held=holds.not_held_sql("r"))]
    assert order == [3, 1, 2]
