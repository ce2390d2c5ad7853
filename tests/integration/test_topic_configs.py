"""On the real embedded broker: e2ad's topics carry the cleanup of kafka.topic_configs, also when they existed."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings


async def _described(client: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    responses = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    return {name: {e[0]: e[1] for e in entries} for r in responses for _, _, _, name, entries in r.resources}


async def test_created_topics_carry_their_cleanup(kafka_settings: KafkaSettings) -> None:
    # kafka_settings created every topic with ensure_topics.
    client = kafka.admin(kafka_settings)
    await client.start()
    try:
        described = await _described(client, list(topics.ALL_TOPICS))
    finally:
        await client.close()
    for name, wanted in kafka.topic_configs(kafka_settings).items():
        assert {key: described[name][key] for key in wanted} == wanted, name


async def test_existing_topics_are_aligned_and_keep_other_settings(kafka_settings: KafkaSettings) -> None:
    client = kafka.admin(kafka_settings)
    await client.start()
    try:
        # As an earlier e2ad left them: no retention; plus an operator's own setting on one topic.
        stale = {"cleanup.policy": "delete", "retention.ms": "604800000", "max.message.bytes": "2000000"}
        await client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.AD_RESULTS, stale)])
        longer = kafka_settings.model_copy(update={"results_retention_days": 90})
        await kafka.ensure_topics(longer)
        described = await _described(client, [topics.AD_RESULTS, topics.AD_DEAD_LETTER])
    finally:
        await client.close()
    for name in (topics.AD_RESULTS, topics.AD_DEAD_LETTER):
        assert described[name]["retention.ms"] == str(90 * kafka.DAY_MS), name
        assert described[name]["segment.ms"] == str(kafka.DAY_MS), name
    assert described[topics.AD_RESULTS]["max.message.bytes"] == "2000000"
