"""The webhook with its real sink on a real broker: what it answers 202 is on graph.notifications,
readable by the graph worker's consumer, without the secret."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.webhook import NOTIFICATIONS_PATH, RECORD_MAX_BYTES, NotificationSink, build_app
from schemas import topics
from schemas.config import KafkaSettings, WebhookSettings
from schemas.notifications import NotificationBatch
from tests.deliveries import SECRET, TENANT, notification, until_ready, worst_case_body
from tests.integration.stages import TopicWatcher

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def webhook(kafka_settings: KafkaSettings, client_state: str, tenant_id: str | None) -> AsyncIterator[TestClient]:
    """The webhook on the default body limit (1 MiB), its producer started."""
    app = build_app(WebhookSettings(client_state=client_state), NotificationSink(kafka_settings), tenant_id=tenant_id)
    async with TestClient(TestServer(app)) as client:
        await until_ready(client)
        yield client


async def persisted(kafka_settings: KafkaSettings, count: int) -> list[bytes]:
    """The records on graph.notifications once they hold count notifications, read as the graph
    worker reads them (kafka.consumer's defaults)."""
    records: list[bytes] = []
    async with TopicWatcher(kafka_settings, topics.GRAPH_NOTIFICATIONS, lambda value: value) as watcher:

        def enough(record: bytes) -> bool:
            records.append(record)
            return sum(len(topics.decode(NotificationBatch, r).notifications) for r in records) >= count

        await watcher.wait_for(enough, timeout=30)
    return records


async def test_the_producer_starts_with_the_webhook_and_the_first_delivery_is_fast(
    kafka_settings: KafkaSettings,
) -> None:
    async with webhook(kafka_settings, SECRET, TENANT) as client:
        started = time.monotonic()
        response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
        assert response.status == 202
        assert time.monotonic() - started < 1.0
    [record] = await persisted(kafka_settings, 1)
    assert SECRET.encode() not in record
    assert topics.decode(NotificationBatch, record).client_state_matched


async def test_a_delivery_of_13000_notifications_is_persisted(kafka_settings: KafkaSettings) -> None:
    """Issue 11's finding 3: 936 KB that re-encoded to 3.07 MB, refused by the producer, 503 forever."""
    small = [{"subscriptionId": str(i), "clientState": "client-1", "changeType": "updated"} for i in range(13_000)]
    body = json.dumps({"value": small}, separators=(",", ":")).encode()
    assert 900_000 < len(body) < 1_048_576
    async with webhook(kafka_settings, "client-1", None) as client:
        response = await client.post(NOTIFICATIONS_PATH, data=body, headers={"Content-Type": "application/json"})
        assert response.status == 202
    records = await persisted(kafka_settings, 13_000)
    ids = [n.subscription_id for r in records for n in topics.decode(NotificationBatch, r).notifications]
    assert ids == [str(i) for i in range(13_000)]


async def test_the_worst_body_under_the_limit_is_persisted_in_records_kafka_takes(
    kafka_settings: KafkaSettings,
) -> None:
    body = worst_case_body(1_048_576)
    async with webhook(kafka_settings, "s", TENANT) as client:
        response = await client.post(NOTIFICATIONS_PATH, data=body, headers={"Content-Type": "application/json"})
        assert response.status == 202
    records = await persisted(kafka_settings, body.count(b"subscriptionId"))
    assert len(records) > 1
    assert max(map(len, records)) <= RECORD_MAX_BYTES
