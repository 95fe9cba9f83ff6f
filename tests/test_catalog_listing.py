"""`recdock catalog`: filters run in SQL, and the listing streams (memory does not grow with
the catalog). The rows are written into a real catalog file with the catalog's own functions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.catalog import Catalog, open_catalog, recordings, sessions
from tests.recorders import BIN

STATION = "station-01"


def add_session(catalog: Catalog, sid: str, rows: list[dict[str, Any]]) -> None:
    """One session and its recordings, shaped like an offload's."""
    with catalog.tx() as conn:
        sessions.insert(
            conn,
            {
                "id": sid,
                "station_id": STATION,
                "device_serial": rows[0]["device_serial"],
                "profile": "simulated",
                "source": "/mnt/rec",
                "store_dir": f"2026/12/01/{rows[0]['device_serial']}/{sid}",
                "started_at": "2026-12-01T10:00:00+00:00",
            },
        )
        for i, row in enumerate(rows):
            path = f"2026/12/01/{row['device_serial']}/{sid}/media/DCIM/F{i:06d}.MP4"
            recordings.insert(
                conn,
                {
                    "session_id": sid,
                    "station_id": STATION,
                    "profile": "simulated",
                    "source_path": f"DCIM/F{i:06d}.MP4",
                    "source_size": 1000,
                    "store_path": path,
                    "size": 1000,
                    "sha256": f"{hash(path) & (2**256 - 1):064x}",
                    "offloaded_at": "2026-12-01T10:00:00+00:00",
                    "audit_seq": 1,
                    **row,
                },
            )


def run(home: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(BIN / "recdock"), "--home", str(home), "catalog", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    catalog = open_catalog(home, STATION)
    base = {"officer_id": "100001", "unit": "patrol-1", "late": 0}
    add_session(
        catalog,
        "S1",
        [
            {**base, "device_serial": "DEV1", "recorded_start": "2026-11-30T23:30:00+00:00"},
            # 2026-12-01 01:00 at +08:00 is still 30 November in UTC
            {**base, "device_serial": "DEV1", "recorded_start": "2026-12-01T01:00:00+08:00"},
            {**base, "device_serial": "DEV1", "recorded_start": "2026-12-01T09:00:00+08:00"},
        ],
    )
    add_session(
        catalog,
        "S2",
        [
            {**base, "device_serial": "DEV2", "officer_id": "100002", "late": 1},
            {**base, "device_serial": "DEV2", "unit": "traffic", "recorded_start": None},
        ],
    )
    with catalog.tx() as conn:
        recordings.mark_synced(
            conn, 1, at="2026-12-02T00:00:00+00:00", receipt="{}", upload_url="u"
        )
    catalog.close()
    return home


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in rows]


def test_every_filter_selects_in_sql(home: Path) -> None:
    assert ids(run(home)) == [1, 2, 3, 4, 5]
    assert ids(run(home, "--device", "DEV2")) == [4, 5]
    assert ids(run(home, "--officer", "100002")) == [4]
    assert ids(run(home, "--unit", "traffic")) == [5]
    assert ids(run(home, "--synced")) == [1]
    assert ids(run(home, "--not-synced")) == [2, 3, 4, 5]
    assert ids(run(home, "--late")) == [4]
    assert ids(run(home, "--not-late", "--device", "DEV2")) == [5]
    assert ids(run(home, "--limit", "2")) == [1, 2]
    assert ids(run(home, "--limit", "0")) == []


def test_days_are_the_recording_start_in_station_time_or_the_offload_day(home: Path) -> None:
    # rows 1 and 2 started on 30 November (UTC), row 3 on 1 December; rows 4 and 5 have no
    # recorded start: their offload day counts (1 December)
    assert ids(run(home, "--until", "2026-11-30")) == [1, 2]
    assert ids(run(home, "--since", "2026-12-01")) == [3, 4, 5]
    assert ids(run(home, "--since", "2026-12-01", "--until", "2026-12-01")) == [3, 4, 5]
    assert ids(run(home, "--since", "2026-12-02")) == []


def test_the_text_listing_says_when_nothing_matches(home: Path) -> None:
    done = subprocess.run(
        [str(BIN / "recdock"), "--home", str(home), "catalog", "--device", "NONE"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "no recordings match\n", done


def peak_rss_listing(home: Path) -> int:
    """Peak RSS (KiB) of `recdock catalog --json` written to /dev/null."""
    with open(os.devnull, "w") as sink:
        proc = subprocess.Popen(
            [str(BIN / "recdock"), "--home", str(home), "catalog", "--json"], stdout=sink
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss


def test_the_listing_streams_its_memory_does_not_grow_with_the_catalog(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    for home, n in ((small, 1_000), (large, 40_000)):
        catalog = open_catalog(home, STATION)
        row = {"device_serial": "DEV1", "officer_id": "100001", "unit": "patrol-1"}
        for s in range(0, n, 1_000):
            add_session(catalog, f"S{s}", [row] * 1_000)
        catalog.close()
    grown = peak_rss_listing(large) - peak_rss_listing(small)
    # 39,000 more rows of ~1 KiB as dicts would add some 40-60 MiB if held together
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB"
