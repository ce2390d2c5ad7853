"""Benchmark (issue 15): the whole pipeline, Graph change to AD, next to plain ldap3 doing the same AD work.

Every scenario runs the real stages (`e2ad ingest`, `e2ad process`, `e2ad write` as processes, as
`e2ad up` starts them) on a fresh embedded noida-db broker, against the Graph stand-in (seeded
through its tenant) and the machine's Samba AD DC, in an OU of its own; users are created in AD
and in Entra first. After the pipeline, the same AD work is done by the baseline a competent
engineer would write without e2ad (one ldap3 SAFE_SYNC connection, the attributes and members
the pipeline wrote), and each figure is printed with the baseline's and their ratio.

- initial: G groups with M members each from an empty AD; from the first delta page to every
  group applied (ad.results), with the peak RSS of each stage and the broker.
- burst: B groups created in Entra in one batch, then B soft-deleted (the deletion guard's
  threshold raised above B, its window 1 s); each to AD complete.
- latency: single changes (renames, member adds, member removes) at a steady rate: p50 / p95 /
  p99 from the change in Entra to AD, and per stage, from the records' own timestamps:
  graph (the stand-in's delivery) → webhook (NotificationBatch.received_at on graph.notifications)
  → delta read (ChangeRecord.observed_at on graph.changes) → desired published (the ad.desired
  record's timestamp) → AD applied (ProvisioningResult.at on ad.results).
- scaling: the burst with two writers, next to one.

Usage: .venv/bin/python scripts/bench_pipeline.py [--quick] [--scenarios initial,burst,latency,scaling]
       [--groups 10000] [--members 20] [--users 2000] [--burst 500] [--changes 1000] [--rate 5]
       [--plot DIR]

--quick: a few hundred objects, for CI (~1.5 min). Needs the machine's Samba AD DC (started when it
is not running). Exits non-zero only when something went wrong (a stage died, AD does not hold
exactly what Entra holds), never because of a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
from aiokafka import TopicPartition

# The benchmarks' shared pieces, next to this script (its directory is on sys.path).
from bench_writer import ANCHOR_ATTRIBUTE, User, create_users, member_value
from pipeline_bench import (
    BenchError,
    bench_ou,
    check,
    cpu_seconds,
    embedded_broker,
    ldap_step,
    run_bench,
    search_all,
    simulated_settings,
    wait_for_subscriptions,
)

from harness.pipeline import Pipeline
from harness.services import LocalServices
from harness.standin import GraphStandin, running_standin
from runtime import kafka
from schemas import topics
from schemas.changes import CHANGE_RECORD, GroupChanged
from schemas.config import AdSettings, DeleteSettings, KafkaSettings, Settings
from schemas.desired import DesiredGroup, anchor_of
from schemas.notifications import NotificationBatch
from schemas.results import ProvisioningResult
from writers.connection import close, connect

SCENARIOS = ("initial", "burst", "latency", "scaling")
QUICK = {"groups": 300, "members": 5, "users": 100, "burst": 100, "changes": 30}
# A scenario slower than this many objects a second (plus start-up) is stuck, not slow.
SLOWEST_PER_SECOND = 5
GRACE_SECONDS = 90
POLL_SECONDS = 0.25
LATENCY_POOL = 50  # groups the single changes go round
LATENCY_MEMBERS = 5
STAGE_SPLIT = ("graph → webhook", "webhook → delta read", "processors", "writer")


def percentile(values: Sequence[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def spread(values: Sequence[float]) -> str:
    return " / ".join(f"{percentile(values, p):.3f}" for p in (50, 95, 99)) + " s"


# -- what the topics hold, with their timestamps ---------------------------------------------
@dataclass
class Recorder:
    """Reads the pipeline's topics from their beginning, keeping per group what the figures need.

    Only ad.results is read in every scenario; the other topics only when `stamps` is set
    (the latency scenario), so that the initial sync does not compete with the stages for the CPU.
    """

    settings: KafkaSettings
    stamps: bool = False
    notified: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    read: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    published: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    applied: dict[str, list[ProvisioningResult]] = field(default_factory=lambda: defaultdict(list))
    failures: list[ProvisioningResult] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        names = [topics.AD_RESULTS]
        if self.stamps:
            names += [topics.AD_DESIRED, topics.GRAPH_NOTIFICATIONS, topics.GRAPH_CHANGES]
        reader = kafka.consumer(self.settings, group_id=None)
        await reader.start()
        try:
            partitions = [TopicPartition(n, p) for n in names for p in sorted(reader.partitions_for_topic(n) or ())]
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            while not stop.is_set():
                batches = await reader.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        self._note(tp.topic, record.timestamp / 1000, record.value)
                if not batches:
                    await asyncio.sleep(0.05)  # noida-db answers an empty fetch at once: do not spin
        finally:
            await kafka.stop_quietly(reader)

    def _note(self, topic: str, timestamp: float, value: bytes | None) -> None:
        if value is None:
            return
        if topic == topics.AD_RESULTS:
            result = topics.decode(ProvisioningResult, value)
            if result.status == "failure":
                self.failures.append(result)
            self.applied[result.group_id].append(result)
        elif topic == topics.AD_DESIRED:
            self.published[topics.decode(DesiredGroup, value).group_id].append(timestamp)
        elif topic == topics.GRAPH_NOTIFICATIONS:
            batch = topics.decode(NotificationBatch, value)
            for notification in batch.notifications:
                if notification.resource_data is not None and notification.resource_data.id:
                    self.notified[notification.resource_data.id].append(batch.received_at.timestamp())
        elif topic == topics.GRAPH_CHANGES:
            change = topics.decode(CHANGE_RECORD, value)
            if isinstance(change, GroupChanged):
                self.read[change.id].append(change.observed_at.timestamp())

    def done(self, group_ids: Sequence[str], action: str) -> list[ProvisioningResult] | None:
        """Each group's successful `action`, once every group has one; a failure is a BenchError."""
        if self.failures:
            failed = self.failures[0]
            raise BenchError(f"group {failed.group_id}: {failed.action} failed: {failed.error_message}")
        found = []
        for group_id in group_ids:
            result = next((r for r in self.applied.get(group_id, ()) if r.action == action), None)
            if result is None:
                return None
            found.append(result)
        return found

    def first_after(self, found: Sequence[float], after: float) -> float | None:
        return min((at for at in found if at >= after), default=None)


