"""The Kafka side of `e2ad topics ensure|describe`: read the cluster's topics, raise partitions, move records.

What to do is decided by e2ad/topic_plan.py from what this module reads; the creation and the
alignment of configs are runtime/kafka.py's, which every stage runs at start as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from e2ad.topic_plan import Finding, Move, TopicPlan, TopicState, misplaced, moving_topics, plan_topics
from runtime import kafka
from schemas.config import KafkaSettings

# How often --wait looks at the stages' consumer groups again.
WAIT_POLL_SECONDS = 2.0


class TopicsRefused(Exception):
    """The cluster's topics disagree with e2ad in a way ensure must not fix by itself: one line per reason."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))


@dataclass
class EnsureReport:
    """What `topics ensure` did, for its output."""

    plan: TopicPlan
    moved: dict[str, int] = field(default_factory=dict)  # topic -> records moved to their keys' new partitions


def stage_groups() -> tuple[str, ...]:
    """The consumer groups of e2ad's stages; a running member of one may write to the keyed topics."""
    from ingest.control import CONSUMER_GROUP as INGEST_CONTROL
    from ingest.graph_worker import CONSUMER_GROUP as GRAPH_WORKER
    from processors.app import APP_ID as PROCESSORS
    from writers.service import CONSUMER_GROUP as WRITERS

    return (WRITERS, PROCESSORS, GRAPH_WORKER, INGEST_CONTROL)


async def read_cluster(settings: KafkaSettings, names: Sequence[str]) -> dict[str, TopicState]:
    """Each of `names` the cluster has: partitions, replication, configs (None if unreadable), records held."""
    client = kafka.admin(settings)
    await client.start()
    try:
        existing = set(await client.list_topics())
        present = [name for name in names if name in existing]
        if not present:
            return {}
        described = {t["topic"]: t["partitions"] for t in await client.describe_topics(present)}
        configs = await _configs(client, present)
    finally:
        await client.close()
    records = await _records_held(settings, {name: len(described[name]) for name in present})
    return {
        name: TopicState(
            name=name,
            partitions=len(described[name]),
            replication=min(len(p["replicas"]) for p in described[name]),
            configs=configs.get(name),
            records=records[name],
        )
        for name in present
    }


