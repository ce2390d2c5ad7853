"""`e2ad topics ensure|describe` on the real embedded broker: created, raised, moved, refused, described."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from e2ad.topic_plan import home_partition
from e2ad.topics import read_cluster
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings
from tests.integration.stages import run_e2ad
from writers.service import CONSUMER_GROUP as WRITERS


def _env(settings: KafkaSettings, partitions: int) -> dict[str, str]:
    return {"E2AD_KAFKA__BOOTSTRAP_SERVERS": settings.bootstrap_servers, "E2AD_KAFKA__PARTITIONS": str(partitions)}


async def _described(settings: KafkaSettings, partitions: int) -> dict[str, dict[str, Any]]:
    out = await run_e2ad(_env(settings, partitions), "topics", "describe", "--json")
    return {entry["topic"]: entry for entry in json.loads(out)}


def _keys(moving: bool, count: int, before: int = 4, after: int = 6) -> list[bytes]:
    """Group ids whose partition changes (or stays) when a topic grows from `before` to `after` partitions."""
    candidates = (f"group-{n}".encode() for n in range(1000))
    chosen = [k for k in candidates if (home_partition(k, before) != home_partition(k, after)) == moving]
    return chosen[:count]


async def test_ensure_creates_every_topic_and_a_second_run_leaves_them(empty_kafka_settings: KafkaSettings) -> None:
    env = _env(empty_kafka_settings, 3)
    created = await run_e2ad(env, "topics", "ensure")
    assert f"created {topics.AD_DESIRED} (3 partitions, compact)" in created
    assert f"created {topics.AD_RESULTS} (3 partitions, delete after 30 d)" in created
    assert f"created {topics.CONTROL} (1 partition, delete after 1 d)" in created

    settings = empty_kafka_settings.model_copy(update={"partitions": 3})
    cluster = await read_cluster(settings, list(topics.ALL_TOPICS))
    assert set(cluster) == set(topics.ALL_TOPICS)
    for name, wanted in kafka.topic_configs(settings).items():
        assert cluster[name].partitions == (3 if name in topics.KEYED_BY_OBJECT else 1), name
        assert {key: (cluster[name].configs or {})[key] for key in wanted} == wanted, name

    again = await run_e2ad(env, "topics", "ensure")
    assert again.strip() == f"left as they are: {', '.join(topics.ALL_TOPICS)}"

    described = await _described(empty_kafka_settings, 3)
    assert described[topics.AD_DESIRED]["partitions"] == 3
    assert described[topics.AD_DESIRED]["configs"]["cleanup.policy"] == "compact"
    assert described[topics.GRAPH_NOTIFICATIONS]["configs"]["retention.ms"] == str(6 * kafka.HOUR_MS)
    assert all(entry["findings"] == [] and entry["records"] == 0 for entry in described.values())


async def test_ensure_raises_the_keyed_topics_and_moves_compacted_records(kafka_settings: KafkaSettings) -> None:
    # kafka_settings created the topics with 4 partitions; the records land where the producer hashes their keys.
    moving, staying = _keys(moving=True, count=2), _keys(moving=False, count=1)
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        for key in [*moving, *staying]:
            await producer.send_and_wait(topics.AD_DESIRED, b"old " + key, key=key)
            await producer.send_and_wait(topics.AD_DESIRED, b"desired " + key, key=key)
            await producer.send_and_wait(topics.AD_RESULTS, b"result", key=key)
    finally:
        await producer.stop()

    # A running writer: raising partitions now would hand its keys to other partitions under it.
    writer = kafka.consumer(kafka_settings, topics.AD_DESIRED, group_id=WRITERS)
    await writer.start()
    try:
        await writer.getmany(timeout_ms=1000)  # joined the group
        refused = await run_e2ad(_env(kafka_settings, 6), "topics", "ensure", expect=1)
        assert f"running: {WRITERS}: " in refused and "Stop the stages" in refused
        assert (await read_cluster(kafka_settings, [topics.AD_DESIRED]))[topics.AD_DESIRED].partitions == 4
        waiting = asyncio.create_task(run_e2ad(_env(kafka_settings, 6), "topics", "ensure", "--wait"))
        await asyncio.sleep(3)
        assert not waiting.done()  # --wait: still waiting for the writer to leave
    finally:
        await writer.stop()
    raised = await asyncio.wait_for(waiting, 30)
    assert raised.startswith(f"waiting until the stages have left their consumer groups ({WRITERS}: ")
    for name in topics.KEYED_BY_OBJECT:
        assert f"raised {name} from 4 to 6 partitions" in raised
    # Only compacted topics move records: ad.results (time retention) keeps them where they are.
    moved = [line for line in raised.splitlines() if line.startswith("moved")]
    assert moved == [
        f"moved 2 record(s) of {topics.AD_DESIRED} to their keys' new partitions, tombstoned in the old ones"
    ]

    desired = await kafka.read_partitions(
        kafka_settings, {TopicPartition(topics.AD_DESIRED, p): None for p in range(6)}
    )
    for key in moving:
        old, new = home_partition(key, 4), home_partition(key, 6)
        assert desired[TopicPartition(topics.AD_DESIRED, new)][key] == b"desired " + key
        assert key not in desired[TopicPartition(topics.AD_DESIRED, old)]  # tombstoned in its old partition
    for key in staying:
        assert desired[TopicPartition(topics.AD_DESIRED, home_partition(key, 4))][key] == b"desired " + key

    described = await _described(kafka_settings, 6)
    assert {described[name]["partitions"] for name in topics.KEYED_BY_OBJECT} == {6}
    # 3 keys × 2 values, then 2 moved values and their 2 tombstones; ad.results keeps its 3.
    assert described[topics.AD_DESIRED]["records"] == 10
    assert described[topics.AD_RESULTS]["records"] == 3
    assert all(entry["findings"] == [] for entry in described.values())


async def test_ensure_refuses_a_single_partition_topic_with_several(empty_kafka_settings: KafkaSettings) -> None:
    client = kafka.admin(empty_kafka_settings)
    await client.start()
    try:
        await client.create_topics([NewTopic(topics.CONTROL, 3, 1)])
    finally:
        await client.close()
    env = _env(empty_kafka_settings, 4)
    refused = await run_e2ad(env, "topics", "ensure", expect=1)
    assert f"{topics.CONTROL}: partitions 3, e2ad needs 1: " in refused
    assert "partitions cannot be lowered" in refused
    assert set(await read_cluster(empty_kafka_settings, list(topics.ALL_TOPICS))) == {topics.CONTROL}

    described = await _described(empty_kafka_settings, 4)
    control = described[topics.CONTROL]
    assert control["partitions"] == 3 and control["needs"]["partitions"] == 1
    assert {(f["item"], f["remedy"]) for f in control["findings"]} >= {("partitions", "refuse")}
    assert described[topics.AD_DESIRED]["exists"] is False
    table = await run_e2ad(env, "topics", "describe")
    assert f"{topics.CONTROL}: partitions 3, e2ad needs 1" in table
    assert "3 ! 1" in table
