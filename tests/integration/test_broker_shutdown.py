"""The embedded broker keeps every record acknowledged before it was stopped, producers first."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from harness.services import LocalServices
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings

RECORDS = 5_000


def _running(pid: int) -> bool:
    """Alive and not a zombie (the broker is this process's child until it is reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_records_acknowledged_just_before_the_stop_survive_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = LocalServices(tmp_path / "services")
    settings = KafkaSettings(bootstrap_servers=await services.start_kafka())
    await kafka.ensure_topics(settings)
    pid = int(json.loads(services.kafka_state.read_text())["pid"])
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sent = [await producer.send(topics.GRAPH_NOTIFICATIONS, b"%d" % i) for i in range(RECORDS)]
        await asyncio.gather(*sent)  # every one acknowledged (acks=all)
    finally:
        await producer.stop()  # the producer first, as `e2ad up` stops its stages first
    with caplog.at_level(logging.INFO, logger="harness.services"):
        await asyncio.to_thread(services.stop_kafka)
    assert not _running(pid)
    assert "was killed" not in caplog.text  # it exited on its own, its final snapshot written

    restarted = KafkaSettings(bootstrap_servers=await services.start_kafka())
    try:
        reader = kafka.consumer(restarted, group_id=None)
        await reader.start()
        try:
            partition = TopicPartition(topics.GRAPH_NOTIFICATIONS, 0)
            reader.assign([partition])
            await reader.seek_to_beginning(partition)
            values: list[bytes] = []
            while len(values) < RECORDS:
                batch = await reader.getmany(partition, timeout_ms=2000)
                if not batch:
                    break
                values += [record.value for record in batch[partition] if record.value is not None]
        finally:
            await reader.stop()
    finally:
        services.stop_kafka()
    assert values == [b"%d" % i for i in range(RECORDS)]
