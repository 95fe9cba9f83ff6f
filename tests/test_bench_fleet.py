"""The fleet bench (bench/fleet.py, bench/fleet_run.py) run tiny against a live centre.

So the load bench of issue 14 cannot rot silently: 3 stations x 2 bays publish, through the
shipped broker configuration, what the station's own code writes and signs (rule 9,
docs/architecture.md), recdock-central (a process) ingests it, and the bench's own check
finds every station's chain complete at the centre up to the head in its catalog, one report
per recorder, the open faults, nothing rejected; its probes reach the API and the dashboard.
With one worker on SQLite, two as a worker group on SQLite, and two on PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.mosquitto import MOSQUITTO

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


@pytest.fixture
def fleet_run():
    sys.path.insert(0, str(BENCH))
    try:
        import fleet_run

        yield fleet_run
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(("workers", "backend"), [(1, "sqlite"), (2, "sqlite"), (2, "postgresql")])
def test_the_fleet_bench_runs_and_the_centre_stores_what_it_sent(
    tmp_path: Path, fleet_run, workers: int, backend: str, request: pytest.FixtureRequest
):
    database = []
    if backend == "postgresql":  # the session's cluster (tests/conftest.py), a fresh database
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.fresh_database()
        request.addfinalizer(lambda: cluster.drop_database(url))
        database = ["--database", url]
    out = tmp_path / "fleet.json"
    args = ["--stations", "3", "--bays", "2", "--recorders", "6", "--files", "3",
            "--seconds", "4", "--rates", "1", "--per-hour", "7200", "--probes", "2",
            "--page-every", "0.5", "--workdir", str(tmp_path / "work"),
            "--stations-dir", str(tmp_path / "stations"), "--json", str(out),
            "--workers", str(workers), *database]  # fmt: skip
    (tmp_path / "work").mkdir()
    (tmp_path / "stations").mkdir()
    assert fleet_run.main(args) == 0
    result = json.loads(out.read_text())
    stored = result["stored"]
    assert stored["problems"] == []
    assert stored["recorders"] == 6
    phase = result["phases"]["1.0"]
    assert phase["events"] > 0 and phase["backlog_at_end"] >= 0
    sent = result["preload"]["events"] + phase["events"]
    assert stored["counts"]["events"] == sent
    assert stored["counts"]["stations"] == 3
    assert phase["probes"] >= 1 and phase["probes_unseen"] == 0
    assert phase["lag_dashboard_s"][0] >= phase["lag_api_s"][0] > 0
    assert {"overview html", "overview json", "recorders html"} <= set(phase["pages"])
    assert phase["page_errors"] == []  # every page timed was the page asked for
    consumers = phase["consumers"]  # each worker's own: its client id, what it received
    assert len({w["client_id"] for w in consumers}) == workers
    received = [w["messages"]["received"] for w in consumers]
    assert all(n > 0 for n in received)
    if workers == 2:
        # each event went to one worker (the shared subscription), each state message to
        # both: together they received about events + 2 x states, not 2 x (events + states)
        messages = result["preload"]["messages"] + phase["messages"]
        assert sum(received) < 2 * messages - sent / 2, (received, messages, sent)


def test_options_the_centre_does_not_take_stop_the_bench_clearly(fleet_run, capsys):
    import fleet_centre

    if "--database" not in fleet_centre.centre_options():
        with pytest.raises(SystemExit, match="does not accept --database"):
            fleet_run.main(["--database", "postgresql://x/y"])
    with pytest.raises(SystemExit, match="at least 1"):
        fleet_run.main(["--workers", "0"])