async def until_done(
    recorder: Recorder, pipelines: Sequence[Pipeline], group_ids: Sequence[str], action: str, what: str,
    progress: Callable[[float, int], None] | None = None,
) -> list[ProvisioningResult]:  # fmt: skip
    timeout = GRACE_SECONDS + len(group_ids) / SLOWEST_PER_SECOND
    deadline = time.monotonic() + timeout
    while (results := recorder.done(group_ids, action)) is None:
        for pipeline in pipelines:
            if exited := pipeline.exited():
                raise BenchError(f"{what}: a stage died: {exited}; see its log under {pipeline.log_dir}")
        if time.monotonic() > deadline:
            applied = sum(1 for g in group_ids if any(r.action == action for r in recorder.applied.get(g, ())))
            raise BenchError(f"{what}: {applied} of {len(group_ids)} groups applied within {timeout:.0f} s")
        if progress is not None:
            progress(time.time(), sum(1 for g in group_ids if recorder.applied.get(g)))
        await asyncio.sleep(POLL_SECONDS)
    return results


# -- AD: the checks and the baseline ---------------------------------------------------------
def ad_members(ad: AdSettings, ou: str) -> dict[str, list[frozenset[str]]]:
    """Each group anchor in `ou` (one level) with the member DNs of each copy of it."""
    conn = connect(ad)
    try:
        found: dict[str, list[frozenset[str]]] = defaultdict(list)
        for entry in search_all(conn, ou, "(objectClass=group)", [ANCHOR_ATTRIBUTE, "member"]):
            attributes = entry["attributes"]
            members = frozenset(dn.lower() for dn in attributes.get("member", []))
            found[attributes[ANCHOR_ATTRIBUTE][0]].append(members)
        return found
    finally:
        close(conn)


