"""`e2ad up`'s catch-up figures read from a real broker: records on the topics, offsets the stages committed."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from harness.embedded import WRITERS_GROUP, Progress, _progress
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings

pytestmark = pytest.mark.integration


async def test_progress_counts_records_and_what_the_writers_committed(kafka_settings: KafkaSettings) -> None:
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        for number in range(3):
            await producer.send_and_wait(topics.GRAPH_CHANGES, b"{}", key=f"change-{number}".encode())
        sent = [await producer.send_and_wait(topics.AD_DESIRED, b"{}", key=b"group-1") for _ in range(2)]
    finally:
        await producer.stop()
    assert await _progress(kafka_settings) == Progress(changes=3, consumed_changes=0, desired=2, applied=0)

    committer = kafka.consumer(kafka_settings, group_id=WRITERS_GROUP)
    await committer.start()
    try:
        partition = TopicPartition(topics.AD_DESIRED, sent[0].partition)
        committer.assign([partition])  # a writer that has applied the first of the two
        await committer.commit({partition: OffsetAndMetadata(sent[0].offset + 1, "")})
    finally:
        await committer.stop()
    assert await _progress(kafka_settings) == Progress(changes=3, consumed_changes=0, desired=2, applied=1)
