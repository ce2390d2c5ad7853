"""scripts/bench_pipeline.py --quick, as CI runs it: every scenario measured on correct work, or a failure.

It fails on errors only (a stage died, AD not exactly what Entra holds), never on a ratio: the
figures of a full run are docs/benchmarks.md's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.pipeline import command_environment

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_pipeline.py"


def test_the_quick_benchmark_measures_every_scenario_against_its_baseline(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--plot", str(tmp_path)],
        env=command_environment({}), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    ratios = re.findall(r"^(.*): pipeline .* ratio (\d+\.\d+)$", run.stdout, re.MULTILINE)
    assert [name for name, _ in ratios] == [
        "initial sync, 300 groups × 5 members",
        "burst of 100, 1 writer: create",
        "burst of 100, 1 writer: delete (incl. the guard's 1 s window)",
        "burst of 100, 2 writers: create",
        "burst of 100, 2 writers: delete (incl. the guard's 1 s window)",
    ], run.stdout
    assert all(float(ratio) > 0 for _, ratio in ratios)
    assert re.search(r"^latency, 30 single changes at 5/s, p50 / p95 / p99: pipeline [\d.]+ / ", run.stdout, re.M)
    for stage in ("graph → webhook", "webhook → delta read", "processors", "writer"):
        assert re.search(rf"^  {stage}: [\d.]+ / [\d.]+ / [\d.]+ s$", run.stdout, re.M), run.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"latency-per-stage.png", "initial-sync-progress.png"}