def verify(ad: AdSettings, ou: str, expected: dict[str, set[User]], what: str) -> None:
    """AD holds exactly the expected groups in `ou`, each once, with exactly its members."""
    found = ad_members(ad, ou)
    problems = []
    for group_id, members in expected.items():
        copies = found.pop(anchor_of(group_id), [])
        wanted = frozenset(user.dn.lower() for user in members)
        if len(copies) != 1:
            problems.append(f"{group_id} is in AD {len(copies)} times")
        elif copies[0] != wanted:
            problems.append(
                f"{group_id} has {len(copies[0] & wanted)} of {len(wanted)} members, {len(copies[0] - wanted)} others"
            )
    problems += [f"{anchor} is not in Entra" for anchor in found]
    if problems:
        raise BenchError(f"{what}: {len(problems)} wrong group(s) in {ou}, e.g. " + "; ".join(problems[:3]))


def baseline_adds(ad: AdSettings, states: Sequence[DesiredGroup], ou: str, rename: Callable[[str], str]) -> float:
    """The seconds one connection takes to add these groups, with their members, into `ou`."""
    conn = connect(ad)
    try:
        requests = []
        for state in states:
            dn = f"CN={ldap3.utils.dn.escape_rdn(state.attributes['cn'])},{ou}"
            attributes = {**state.attributes, **state.create_only}
            attributes["sAMAccountName"] = rename(str(attributes["sAMAccountName"]))
            if state.members:
                attributes["member"] = [f"<GUID={m.object_guid}>" for m in state.members]
            requests.append((dn, attributes))
        started = time.perf_counter()
        for dn, attributes in requests:
            _, result, _, _ = conn.add(dn, "group", attributes)
            check(result, f"baseline add {dn}")
        return time.perf_counter() - started
    finally:
        close(conn)


def baseline_deletes(ad: AdSettings, ou: str, object_class: str = "group") -> float:
    """The seconds one connection takes to delete every `object_class` object in `ou`, one by one."""
    conn = connect(ad)
    try:
        dns = [entry["dn"] for entry in search_all(conn, ou, f"(objectClass={object_class})", ["cn"])]
        started = time.perf_counter()
        for dn in dns:
            _, result, _, _ = conn.delete(dn)
            check(result, f"delete {dn}")
        return time.perf_counter() - started
    finally:
        close(conn)


def add_ou(ad: AdSettings, dn: str) -> str:
    ldap_step(ad, lambda conn: conn.add(dn, "organizationalUnit"), f"create {dn}")
    return dn


async def latest_desired(settings: KafkaSettings) -> dict[str, DesiredGroup]:
    latest = await kafka.read_latest(settings, topics.AD_DESIRED)
    return {key.decode(): topics.decode(DesiredGroup, value) for key, value in latest.items()}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ratio_line(name: str, ours: float, theirs: float, unit: str = "s") -> str:
    return f"{name}: pipeline {ours:.2f} {unit}, baseline (plain ldap3) {theirs:.2f} {unit}, ratio {ours / theirs:.2f}"


# -- one scenario's world: broker, OU, stand-in, users ---------------------------------------
@dataclass
class World:
    ad: AdSettings
    kafka_settings: KafkaSettings
    broker_pid: int
    standin: GraphStandin
    ou: str  # the scenario's own OU: groups/ (the pipeline's), users/, baseline/
    state_dir: Path
    users: list[User] = field(default_factory=list)

    @property
    def groups_ou(self) -> str:
        return f"OU=groups,{self.ou}"

    def settings(self, burst: int = 0) -> Settings:
        settings = simulated_settings(self.kafka_settings, self.standin, self.ad, self.groups_ou, self.state_dir)
        provisioning = settings.provisioning.model_copy(update={"on_soft_delete_or_out_of_scope": "delete"})
        update: dict[str, Any] = {"provisioning": provisioning}
        if burst:
            update["deletes"] = DeleteSettings(threshold=burst + 1, window_seconds=1.0)
        return settings.model_copy(update=update)

    async def add_users(self, count: int) -> None:
        tag = uuid.uuid4().hex[:6]
        users_ou = await asyncio.to_thread(add_ou, self.ad, f"OU=users,{self.ou}")
        conn = connect(self.ad)
        try:
            self.users = await asyncio.to_thread(create_users, conn, users_ou, count, tag)
        finally:
            close(conn)
        for number, user in enumerate(self.users):
            self.standin.tenant.add_user(
                f"bench-user-{number}", id=user.entra_id, onPremisesObjectIdentifier=str(user.guid),
                onPremisesSyncEnabled=True,
            )  # fmt: skip

    def add_groups(self, count: int, members: int, prefix: str) -> dict[str, set[User]]:
        """Groups in Entra, group n with the users n … n+members-1 (users are shared, as in a tenant)."""
        expected: dict[str, set[User]] = {}
        tenant = self.standin.tenant
        for n in range(count):
            group_id = tenant.add_group(f"{prefix} {n}", description=f"{prefix} {n}").object_id
            chosen = {self.users[(n + i) % len(self.users)] for i in range(members)}
            for user in chosen:
                tenant.add_member(group_id, user.entra_id)
            expected[group_id] = chosen
        return expected


