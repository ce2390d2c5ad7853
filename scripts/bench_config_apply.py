"""Benchmark (issue 13): the time from `e2ad config apply` to AD converged, for 1,000 known groups.

Runs the three stages (`e2ad ingest`, `e2ad process`, `e2ad write`, as `e2ad up` starts them: change
notifications to the webhook, its Graph timing) on a fresh embedded noida-db broker, against the
Graph stand-in and the machine's Samba AD DC, in an OU of its own. The stand-in gets G groups and
the pipeline creates them in AD (the initial sync, timed too). Then each run has two phases, each
G updates of the description by the same writer on the same DC:

1. graph (the baseline): every group's description changed in Entra, in one block; change
   notifications, a delta round, the processors, the writer. Timed from the first change in the
   stand-in to the writer's last result.
2. config: `e2ad config apply` of a file whose description mapping changes every group's value; the
   processors re-evaluate every group from their state, without Graph. Timed from the command's
   start (the operator's view, the command's own start-up included) and from its record on
   e2ad.config, to the writer's last result.

The mapping is an expression over [description] (Append), not a constant, so that the next run's
Graph changes still reach AD. After every phase each group is read back from AD.

Usage: .venv/bin/python scripts/bench_config_apply.py [--groups 1000] [--runs 1]

Needs the machine's Samba AD DC running (`e2ad services up`). Exits non-zero only when something went
wrong (a stage died, a group did not converge), never because of a slow figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiokafka import TopicPartition

# The benchmarks' shared pieces, next to this script (its directory is on sys.path).
from pipeline_bench import (
    PARTITIONS,
    BenchError,
    bench_ou,
    cpu_seconds,
    embedded_broker,
    run_bench,
    search_all,
    simulated_settings,
    wait_for_subscriptions,
)

from harness.pipeline import Pipeline, command_environment, operator_environment
from harness.services import LocalServices
from harness.standin import GraphStandin, running_standin
from runtime import kafka
from runtime.active_config import read_active
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, Settings
from schemas.desired import anchor_of
from schemas.results import Action, ProvisioningResult
from writers.connection import close, connect

ANCHOR = "msDS-ExternalDirectoryObjectId"
MAX_GROUPS, MAX_RUNS = 5_000, 5
# A phase slower than this many groups/s (plus a grace) is stuck, not slow.
SLOWEST_GROUPS_PER_SECOND = 3
PHASE_GRACE_SECONDS = 120


@dataclass(frozen=True)
class Phase:
    name: str
    groups: int
    seconds: float  # from the phase's start to the writer's last result
    first_result: float  # seconds from the start to the writer's first result
    cpu: dict[str, float]  # CPU seconds each stage and the broker used during the phase
    published: float | None = None  # config: seconds from the command's start to its record on e2ad.config

    def line(self) -> str:
        detail = f"first result at +{self.first_result:.2f} s"
        if self.published is not None:
            from_record = self.seconds - self.published
            detail = (
                f"record on {topics.CONFIG} at +{self.published:.2f} s, {detail};"
                f" from the record {from_record:.2f} s ({self.groups / from_record:.1f} groups/s)"
            )
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.cpu.items())
        return (
            f"{self.name:<8} {self.seconds:7.2f} s  {self.groups / self.seconds:6.1f} groups/s  ({detail})\n"
            f"{'':<10}CPU s: {cpu}"
        )


class Results:
    """ad.results from a mark on: the writer's result of each group, and its timestamp."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._consumer = kafka.consumer(settings, group_id=None)
        self._partitions = [TopicPartition(topics.AD_RESULTS, p) for p in range(settings.partitions)]

    async def __aenter__(self) -> Results:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def mark(self) -> None:
        """Results from here on only: resolved now, before the phase adds any."""
        await self._consumer.seek_to_end(*self._partitions)
        for tp in self._partitions:
            await self._consumer.position(tp)

    async def of_every(self, group_ids: set[str], action: Action, timeout: float) -> list[ProvisioningResult]:
        """The writer's successful `action` of every group, once each has one; BenchError for a failure."""
        done: dict[str, ProvisioningResult] = {}
        try:
            async with asyncio.timeout(timeout):
                while len(done) < len(group_ids):
                    for records in (await self._consumer.getmany(timeout_ms=500)).values():
                        for record in records:
                            result = ProvisioningResult.model_validate_json(record.value)
                            if result.group_id not in group_ids:
                                continue
                            if result.status == "failure":
                                raise BenchError(f"group {result.group_id}: {result.action} {result.error_message}")
                            if result.action == action:
                                done.setdefault(result.group_id, result)
        except TimeoutError:
            raise BenchError(f"{len(group_ids) - len(done)} groups had no {action} within {timeout:.0f} s") from None
        return list(done.values())