async def _configs(client: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    try:
        responses = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    except KafkaError:
        return {}  # a broker without DescribeConfigs (tansu): describe shows the configs as unknown
    return {
        name: {entry[0]: entry[1] for entry in entries}
        for response in responses
        for error_code, _, _, name, entries in response.resources
        if not error_code
    }


async def _records_held(settings: KafkaSettings, partitions: Mapping[str, int]) -> dict[str, int]:
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        tps = [TopicPartition(name, p) for name, count in partitions.items() for p in range(count)]
        beginning, end = await reader.beginning_offsets(tps), await reader.end_offsets(tps)
    finally:
        await kafka.stop_quietly(reader)
    held = dict.fromkeys(partitions, 0)
    for tp in tps:
        held[tp.topic] += end[tp] - beginning[tp]
    return held


async def running_members(settings: KafkaSettings, groups: Sequence[str]) -> dict[str, list[str]]:
    """Each group of `groups` with members now, and the members as client_id@host."""
    client = kafka.admin(settings)
    await client.start()
    try:
        # One group a request: noida-db answers a request for several with a frame aiokafka cannot decode.
        responses = [response for group in groups for response in await client.describe_consumer_groups([group])]
    finally:
        await client.close()
    members: dict[str, list[str]] = {}
    for response in responses:
        for _, group, _, _, _, group_members in response.groups:
            if group_members:
                members[group] = sorted(f"{client_id}@{host.lstrip('/')}" for _, client_id, host, *_ in group_members)
    return members


async def ensure(
    settings: KafkaSettings, specs: list[NewTopic], *, wait: bool, waiting: Callable[[str], None]
) -> EnsureReport:
    """Create, align, raise and move as the plan says; TopicsRefused, changing nothing, when it refuses.

    Partitions are raised, and records moved, only while no stage has a member in its consumer
    group (with `wait`, once they have left; `waiting` is told whom it waits for).
    """
    cluster = await read_cluster(settings, [spec.name for spec in specs])
    plan = plan_topics(specs, cluster)
    if plan.refusals:
        raise TopicsRefused(["the topics stay as they are:", *(finding.line() for finding in plan.refusals)])
    if plan.raise_to:
        await _stages_stopped(settings, wait, waiting)
    client = kafka.admin(settings)
    await client.start()
    try:
        unaligned = await kafka.apply_topic_specs(client, specs)
        if unaligned:
            raise TopicsRefused(_alignment_refused(plan.findings, unaligned))
        if plan.raise_to:
            await _raise(client, plan.raise_to)
    finally:
        await client.close()
    counts = {spec.name: plan.raise_to.get(spec.name, _count(spec, cluster)) for spec in specs}
    moves = await _misplaced(settings, {name: counts[name] for name in moving_topics(specs)})
    if moves and not plan.raise_to:
        # Left by an ensure that stopped between its raise and its moves: finish them, stages stopped too.
        await _stages_stopped(settings, wait, waiting)
    await _move(settings, moves, counts)
    report = EnsureReport(plan)
    for move in moves:
        report.moved[move.topic] = report.moved.get(move.topic, 0) + 1
    return report


def _count(spec: NewTopic, cluster: Mapping[str, TopicState]) -> int:
    state = cluster.get(spec.name)
    return state.partitions if state is not None else spec.num_partitions


async def _stages_stopped(settings: KafkaSettings, wait: bool, waiting: Callable[[str], None]) -> None:
    told = False
    while members := await running_members(settings, stage_groups()):
        running = "; ".join(f"{group}: {', '.join(names)}" for group, names in sorted(members.items()))
        if not wait:
            raise TopicsRefused(
                [
                    f"raising partitions moves keys to other partitions, so no stage may run meanwhile; running: "
                    f"{running}. Stop the stages (e2ad ingest, process, write), run `e2ad topics ensure` again "
                    "(or with --wait, which waits until they have left), then start them, with more writers"
                ]
            )
        if not told:
            waiting(f"waiting until the stages have left their consumer groups ({running})")
            told = True
        await asyncio.sleep(WAIT_POLL_SECONDS)


def _alignment_refused(findings: Sequence[Finding], unaligned: Mapping[str, str]) -> list[str]:
    lines = []
    for name, reason in sorted(unaligned.items()):
        differing = [f for f in findings if f.topic == name and f.remedy == "align"]
        configs = " ".join(f"--add-config {f.item}={f.needs}" for f in differing)
        has = ", ".join(f"{f.item} {f.has}, e2ad needs {f.needs}" for f in differing) or "its configs"
        lines.append(
            f"{name}: {has}, and the broker refused to align it ({reason}): set it with your Kafka tools "
            f"(kafka-configs.sh --alter --entity-type topics --entity-name {name} {configs}), or give "
            "e2ad's account the DescribeConfigs and AlterConfigs rights on its topics"
        )
    return lines


async def _raise(client: AIOKafkaAdminClient, raise_to: Mapping[str, int]) -> None:
    # One request for every keyed topic: they are co-partitioned, so they grow together.
    try:
        await client.create_partitions({name: NewPartitions(total_count=count) for name, count in raise_to.items()})
    except KafkaError as exc:
        wanted = ", ".join(f"{name} to {count}" for name, count in sorted(raise_to.items()))
        raise TopicsRefused(
            [
                f"the broker did not raise the partitions ({wanted}): {exc}; raise them with your Kafka tools "
                "(kafka-topics.sh --alter --partitions N), then run `e2ad topics ensure` again, which moves the "
                "compacted records to their keys' new partitions"
            ]
        ) from None


async def _misplaced(settings: KafkaSettings, counts: Mapping[str, int]) -> list[Move]:
    starts = {TopicPartition(name, p): None for name, count in counts.items() for p in range(count)}
    latest = await kafka.read_partitions(settings, starts)
    moves = []
    for name, count in counts.items():
        held = {tp.partition: values for tp, values in latest.items() if tp.topic == name}
        moves.extend(misplaced(name, held, count))
    return moves


async def _move(settings: KafkaSettings, moves: Sequence[Move], counts: Mapping[str, int]) -> None:
    """Each value into its key's new partition, acknowledged, and only then a tombstone into the old one.

    In that order an interruption leaves a key in both partitions, never in neither; the next
    ensure sees the new partition holds it and only writes the tombstone.
    """
    if not moves:
        return
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for name in {move.topic for move in moves}:
            await _partitions_known(producer, name, counts[name])
        values = [
            await producer.send(m.topic, m.value, key=m.key, partition=m.new_partition)
            for m in moves
            if m.value is not None
        ]
        await asyncio.gather(*values)
        tombstones = [await producer.send(m.topic, None, key=m.key, partition=m.old_partition) for m in moves]
        await asyncio.gather(*tombstones)
    finally:
        await producer.stop()


async def _partitions_known(producer: AIOKafkaProducer, topic: str, count: int, timeout: float = 10.0) -> None:
    """Wait until the producer's metadata has the raised partitions (a broker may announce them late)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(await producer.partitions_for(topic)) < count:
        if loop.time() > deadline:
            raise TopicsRefused(
                [
                    f"{topic}: the broker does not announce its {count} partitions within {timeout:g} s; no record "
                    "was moved yet: run `e2ad topics ensure` again, which moves them once it does"
                ]
            )
        await producer.client.force_metadata_update()
