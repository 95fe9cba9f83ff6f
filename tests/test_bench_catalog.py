"""bench/bench_catalog.py still runs: a small-size smoke of it (the full size is not run in
CI; its figures are in docs/performance.md). It asserts that every measurement is made and
reported, not its figures: timing belongs to the benchmark, not the test suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_catalog_benchmark_runs_at_a_small_size(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_catalog.py"),
            "--recordings",
            "2000",
            "--sessions",
            "40",
            "--reps",
            "1",
            "--workdir",
            str(tmp_path),
            "--json",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"recordings": 2003' in done.stdout  # the real offload's 3, then the synthetic
    goals = [line for line in done.stdout.splitlines() if line.startswith("goal: ")]
    assert len(goals) == 6, done.stdout
    data = json.loads(results.read_text())
    keys = {"dock_ready", "status", "upload_pass", "offload", "catalog_head", "catalog_head_rss"}
    assert keys <= set(data["runs"]["big"]) and keys <= set(data["runs"]["empty"])
    assert set(data["once"]["big"]) == {
        "catalog_s",
        "catalog_rss",
        "verify_chain_s",
        "verify_chain_rss",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # its work folder is gone