def timed(
    name: str,
    started: float,
    results: list[ProvisioningResult],
    cpu: dict[str, float],
    published: float | None = None,
) -> Phase:
    stamps = [r.at.timestamp() for r in results]
    return Phase(name, len(results), max(stamps) - started, min(stamps) - started, cpu, published)


def verify(ad: AdSettings, ou: str, wanted: dict[str, str]) -> None:
    """Every group is in AD once, with the description wanted (by anchor), and nothing else is in the OU."""
    connection = connect(ad)
    try:
        found: dict[str, list[str | None]] = {}
        for entry in search_all(connection, ou, "(objectClass=group)", [ANCHOR, "description"]):
            attributes = entry["attributes"]
            description = attributes.get("description")
            value = description[0] if isinstance(description, list) and description else description
            found.setdefault(str(attributes[ANCHOR][0]), []).append(value or None)
    finally:
        close(connection)
    wrong = [f"{a}: {found.get(a)} instead of [{d!r}]" for a, d in wanted.items() if found.get(a) != [d]]
    wrong += [f"{a} is not part of the workload" for a in found.keys() - wanted.keys()]
    if wrong:
        raise BenchError(f"{len(wrong)} group(s) wrong in AD, e.g. " + "; ".join(wrong[:3]))


async def apply(settings: Settings, path: Path) -> str:
    """`e2ad config apply FILE` as an operator runs it next to the stages; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", "config", "apply", str(path),
        env=command_environment(operator_environment(settings)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"e2ad config apply {path} exited {process.returncode}: {output.decode()}")
    return output.decode()


class Workload:
    """The stand-in's groups, the pipeline's settings, and what AD should say after each phase."""

    def __init__(self, standin: GraphStandin, settings: Settings, ad: AdSettings, ou: str, state_dir: Path) -> None:
        self.standin = standin
        self.settings = settings
        self.ad = ad
        self.ou = ou
        self.state_dir = state_dir
        self.ids: list[str] = []
        self.entra: dict[str, str] = {}  # group id → its description in Entra
        self.prefix = ""  # what the active description mapping puts before Entra's
        # The stages' and the broker's pids: their CPU time says what a phase cost even on a machine
        # shared with other work, which stretches the wall-clock figures.
        self.pids: dict[str, int] = {}

    def cpu(self, since: dict[str, float] | None = None) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {name: seconds - (since or {}).get(name, 0.0) for name, seconds in now.items()}

    @property
    def timeout(self) -> float:
        return PHASE_GRACE_SECONDS + len(self.ids) / SLOWEST_GROUPS_PER_SECOND

    def wanted(self) -> dict[str, str]:
        return {anchor_of(g): self.prefix + self.entra[g] for g in self.ids}

    async def initial_sync(self, count: int, results: Results) -> Phase:
        await results.mark()
        cpu = self.cpu()
        # One block without an await: the stand-in serves one delta round for all of them.
        created = [
            self.standin.tenant.add_group(f"Config bench {n:04d}", description=f"entra {n}") for n in range(count)
        ]
        self.ids = [m.object_id for m in created]
        self.entra = {g: f"entra {n}" for n, g in enumerate(self.ids)}
        done = await results.of_every(set(self.ids), "create", self.timeout)
        await asyncio.to_thread(verify, self.ad, self.ou, self.wanted())
        return timed("initial", created[0].at, done, self.cpu(cpu))

    async def graph(self, run: int, results: Results) -> Phase:
        await results.mark()
        cpu = self.cpu()
        changes = []
        for n, group_id in enumerate(self.ids):
            self.entra[group_id] = f"graph {run} {n}"
            changes.append(self.standin.tenant.update_group(group_id, description=self.entra[group_id]))
        done = await results.of_every(set(self.ids), "update", self.timeout)
        await asyncio.to_thread(verify, self.ad, self.ou, self.wanted())
        return timed("graph", changes[0].at, done, self.cpu(cpu))

    async def config(self, run: int, results: Results) -> Phase:
        self.prefix = f"config {run} "
        path = self.state_dir / f"config-{run}.yaml"
        job = {
            "provisioning": {"target_container": self.ou},
            "mappings": {"description": f'Append("{self.prefix}", [description])'},
        }
        path.write_text(yaml.safe_dump(job))
        await results.mark()
        cpu = self.cpu()
        started = time.time()
        await apply(self.settings, path)
        active = await read_active(self.settings.kafka)
        if active is None or active.source != str(path):
            raise BenchError(f"{topics.CONFIG} does not hold {path}: {active}")
        done = await results.of_every(set(self.ids), "update", self.timeout)
        await asyncio.to_thread(verify, self.ad, self.ou, self.wanted())
        return timed("config", started, done, self.cpu(cpu), published=active.changed_at.timestamp() - started)


async def bench(args: argparse.Namespace, ad: AdSettings, state_dir: Path) -> None:
    async with (
        embedded_broker(state_dir / "services") as (kafka_settings, broker_pid),
        bench_ou(ad, "bench-config") as ou,
        running_standin() as standin,
    ):
        settings = simulated_settings(kafka_settings, standin, ad, ou, state_dir / "state")
        workload = Workload(standin, settings, ad, ou, state_dir)
        async with Pipeline(settings, log_dir=state_dir / "logs") as pipeline, Results(kafka_settings) as results:
            await wait_for_subscriptions(standin)
            workload.pids = {stage: process.pid for stage, process in pipeline.processes.items()} | {
                "broker": broker_pid
            }
            print(workload_line(args))
            print((await workload.initial_sync(args.groups, results)).line())
            for run in range(1, args.runs + 1):
                graph = await workload.graph(run, results)
                config = await workload.config(run, results)
                assert config.published is not None
                print(f"run {run}")
                print(f"  {graph.line()}")
                print(f"  {config.line()}")
                print(
                    f"  ratio of times config / graph: {config.seconds / graph.seconds:.2f} from the command's start,"
                    f" {(config.seconds - config.published) / graph.seconds:.2f} from its record"
                    " (below 1: the configuration converges faster)"
                )
            if exited := pipeline.exited():
                raise BenchError(f"a stage died: {exited}; see {state_dir / 'logs'}")


def workload_line(args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average {load}; "
        f"{args.groups} groups, {PARTITIONS} partitions, one writer; {args.runs} run(s)"
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000, help=f"groups in the tenant (≤ {MAX_GROUPS})")
    parser.add_argument("--runs", type=int, default=1, help=f"graph + config phases, each printed (≤ {MAX_RUNS})")
    args = parser.parse_args()
    if not (1 <= args.groups <= MAX_GROUPS and 1 <= args.runs <= MAX_RUNS):
        parser.error(f"--groups 1..{MAX_GROUPS}, --runs 1..{MAX_RUNS}")
    return args


def main() -> None:
    args = arguments()
    services = LocalServices()
    if not services.dc_running():
        print("error: the Samba AD DC is not running: `e2ad services up`", file=sys.stderr)
        sys.exit(1)
    with tempfile.TemporaryDirectory(prefix="e2ad-bench-config-") as state_dir:
        run_bench(bench(args, services.endpoints(bootstrap="").ad_settings(), Path(state_dir)))


if __name__ == "__main__":
    main()
