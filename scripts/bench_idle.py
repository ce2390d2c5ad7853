"""Benchmark (issue 9): CPU of the idle embedded mode, and the latency of single changes to AD.

Runs the three stages (`e2ad ingest`, `e2ad process`, `e2ad write`, as `e2ad up` starts them) on a
fresh embedded noida-db broker, against the Graph stand-in with an empty tenant (the timing of
`e2ad up`'s simulated tenant) and the machine's Samba AD DC, in an OU of its own. After a warm-up
it prints the CPU each stage and the broker used over the measuring window (utime + stime from
/proc, so other work on the machine hardly moves it), then creates groups in the stand-in one at a
time and prints the latency from each change to the writer's result for it (the group is in AD).

Each variant gets its own broker, stand-in and OU. By default both run, the stages' fetch pacing
(runtime/fetch_pacing.py) off first as the baseline, then on.

Usage: .venv/bin/python scripts/bench_idle.py [--variants off,on] [--warm-up 20] [--window 30]
       [--changes 50] [--pause SECONDS]

Needs the machine's Samba AD DC (started when it is not running). Exits non-zero only when
something went wrong (a stage died, a change did not reach AD), never because of a high figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The benchmarks' shared pieces, next to this script (its directory is on sys.path).
from pipeline_bench import (
    BenchError,
    bench_ou,
    cpu_seconds,
    embedded_broker,
    run_bench,
    simulated_settings,
    wait_for_subscriptions,
)

from harness.pipeline import Pipeline
from harness.services import LocalServices
from harness.standin import GraphStandin, running_standin
from runtime import fetch_pacing, kafka
from schemas import topics
from schemas.config import AdSettings, KafkaSettings
from schemas.results import ProvisioningResult

CHANGE_TIMEOUT_SECONDS = 30
# Changes come at random gaps, so they fall at random points of the consumers' pauses.
GAP_SECONDS = (0.5, 1.5)


@dataclass(frozen=True)
class Figures:
    cpu_percent: dict[str, float]  # of one core, per process
    latencies: list[float]  # seconds, change in the stand-in → writer's result
    after_read: list[float]  # seconds of those from ingest reading the change (the Kafka stages' part)


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def pacing_pause(seconds: float) -> Iterator[None]:
    """The stages started inside inherit this pause (0: pacing off) through the environment."""
    before = os.environ.get(fetch_pacing.PAUSE_VARIABLE)
    os.environ[fetch_pacing.PAUSE_VARIABLE] = str(seconds)
    try:
        yield
    finally:
        if before is None:
            del os.environ[fetch_pacing.PAUSE_VARIABLE]
        else:
            os.environ[fetch_pacing.PAUSE_VARIABLE] = before


async def run_variant(args: argparse.Namespace, pause: float, ad: AdSettings, state_dir: Path) -> Figures:
    async with (
        embedded_broker(state_dir / "services") as (kafka_settings, broker_pid),
        bench_ou(ad, "bench-idle") as ou,
        running_standin() as standin,
    ):
        settings = simulated_settings(kafka_settings, standin, ad, ou, state_dir / "state")
        with pacing_pause(pause):
            async with (
                Pipeline(settings, log_dir=state_dir / "logs") as pipeline,
                ResultReader(kafka_settings) as results,
            ):
                await wait_for_subscriptions(standin)
                await asyncio.sleep(args.warm_up)
                pids = {stage: process.pid for stage, process in pipeline.processes.items()} | {"broker": broker_pid}
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                started = time.monotonic()
                await asyncio.sleep(args.window)
                elapsed = time.monotonic() - started
                cpu = {name: 100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}
                latencies, after_read = await single_changes(args.changes, standin, results)
                if exited := pipeline.exited():
                    raise BenchError(f"a stage died: {exited}; see {state_dir / 'logs'}")
        return Figures(cpu, latencies, after_read)


async def single_changes(count: int, standin: GraphStandin, results: ResultReader) -> tuple[list[float], list[float]]:
    """Create groups one at a time; the seconds from each change, and from ingest reading it, to the writer's result."""
    gaps = random.Random(9)
    latencies, after_read = [], []
    for number in range(count):
        change = standin.tenant.add_group(f"Idle bench {number}", securityEnabled=True, mailEnabled=False)
        result = await results.success_for(change.object_id)
        latencies.append(result.at.timestamp() - change.at)
        assert result.source_changed_at is not None, "the processors stamp every desired state"
        after_read.append((result.at - result.source_changed_at).total_seconds())
        await asyncio.sleep(gaps.uniform(*GAP_SECONDS))
    return latencies, after_read


