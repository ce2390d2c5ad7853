"""`e2ad up` stops its stages (their producers) before the broker, and returns once the broker has exited.

The embedded broker acknowledges writes during its own shutdown and then drops them, so the order
is what keeps an acknowledged record (kafka-broker.md, "Measured on 2026-12-01").
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from harness import embedded, services
from harness.pipeline import STAGES, Pipeline
from harness.services import Endpoints
from runtime import kafka
from schemas.config import KafkaSettings, Settings
from tests.polling import until


class FakeProcess:
    """A stage's process: exits a moment after SIGTERM, as a stage flushing its producer does."""

    def __init__(self, stage: str, events: list[str]) -> None:
        self.stage, self.events = stage, events
        self.pid = 0
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def send_signal(self, sig: int) -> None:
        self.events.append(f"SIGTERM {self.stage}")
        asyncio.get_running_loop().call_later(0.05, self._exit)

    def _exit(self) -> None:
        self.events.append(f"exited {self.stage}")
        self.returncode = 0
        self._exited.set()

    def kill(self) -> None:
        raise AssertionError(f"{self.stage} was killed instead of stopping")

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class FakePipeline(Pipeline):
    """The real Pipeline (its start-up and stop), with fake processes instead of `e2ad <stage>` children."""

    events: list[str]
    failing_stage: str | None = None
    restarting: bool | None = None  # whether `e2ad up` asked for its stages to be restarted

    def __init__(
        self, settings: Settings, *, stages: Iterable[str] = STAGES, restart: bool = False, **_: object
    ) -> None:
        super().__init__(settings, stages=stages)
        FakePipeline.restarting = restart

    async def start(self, stage: str, env: dict[str, str] | None = None) -> FakeProcess:  # type: ignore[override]
        if stage == self.failing_stage:
            raise OSError(f"cannot start {stage}")
        process = FakeProcess(stage, self.events)
        self.processes[stage] = process  # type: ignore[assignment]
        self.events.append(f"started {stage}")
        return process


class FakeServices:
    """The local services; the broker's stop is only legal once no stage runs any more."""

    events: list[str]

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or Path("/nonexistent")

    def reset(self) -> None:
        pass

    async def up(self) -> Endpoints:
        self.events.append("broker up")
        return Endpoints("127.0.0.1:1", "ldaps://127.0.0.1:636", "CN=a", "pw", "DC=e2ad,DC=test", "/ca", "dc", "/k")

    def down(self) -> None:
        self.events.append("broker down")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    recorded: list[str] = []
    FakePipeline.events = FakeServices.events = recorded
    monkeypatch.setattr(FakePipeline, "failing_stage", None)
    monkeypatch.setattr(FakePipeline, "restarting", None)

    async def nothing(*_: object, **__: object) -> None:
        return None

    async def results_forever(_: KafkaSettings) -> None:
        await asyncio.Event().wait()

    @contextlib.asynccontextmanager
    async def real_tenant(settings: Settings) -> AsyncIterator[Settings]:
        yield settings

    monkeypatch.setattr(embedded, "LocalServices", FakeServices)
    monkeypatch.setattr(embedded, "Pipeline", FakePipeline)
    monkeypatch.setattr(kafka, "ensure_topics", nothing)
    monkeypatch.setattr(embedded, "_ensure_ou", lambda *_: None)
    monkeypatch.setattr(embedded, "_tenant", real_tenant)
    monkeypatch.setattr(embedded, "_print_results", results_forever)
    return recorded


async def test_up_stops_every_stage_before_the_broker(events: list[str], tmp_path: Path) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(embedded.run_up(Settings(state_dir=tmp_path), stop))
    await until(lambda: "started write" in events, "the writer started", interval=0.01)
    stop.set()
    await asyncio.wait_for(running, 5)
    stages = STAGES
    assert events[: 1 + len(stages)] == ["broker up", *(f"started {s}" for s in stages)]
    assert events[-1] == "broker down"
    assert set(events[1 + len(stages) : -1]) == {f"{signal} {s}" for s in stages for signal in ("SIGTERM", "exited")}
    assert FakePipeline.restarting is True  # a stage that dies is started again (tests/unit/test_supervisor.py)


async def test_a_stage_that_fails_to_start_stops_those_started_before_the_broker(
    events: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakePipeline, "failing_stage", "write")
    with pytest.raises(OSError, match="cannot start write"):
        await asyncio.wait_for(embedded.run_up(Settings(state_dir=tmp_path), asyncio.Event()), 5)
    assert events.index("exited ingest") < events.index("broker down")
    assert events.index("exited process") < events.index("broker down")


def _child(code: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"  # its signal handling is set
    return child


def test_terminate_returns_once_the_process_has_exited() -> None:
    child = _child("import time; print('ready', flush=True); time.sleep(60)")
    assert services._terminate(child.pid, timeout=10) is True
    assert child.poll() is not None


def test_terminate_kills_a_process_that_ignores_sigterm_and_waits_for_it_to_go() -> None:
    child = _child(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    assert services._terminate(child.pid, timeout=0.3) is False
    assert child.poll() == -9  # gone by the time _terminate returned, not merely signalled
