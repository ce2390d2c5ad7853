"""Kafka plumbing shared by every stage: clients built from settings, topic creation, compacted reads.

Only the Kafka protocol is used, so the embedded noida-db broker and Apache Kafka behave alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from e2ad import fetch_pacing
from schemas import topics
from schemas.config import KafkaSettings

log = logging.getLogger(__name__)
fetch_pacing.install()  # every e2ad process that talks to Kafka imports this module, faust's included


def producer(settings: KafkaSettings, **overrides: object) -> AIOKafkaProducer:
    # acks=all: a record the webhook acknowledged to Graph must survive a broker restart.
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "linger_ms": 5,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(settings: KafkaSettings, *topic_names: str, group_id: str | None, **overrides: object) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topic_names, **options)  # type: ignore[arg-type]


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    specs = []
    for name in topics.ALL_TOPICS:
        partitions = settings.partitions if name in topics.KEYED_BY_OBJECT else 1
        configs = {"cleanup.policy": "compact"} if name in topics.COMPACTED else {}
        specs.append(NewTopic(name, partitions, settings.replication_factor, topic_configs=configs))
    return specs


async def ensure_topics(settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Create e2ad's topics that do not exist yet (partition counts of existing ones are kept)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id=settings.client_id)
    await _start_with_retry(admin.start, timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            # another process may create them between list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


async def wait_until_ready(bootstrap_servers: str, *, timeout: float = 30.0) -> None:
    """Wait until the broker answers the Kafka API (a listening port alone is not enough)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await _start_with_retry(admin.start, timeout)
    try:
        await admin.list_topics()
    finally:
        await admin.close()


async def _start_with_retry(start, timeout: float) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await start()
            return
        except KafkaConnectionError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def read_latest(settings: KafkaSettings, topic: str) -> dict[bytes, bytes]:
    """The latest value of every key of a (compacted) topic, read from the start to the end."""
    reader = consumer(settings, group_id=None)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not partitions:
            return {}
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        end = await reader.end_offsets(partitions)
        latest: dict[bytes, bytes] = {}
        while any([await _behind(reader, tp, end[tp]) for tp in partitions]):
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        latest.pop(record.key, None)
                    else:
                        latest[record.key] = record.value
        return latest
    finally:
        await reader.stop()


async def _behind(reader: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    return await reader.position(tp) < end
