"""bench/bench_central.py's ingest scenario still runs: a small-size smoke of it.

Its figures are in docs/performance.md ("The centre's ingest"); this asserts that the bench
makes every measurement and that its own checks passed (every event stored once, nothing
rejected, no security alert: it exits non-zero otherwise), not how fast: timing belongs to the
benchmark, not the test suite. The bench once failed on a catalog attribute renamed under it,
unseen until the next measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mosquitto import MOSQUITTO

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


def test_the_ingest_benchmark_runs_at_a_small_size(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_central.py"), "--stations", "2",
         "--events", "30", "--reps", "2", "--sample", "40", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 stations x 30 signed events = 60" in done.stdout
    assert "compiled / jsonschema:" in done.stdout
    data = json.loads(results.read_text())
    runs = data["runs"]
    # both code paths, in turns, each drained all 60 events through the broker
    assert sorted((r["rep"], r["path"]) for r in runs) == [
        (1, "compiled"), (1, "jsonschema"), (2, "compiled"), (2, "jsonschema"),
    ]  # fmt: skip
    assert all(r["events_per_s"] > 0 and r["seconds"] > 0 for r in runs)
    assert [r["path"] for r in runs if r["rep"] == 1] == ["compiled", "jsonschema"]
    assert [r["path"] for r in runs if r["rep"] == 2] == ["jsonschema", "compiled"]
    steps = data["steps"]
    assert set(steps) == {
        "decode (json)",
        "verify (event hash + libsodium)",
        "validate: fastjsonschema",
        "validate: jsonschema",
        "whole handler, batches of 1,000",
    }
    assert all(us > 0 for us in steps.values())
