"""`e2ad up` starts a stage that died again, with a doubling backoff, and stops without restarting.

The stages here are fake child commands (a few lines of Python) that note each start in a file
and then die the way the test needs; no broker is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import pipeline
from harness.pipeline import Pipeline
from schemas.config import KafkaSettings, Settings
from tests.polling import until

# Each start appends "<monotonic time> <group instance id>" to the file named after the stage.
_NOTE_START = (
    "import os, signal, sys, time; "
    "open(sys.argv[1], 'a').write(f\"{time.monotonic()} {os.environ.get('E2AD_KAFKA__GROUP_INSTANCE_ID')}\\n\"); "
)
KILLED = _NOTE_START + "os.kill(os.getpid(), signal.SIGKILL)"
EXITS_3 = _NOTE_START + "sys.exit(3)"
RUNS_UNTIL_SIGTERM = (
    _NOTE_START
    + "signal.signal(signal.SIGTERM, lambda *_: (open(sys.argv[1], 'a').write('terminated\\n'), sys.exit(0))); "
    + "time.sleep(60)"
)
RUNS_HALF_A_SECOND = _NOTE_START + "time.sleep(0.5); sys.exit(1)"


def fake_stages(tmp_path: Path, code: str) -> Callable[[str], list[str]]:
    return lambda stage: [sys.executable, "-c", code, str(tmp_path / f"{stage}.starts")]


def starts(tmp_path: Path, stage: str = "write") -> list[tuple[float, str]]:
    path = tmp_path / f"{stage}.starts"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(at), instance) for at, instance in (line.split() for line in lines if line != "terminated")]


def restart_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == pipeline.__name__ and "restarting in" in r.getMessage()]


def supervised(tmp_path: Path, code: str, initial: float, maximum: float) -> Pipeline:
    return Pipeline(
        Settings(),
        stages=("write",),
        log_dir=tmp_path / "logs",
        restart=True,
        command=fake_stages(tmp_path, code),
        restart_initial_seconds=initial,
        restart_max_seconds=maximum,
    )


async def test_a_killed_stage_is_started_again_after_a_doubling_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=pipeline.__name__)
    async with supervised(tmp_path, KILLED, initial=0.2, maximum=0.8) as stages:
        await until(lambda: len(starts(tmp_path)) >= 5, "the stage started 5 times", timeout=20, interval=0.05)
        restarted = dict(stages.restarts)
    times = [at for at, _ in starts(tmp_path)[:5]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Each gap is the backoff plus a Python start-up: never shorter than the backoff, and growing.
    for gap, backoff in zip(gaps, [0.2, 0.4, 0.8, 0.8], strict=True):
        assert backoff <= gap < backoff + 1.5, gaps
    assert gaps[2] > gaps[0] + 0.3, gaps  # doubled twice, not a fixed delay
    assert restart_lines(caplog)[:4] == [
        "write: process exited with code -9; restarting in 0.2 s",
        "write: process exited with code -9; restarting in 0.4 s",
        "write: process exited with code -9; restarting in 0.8 s",
        "write: process exited with code -9; restarting in 0.8 s",
    ]
    assert restarted["write"] >= 4


async def test_every_start_joins_under_the_same_group_instance_id(tmp_path: Path) -> None:
    async with supervised(tmp_path, KILLED, initial=0.05, maximum=0.05):
        await until(lambda: len(starts(tmp_path)) >= 3, "the stage started 3 times", timeout=20, interval=0.05)
    # The same static member each time: the broker hands the restarted stage its old partitions.
    assert {instance for _, instance in starts(tmp_path)} == {"pipeline-write"}


async def test_a_configured_group_instance_id_is_kept(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(group_instance_id="host-7"))
    command = fake_stages(tmp_path, EXITS_3)
    async with Pipeline(settings, stages=("write",), log_dir=tmp_path / "logs", command=command) as stages:
        await until(lambda: stages.exited() == {"write": 3}, "the stage exited", timeout=20, interval=0.05)
    assert [instance for _, instance in starts(tmp_path)] == ["host-7"]


async def test_stop_during_the_backoff_returns_at_once_and_starts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=pipeline.__name__)
    stages = supervised(tmp_path, EXITS_3, initial=30, maximum=30)
    await stages.__aenter__()
    await until(lambda: restart_lines(caplog), "the restart announced", timeout=20, interval=0.05)
    assert restart_lines(caplog) == ["write: process exited with code 3; restarting in 30 s"]
    await asyncio.wait_for(stages.stop(), 2)
    await asyncio.sleep(0.3)
    assert len(starts(tmp_path)) == 1
    assert stages.processes == {} and stages.restarts == {}


async def test_a_running_stage_is_stopped_with_sigterm_and_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=pipeline.__name__)
    async with supervised(tmp_path, RUNS_UNTIL_SIGTERM, initial=0.05, maximum=0.05) as stages:
        await until(lambda: starts(tmp_path), "the stage started", timeout=20, interval=0.05)
    assert (tmp_path / "write.starts").read_text().splitlines()[-1] == "terminated"
    await asyncio.sleep(0.3)
    assert len(starts(tmp_path)) == 1
    assert restart_lines(caplog) == [] and stages.restarts == {}


async def test_a_stage_that_ran_long_enough_starts_from_the_initial_backoff_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=pipeline.__name__)
    monkeypatch.setattr(pipeline, "STABLE_SECONDS", 0.3)  # each run (0.5 s) counts as a good one
    async with supervised(tmp_path, RUNS_HALF_A_SECOND, initial=0.1, maximum=5):
        await until(lambda: len(restart_lines(caplog)) >= 3, "three restarts", timeout=20, interval=0.05)
    assert restart_lines(caplog)[:3] == ["write: process exited with code 1; restarting in 0.1 s"] * 3


async def test_without_restart_a_dead_stage_stays_dead(tmp_path: Path) -> None:
    command = fake_stages(tmp_path, EXITS_3)
    async with Pipeline(Settings(), stages=("write",), log_dir=tmp_path / "logs", command=command) as stages:
        await until(lambda: stages.exited() == {"write": 3}, "the stage exited", timeout=20, interval=0.05)
        await asyncio.sleep(0.3)
        assert len(starts(tmp_path)) == 1