async def with_world(
    ad: AdSettings, name: str, users: int, scenario: Callable[[World], Any], report: Callable[[Any], None]
) -> Any:
    """Run `scenario` in a world of its own, reporting its figures before the (slow) clean-up of the DC."""
    with tempfile.TemporaryDirectory(prefix=f"e2ad-bench-{name}-") as state_dir:
        async with (
            embedded_broker(Path(state_dir) / "services") as (kafka_settings, broker_pid),
            bench_ou(ad, f"bench-{name}") as ou,
            running_standin() as standin,
        ):
            world = World(ad, kafka_settings, broker_pid, standin, ou, Path(state_dir))
            await asyncio.to_thread(add_ou, ad, world.groups_ou)
            await world.add_users(users)
            figures = await scenario(world)
            report(figures)
            # One object a request: a tree delete of thousands takes the DC longer than a request may.
            for below in ("groups", "baseline", "baseline-1", "baseline-2"):
                with contextlib.suppress(BenchError):
                    await asyncio.to_thread(baseline_deletes, ad, f"OU={below},{ou}")
            await asyncio.to_thread(baseline_deletes, ad, f"OU=users,{ou}", "user")
            return figures


# -- the scenarios ---------------------------------------------------------------------------
@dataclass
class InitialFigures:
    seconds: float
    baseline_seconds: float
    peak_rss_mb: dict[str, float]
    cpu_seconds: dict[str, float]
    progress: list[tuple[float, int]]  # seconds since the first delta page, groups applied


async def initial_sync(world: World, groups: int, members: int) -> InitialFigures:
    expected = world.add_groups(groups, members, "Initial")
    ids = list(expected)
    recorder, stop = Recorder(world.kafka_settings), asyncio.Event()
    reading = asyncio.create_task(recorder.run(stop))
    samples: list[tuple[float, int]] = []
    try:
        async with Pipeline(world.settings(), log_dir=world.state_dir / "logs") as pipeline:
            results = await until_done(
                recorder, [pipeline], ids, "create", "initial sync", lambda at, n: samples.append((at, n))
            )
            pids = {stage: process.pid for stage, process in pipeline.processes.items()} | {"broker": world.broker_pid}
            rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
            cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    finally:
        stop.set()
        await reading
    first_page = min(r.at for r in world.standin.requests_to("/delta"))
    seconds = max(r.at.timestamp() for r in results) - first_page
    await asyncio.to_thread(verify, world.ad, world.groups_ou, expected, "initial sync")
    states = [s for s in (await latest_desired(world.kafka_settings)).values() if s.state == "present"]
    baseline_ou = await asyncio.to_thread(add_ou, world.ad, f"OU=baseline,{world.ou}")
    baseline = await asyncio.to_thread(baseline_adds, world.ad, states, baseline_ou, lambda name: "b" + name)
    return InitialFigures(seconds, baseline, rss, cpu, [(at - first_page, n) for at, n in samples])


@dataclass
class BurstFigures:
    writers: int
    create_seconds: float
    delete_seconds: float
    baseline_create_seconds: float
    baseline_delete_seconds: float