class ResultReader:
    """ad.results from its end; the writer's timestamp is read, so this reader's own pacing does not count."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._consumer = kafka.consumer(settings, topics.AD_RESULTS, group_id=None, auto_offset_reset="latest")

    async def __aenter__(self) -> ResultReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def success_for(self, group_id: str) -> ProvisioningResult:
        try:
            async with asyncio.timeout(CHANGE_TIMEOUT_SECONDS):
                while True:
                    for records in (await self._consumer.getmany(timeout_ms=200)).values():
                        for record in records:
                            result = ProvisioningResult.model_validate_json(record.value)
                            if result.group_id != group_id:
                                continue
                            if result.status != "success":
                                raise BenchError(f"group {group_id}: {result.status} {result.error_message}")
                            return result
        except TimeoutError:
            raise BenchError(f"group {group_id} did not reach AD within {CHANGE_TIMEOUT_SECONDS} s") from None


def report(name: str, figures: Figures, window: float) -> None:
    total = sum(figures.cpu_percent.values())
    per_process = ", ".join(f"{process} {percent:.1f} %" for process, percent in figures.cpu_percent.items())
    print(f"{name}: idle CPU over {window:.0f} s, % of one core: {per_process}; total {total:.1f} %")
    lat, read = figures.latencies, figures.after_read
    print(
        f"{name}: {len(lat)} single changes to AD: p50 {percentile(lat, 50):.3f} s, p95 {percentile(lat, 95):.3f} s, "
        f"min {min(lat):.3f} s, max {max(lat):.3f} s; from ingest reading the change: "
        f"p50 {percentile(read, 50):.3f} s, p95 {percentile(read, 95):.3f} s"
    )


async def bench(args: argparse.Namespace) -> None:
    dc = LocalServices()
    await asyncio.to_thread(dc.start_dc)  # the machine's shared DC; running already in most cases
    ad = dc.endpoints(bootstrap="").ad_settings()
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (shared: other work runs alongside); "
        f"warm-up {args.warm_up:.0f} s, window {args.window:.0f} s, {args.changes} changes"
    )
    for variant in args.variants:
        pause = args.pause if variant == "on" else 0.0
        name = f"pacing {variant}" + (f" ({pause * 1000:.0f} ms)" if pause else "")
        with tempfile.TemporaryDirectory(prefix="e2ad-bench-idle-") as state_dir:
            report(name, await run_variant(args, pause, ad, Path(state_dir)), args.window)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        type=lambda text: text.split(","),
        default=["off", "on"],
        help="which to run, in order: off (the baseline), on, or both as off,on (the default)",
    )
    parser.add_argument("--warm-up", type=float, default=20.0, help="seconds after the stages are ready")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of idle CPU measured")
    parser.add_argument("--changes", type=int, default=50, help="single changes whose latency is measured")
    parser.add_argument(
        "--pause", type=float, default=fetch_pacing.DEFAULT_PAUSE_SECONDS, help="the pacing's pause in seconds"
    )
    args = parser.parse_args()
    if not set(args.variants) <= {"off", "on"} or not 1 <= args.changes <= 1000 or args.pause <= 0:
        parser.error("--variants takes off and/or on; --changes 1..1000; --pause > 0")
    return args


def main() -> None:
    run_bench(bench(arguments()))


if __name__ == "__main__":
    main()
