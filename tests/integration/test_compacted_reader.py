"""runtime.kafka's one reader of a compacted topic to its end, on the embedded broker."""

from __future__ import annotations

import pytest

from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings

pytestmark = pytest.mark.integration


async def test_a_topic_the_broker_does_not_have_reads_as_empty(kafka_settings: KafkaSettings) -> None:
    assert await kafka.read_latest(kafka_settings, "e2ad.no-such-topic") == {}
    assert await kafka.read_partitions(kafka_settings, {}) == {}


async def test_the_latest_value_of_each_key_and_tombstones_remove_it(kafka_settings: KafkaSettings) -> None:
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        for key, value in ((b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None), (b"c", b"3")):
            await producer.send_and_wait(topics.AD_DESIRED, value, key=key)
    finally:
        await producer.stop()
    assert await kafka.read_latest(kafka_settings, topics.AD_DESIRED) == {b"a": b"2", b"c": b"3"}