async def burst(world: World, count: int, members: int, writers: int) -> BurstFigures:
    recorder, stop = Recorder(world.kafka_settings), asyncio.Event()
    reading = asyncio.create_task(recorder.run(stop))
    settings = world.settings(burst=count)
    logs = world.state_dir / "logs"
    try:
        async with Pipeline(settings, stages=("ingest", "process"), log_dir=logs) as stages:
            pipelines = [stages]
            for number in range(writers):
                # Each copy a static member of its own: under one name they would take each other's partitions.
                kafka_settings = settings.kafka.model_copy(update={"group_instance_id": f"bench-writer-{number}"})
                copy = settings.model_copy(update={"kafka": kafka_settings})
                pipelines.append(await Pipeline(copy, stages=("write",), log_dir=logs).__aenter__())
            try:
                await wait_for_subscriptions(world.standin)
                await asyncio.sleep(3)  # the first (empty) rounds done, the writers assigned
                started = time.time()
                expected = world.add_groups(count, members, f"Burst{writers}")
                ids = list(expected)
                created = await until_done(recorder, pipelines, ids, "create", "burst create")
                create_seconds = max(r.at.timestamp() for r in created) - started
                await asyncio.to_thread(verify, world.ad, world.groups_ou, expected, "burst create")
                states = list((await latest_desired(world.kafka_settings)).values())
                started = time.time()
                for group_id in ids:
                    world.standin.tenant.soft_delete_group(group_id)
                deleted = await until_done(recorder, pipelines, ids, "delete", "burst delete")
                delete_seconds = max(r.at.timestamp() for r in deleted) - started
                await asyncio.to_thread(verify, world.ad, world.groups_ou, {}, "burst delete")
            finally:
                for pipeline in pipelines[1:]:
                    await pipeline.stop()
    finally:
        stop.set()
        await reading
    baseline_ou = await asyncio.to_thread(add_ou, world.ad, f"OU=baseline-{writers},{world.ou}")
    added = await asyncio.to_thread(baseline_adds, world.ad, states, baseline_ou, lambda name: name)
    removed = await asyncio.to_thread(baseline_deletes, world.ad, baseline_ou)
    return BurstFigures(writers, create_seconds, delete_seconds, added, removed)


@dataclass
class Change:
    group_id: str
    kind: str  # rename, member added, member removed
    at: float


@dataclass
class LatencyFigures:
    total: list[float]
    stages: dict[str, list[float]]
    baseline: list[float]  # one plain ldap3 modify of the same kind, each


