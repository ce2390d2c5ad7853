"""Run the stages as child processes of one command: `e2ad up`, and the end-to-end tests.

Each stage is the same `e2ad <stage>` an operator would start by hand, configured through
E2AD_… variables derived from one Settings object, so what runs here is what runs deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from schemas.config import JOB_SECTIONS, Settings

log = logging.getLogger(__name__)

STAGES = ("ingest", "process", "write")
STOP_TIMEOUT_SECONDS = 20.0
# `e2ad up` starts a stage that died again after this, doubling while it keeps dying, up to the max.
RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a stage that ran this long before it died starts again after the initial delay


def settings_environment(settings: Settings) -> dict[str, str]:
    """The E2AD_… variables that reproduce these settings in a child process (secrets included)."""
    env: dict[str, str] = {}
    _flatten(settings, "E2AD_", env)
    return env


def operator_environment(settings: Settings) -> dict[str, str]:
    """The E2AD_… variables of an operator's shell next to stages run with these settings.

    How to reach the services, but not the provisioning configuration (scope, mappings, …): the
    environment overrides a file, so those variables would win over what `e2ad config apply FILE`
    is asked to apply.
    """
    job = tuple(f"E2AD_{section.upper()}" for section in JOB_SECTIONS)
    return {
        name: value
        for name, value in settings_environment(settings).items()
        if not any(name == prefix or name.startswith(f"{prefix}__") for prefix in job)
    }


def command_environment(settings: dict[str, str]) -> dict[str, str]:
    """The environment of an e2ad process a test or a benchmark starts: these E2AD_… settings and no others.

    Not the session's own E2AD_… variables (E2AD_TEST_KAFKA_BOOTSTRAP, a developer's settings): the
    process would refuse unknown ones, or run with settings the test did not choose.
    """
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("E2AD_")}
    return {**inherited, **settings}


def _flatten(model: BaseModel, prefix: str, env: dict[str, str]) -> None:
    for name, field in type(model).model_fields.items():
        value: Any = getattr(model, name)
        # A field is named by its alias where it has one: notifications.email.from, not .sender.
        key = f"{prefix}{(field.alias or name).upper()}"
        if isinstance(value, BaseModel):
            _flatten(value, key + "__", env)
        elif isinstance(value, dict):
            if value:
                env[key] = json.dumps(value)
        elif isinstance(value, list):
            # JSON, as the settings read a list: not ['a'], Python's; a model (a mapping rule, a scope
            # clause in a filter's list) as its fields, however deep.
            env[key] = json.dumps(to_jsonable_python(value), default=str)
        elif value is not None:
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[key] = str(value).lower() if isinstance(value, bool) else str(value)


class Pipeline:
    """The stages as child processes; their output goes to log files, or prefixed to ours.

    With `restart`, a stage that exits on its own is started again after a backoff (`e2ad up`):
    RESTART_INITIAL_SECONDS, doubling to RESTART_MAX_SECONDS while it keeps dying, and from the start
    again once it ran STABLE_SECONDS. Without it (the tests), a dead stage stays dead and exited() says so.
    Each stage joins its consumer group as a static member named after the stage (unless
    kafka.group_instance_id is configured): a stage restarted after a SIGKILL takes its partitions
    back at once, also on the embedded broker, which never expires the dead one.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stages: Iterable[str] = STAGES,
        log_dir: Path | None = None,
        restart: bool = False,
        command: Callable[[str], Sequence[str]] = lambda stage: (sys.executable, "-m", "e2ad", stage),
        restart_initial_seconds: float = RESTART_INITIAL_SECONDS,
        restart_max_seconds: float = RESTART_MAX_SECONDS,
    ) -> None:
        self.settings = settings
        self.stages = tuple(stages)
        self.log_dir = log_dir
        self.restart = restart
        self.command = command  # the tests' fake stages; otherwise `python -m e2ad STAGE`
        self.restart_initial_seconds = restart_initial_seconds
        self.restart_max_seconds = restart_max_seconds
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = {}  # how often each stage was started again after it died
        self._pumps: list[asyncio.Task[None]] = []
        self._supervisors: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    async def __aenter__(self) -> Pipeline:
        env = {**os.environ, **settings_environment(self.settings)}
        try:
            for stage in self.stages:
                await self.start(stage, env)
        except BaseException:
            # __aexit__ does not run when __aenter__ fails: the stages started so far would outlive
            # the pipeline, and keep producing to a broker that `e2ad up` stops next.
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, stage: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        env = env or {**os.environ, **settings_environment(self.settings)}
        # Unless the settings (or `env`, for a second copy of a stage) name it: two live members under
        # one name would take each other's partitions.
        env = {"E2AD_KAFKA__GROUP_INSTANCE_ID": f"pipeline-{stage}", **env}
        process = await self._spawn(stage, env)
        if self.restart:
            self._supervisors[stage] = asyncio.create_task(self._supervise(stage, env, process))
        return process

    async def _spawn(self, stage: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        command = self.command(stage)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{stage}.log").open("ab")
            process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            output.close()
        else:
            process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            self._pumps.append(asyncio.create_task(_pump(stage, process)))
        self.processes[stage] = process
        log.info("started %s (pid %s)", stage, process.pid)
        return process

    async def _supervise(self, stage: str, env: dict[str, str], process: asyncio.subprocess.Process) -> None:
        """Start `stage` again each time it exits, until stop(); stop() leaves the stopping to this task."""
        loop = asyncio.get_running_loop()
        delay = self.restart_initial_seconds
        while True:
            started = loop.time()
            if not await self._exits_before_stop(process):
                await _terminate(stage, process)
                return
            if loop.time() - started >= STABLE_SECONDS:
                delay = self.restart_initial_seconds  # a crash after a good run is not a crash loop
            log.warning("%s: process exited with code %s; restarting in %s s", stage, process.returncode, f"{delay:g}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            process = await self._spawn(stage, env)
            self.restarts[stage] = self.restarts.get(stage, 0) + 1
            delay = min(delay * 2, self.restart_max_seconds)

    async def _exits_before_stop(self, process: asyncio.subprocess.Process) -> bool:
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            stopping.cancel()
        return process.returncode is not None and not self._stopping.is_set()

    def exited(self) -> dict[str, int]:
        """Stages that ended on their own, with their exit codes (with `restart`: those waiting to start again)."""
        return {s: p.returncode for s, p in self.processes.items() if p.returncode is not None}

    async def stop(self) -> None:
        """SIGTERM every stage and return once all have exited: a stage flushes and closes its producers
        on the way out; one still running after STOP_TIMEOUT_SECONDS is killed. No stage is restarted."""
        self._stopping.set()
        if self._supervisors:
            await asyncio.gather(*self._supervisors.values())
        else:
            await asyncio.gather(*(_terminate(stage, process) for stage, process in self.processes.items()))
        for pump in self._pumps:
            await pump
        self.processes.clear()
        self._pumps.clear()
        self._supervisors.clear()
        self._stopping = asyncio.Event()  # the tests start stages again after a stop


async def _terminate(stage: str, process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; killing it", stage, STOP_TIMEOUT_SECONDS)
        process.kill()
        await process.wait()


async def _pump(stage: str, process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        sys.stdout.write(f"{stage:<8}| {line.decode(errors='replace')}")
        sys.stdout.flush()
