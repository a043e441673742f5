"""The benchmark harness (`make bench`) runs end to end in its seconds-long `--quick` form and
writes well-formed results. Speed is never asserted here: a benchmark is not a timed test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"name", "rate", "p50_ms", "p99_ms", "errors", "ceiling", "ceiling_rate", "ratio"}


def test_quick_bench_writes_a_result_for_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    env = dict(os.environ)
    if os.environ.get("TEST_DATABASE_URL"):
        env["BENCH_DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads(output.read_text())
    assert results["mode"] == "quick"
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["postgresql"].startswith("PostgreSQL")
    assert machine["synchronous_commit"]
    assert results["ceilings"]["bare_sql"], "pgbench ceilings were measured"
    assert {"hello", "select"} <= set(results["ceilings"]["stack"])

    scenarios = results["scenarios"]
    numbers = {s["name"].split()[0] for s in scenarios}
    assert {"1", "2", "3", "4a", "4b", "5", "6"} <= numbers
    for scenario in scenarios:
        assert set(scenario) >= FIELDS, scenario
        assert scenario["rate"] is None or scenario["rate"] >= 0
        assert isinstance(scenario["ratio"], float | int | None)
    # correctness is checked, speed is not: nothing oversold, every fill fully listed
    hot = next(s for s in scenarios if s["name"].startswith("1 "))
    assert hot["details"]["invariants"]["oversold_units"] == 0
    fill = next(s for s in scenarios if s["name"].startswith("4a"))
    assert fill["details"]["all_allocations_listed"] is True