async def latency(world: World, changes: int, rate: float) -> LatencyFigures:
    pool = world.add_groups(LATENCY_POOL, LATENCY_MEMBERS, "Latency")
    ids = list(pool)
    recorder, stop = Recorder(world.kafka_settings, stamps=True), asyncio.Event()
    reading = asyncio.create_task(recorder.run(stop))
    done: list[Change] = []
    try:
        async with Pipeline(world.settings(), log_dir=world.state_dir / "logs") as pipeline:
            await until_done(recorder, [pipeline], ids, "create", "latency pool")
            await wait_for_subscriptions(world.standin)
            await asyncio.sleep(2)
            choose = random.Random(15)
            tenant = world.standin.tenant
            for number in range(changes):
                group_id = ids[number % len(ids)]
                kind = ("rename", "member added", "member removed")[(number // len(ids)) % 3]
                if kind == "rename":
                    at = tenant.update_group(group_id, displayName=f"Latency {number} renamed").at
                elif kind == "member added":
                    user = choose.choice([u for u in world.users if u not in pool[group_id]])
                    pool[group_id].add(user)
                    at = tenant.add_member(group_id, user.entra_id).at
                else:
                    user = choose.choice(sorted(pool[group_id], key=lambda u: u.dn))
                    pool[group_id].discard(user)
                    at = tenant.remove_member(group_id, user.entra_id).at
                done.append(Change(group_id, kind, at))
                await asyncio.sleep(1 / rate)
            splits = await _splits(recorder, [pipeline], done)
    finally:
        stop.set()
        await reading
    await asyncio.to_thread(verify, world.ad, world.groups_ou, pool, "latency")
    baseline = await asyncio.to_thread(_baseline_modifies, world, done)
    return LatencyFigures(
        [sum(s) for s in splits], dict(zip(STAGE_SPLIT, map(list, zip(*splits, strict=True)), strict=True)), baseline
    )


async def _splits(
    recorder: Recorder, pipelines: Sequence[Pipeline], changes: Sequence[Change]
) -> list[tuple[float, ...]]:
    """Each change's seconds in each stage, once every change is applied in AD."""
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        splits = [_split(recorder, change) for change in changes]
        if all(split is not None for split in splits):
            return splits  # type: ignore[return-value]
        missing = next(c for c, s in zip(changes, splits, strict=True) if s is None)
        if time.monotonic() > deadline:
            raise BenchError(f"{missing.kind} on {missing.group_id} at {missing.at:.3f} did not reach AD")
        for pipeline in pipelines:
            if exited := pipeline.exited():
                raise BenchError(f"latency: a stage died: {exited}")
        await asyncio.sleep(POLL_SECONDS)


def _split(recorder: Recorder, change: Change) -> tuple[float, ...] | None:
    notified = recorder.first_after(recorder.notified.get(change.group_id, []), change.at - 0.001)
    read = recorder.first_after(recorder.read.get(change.group_id, []), change.at)
    if notified is None or read is None:
        return None
    published = recorder.first_after(recorder.published.get(change.group_id, []), read)
    if published is None:
        return None
    applied = recorder.first_after(
        [r.at.timestamp() for r in recorder.applied.get(change.group_id, []) if r.action == "update"], published
    )
    if applied is None:
        return None
    return (notified - change.at, read - notified, published - read, applied - published)


def _baseline_modifies(world: World, changes: Sequence[Change]) -> list[float]:
    """One plain modify per change, of the same kind, on a group of the baseline's own."""
    conn = connect(world.ad)
    try:
        ou = f"OU=baseline,{world.ou}"
        check(conn.add(ou, "organizationalUnit")[1], f"create {ou}")
        dn = f"CN=latency-baseline,{ou}"
        check(conn.add(dn, "group", {"sAMAccountName": f"lat{uuid.uuid4().hex[:12]}"})[1], f"create {dn}")
        seconds, members = [], []
        for number, change in enumerate(changes):
            if change.kind == "rename":
                modification = {"displayName": [(ldap3.MODIFY_REPLACE, [f"renamed {number}"])]}
            elif change.kind == "member added" or not members:
                user = world.users[number % len(world.users)]
                members.append(user)
                modification = {"member": [(ldap3.MODIFY_ADD, [member_value(user)])]}
            else:
                modification = {"member": [(ldap3.MODIFY_DELETE, [member_value(members.pop())])]}
            started = time.perf_counter()
            check(conn.modify(dn, modification)[1], f"baseline modify {dn}")
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        close(conn)


# -- report ----------------------------------------------------------------------------------
def report_initial(figures: InitialFigures, groups: int, members: int) -> None:
    print(ratio_line(f"initial sync, {groups} groups × {members} members", figures.seconds, figures.baseline_seconds))
    print(f"  {groups / figures.seconds:.1f} groups/s; baseline {groups / figures.baseline_seconds:.1f} groups/s")
    rss = ", ".join(f"{name} {mb:.0f} MB" for name, mb in figures.peak_rss_mb.items())
    cpu = ", ".join(f"{name} {s:.0f} s" for name, s in figures.cpu_seconds.items())
    print(f"  peak RSS: {rss}; CPU: {cpu}")


def report_burst(figures: BurstFigures, count: int) -> None:
    label = f"burst of {count}, {figures.writers} writer{'s' if figures.writers > 1 else ''}"
    print(ratio_line(f"{label}: create", figures.create_seconds, figures.baseline_create_seconds))
    print(
        ratio_line(
            f"{label}: delete (incl. the guard's 1 s window)", figures.delete_seconds, figures.baseline_delete_seconds
        )
    )


def report_latency(figures: LatencyFigures, rate: float) -> None:
    print(
        f"latency, {len(figures.total)} single changes at {rate:g}/s, p50 / p95 / p99: "
        f"pipeline {spread(figures.total)}, "
        f"baseline (one plain modify) {spread(figures.baseline)}, ratio at p50 "
        f"{percentile(figures.total, 50) / percentile(figures.baseline, 50):.1f}"
    )
    for name, values in figures.stages.items():
        print(f"  {name}: {spread(values)}")


def plot(directory: Path, initial: InitialFigures | None, latencies: LatencyFigures | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    directory.mkdir(parents=True, exist_ok=True)
    if latencies is not None:
        figure, axes = pyplot.subplots(figsize=(10, 4))
        names = [*latencies.stages, "total"]
        axes.boxplot([*latencies.stages.values(), latencies.total], tick_labels=names, whis=(1, 99), showfliers=False)
        axes.set_ylabel("seconds (whiskers: p1–p99)")
        axes.set_title(f"Change in Entra → AD, {len(latencies.total)} single changes, per stage")
        figure.tight_layout()
        figure.savefig(directory / "latency-per-stage.png", dpi=100)
    if initial is not None and initial.progress:
        figure, axes = pyplot.subplots(figsize=(8, 4))
        axes.plot([at for at, _ in initial.progress], [n for _, n in initial.progress])
        axes.set_xlabel("seconds since the first delta page")
        axes.set_ylabel("groups applied in AD")
        axes.set_title("Initial sync progress")
        figure.tight_layout()
        figure.savefig(directory / "initial-sync-progress.png", dpi=100)


async def bench(args: argparse.Namespace) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each figure as soon as it is measured
    dc = LocalServices()
    await asyncio.to_thread(dc.start_dc)  # the machine's shared DC; running already in most cases
    ad = dc.endpoints(bootstrap="").ad_settings()
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; scenarios {', '.join(args.scenarios)}"
    )
    initial = latencies = None
    if "initial" in args.scenarios:
        initial = await with_world(
            ad, "initial", args.users, lambda w: initial_sync(w, args.groups, args.members),
            lambda figures: report_initial(figures, args.groups, args.members),
        )  # fmt: skip
    for writers in [1] * ("burst" in args.scenarios) + [2] * ("scaling" in args.scenarios):
        await with_world(
            ad, "burst", max(args.members, 50), lambda w, n=writers: burst(w, args.burst, 5, n),
            lambda figures: report_burst(figures, args.burst),
        )  # fmt: skip
    if "latency" in args.scenarios:
        latencies = await with_world(
            ad, "latency", LATENCY_POOL + LATENCY_MEMBERS + 20, lambda w: latency(w, args.changes, args.rate),
            lambda figures: report_latency(figures, args.rate),
        )  # fmt: skip
    if args.plot:
        plot(args.plot, initial, latencies)
        print(f"plots in {args.plot}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred objects, for CI: " + str(QUICK))
    parser.add_argument("--scenarios", type=lambda text: text.split(","), default=list(SCENARIOS))
    parser.add_argument("--groups", type=int, default=10_000, help="initial sync: groups")
    parser.add_argument("--members", type=int, default=20, help="initial sync: members per group")
    parser.add_argument("--users", type=int, default=2_000, help="initial sync: users they share")
    parser.add_argument("--burst", type=int, default=500, help="burst: groups created, then deleted")
    parser.add_argument("--changes", type=int, default=1_000, help="latency: single changes")
    parser.add_argument("--rate", type=float, default=5.0, help="latency: changes a second")
    parser.add_argument("--plot", type=Path, help="write the latency and initial-sync PNGs here (needs matplotlib)")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    if not set(args.scenarios) <= set(SCENARIOS):
        parser.error(f"--scenarios: some of {', '.join(SCENARIOS)}")
    if not (1 <= args.groups <= 20_000 and 1 <= args.members <= args.users <= 5_000 and 1 <= args.burst <= 5_000):
        parser.error("--groups 1..20000, --members ≤ --users ≤ 5000, --burst 1..5000")
    if not (1 <= args.changes <= 10_000 and 0 < args.rate <= 100):
        parser.error("--changes 1..10000, --rate 0..100")
    return args


if __name__ == "__main__":
    run_bench(bench(arguments()))
