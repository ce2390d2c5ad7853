"""The webhook's edge cases: handshake, clientState, malformed bodies, size limit, Kafka down."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from ingest.webhook import LIFECYCLE_PATH, NOTIFICATIONS_PATH, NotificationSink, build_app
from schemas.config import KafkaSettings, WebhookSettings
from schemas.notifications import LifecycleEventType, NotificationBatch

SECRET = "s3cret-client-state"
SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"


class RecordingSink:
    def __init__(self) -> None:
        self.batches: list[NotificationBatch] = []

    async def persist(self, batch: NotificationBatch) -> None:
        self.batches.append(batch)

    async def close(self) -> None:
        pass


def notification(client_state: str = SECRET, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "subscriptionId": SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2026-12-24T17:42:30.1669210Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": "Groups/0f6a3b5c-0000-4000-8000-000000000001",
        "tenantId": "11111111-2222-3333-4444-555555555555",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Group",
            "@odata.id": "Groups/0f6a3b5c-0000-4000-8000-000000000001",
            "id": "0f6a3b5c-0000-4000-8000-000000000001",
            "organizationId": "11111111-2222-3333-4444-555555555555",
        },
    }
    body.update(extra)
    return body


@pytest_asyncio.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest_asyncio.fixture
async def client(sink: RecordingSink) -> AsyncIterator[TestClient]:
    settings = WebhookSettings(client_state=SECRET, max_body_bytes=4096)
    async with TestClient(TestServer(build_app(settings, sink))) as test_client:  # type: ignore[arg-type]
        yield test_client


@pytest.mark.parametrize("path", [NOTIFICATIONS_PATH, LIFECYCLE_PATH])
async def test_handshake_echoes_the_decoded_token_as_plain_text(client: TestClient, path: str) -> None:
    response = await client.post(f"{path}?validationToken=Validation%3A%20Testing%20client%20%2B%20%26", data="")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "Validation: Testing client + &"


async def test_authentic_notification_is_persisted_then_acknowledged(client: TestClient, sink: RecordingSink) -> None:
    response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
    assert response.status == 202
    [batch] = sink.batches
    assert batch.endpoint == "notifications"
    assert [n.resource_data.id for n in batch.notifications if n.resource_data] == [
        "0f6a3b5c-0000-4000-8000-000000000001"
    ]


async def test_wrong_client_state_is_dropped_but_answered_202(client: TestClient, sink: RecordingSink) -> None:
    response = await client.post(
        NOTIFICATIONS_PATH, json={"value": [notification("forged"), notification(), notification(client_state="")]}
    )
    assert response.status == 202
    [batch] = sink.batches
    assert len(batch.notifications) == 1  # only the authentic one goes on


async def test_only_forged_notifications_persist_nothing(client: TestClient, sink: RecordingSink) -> None:
    response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification("forged")]})
    assert response.status == 202
    assert sink.batches == []


async def test_lifecycle_event_is_parsed(client: TestClient, sink: RecordingSink) -> None:
    lifecycle = notification(lifecycleEvent="reauthorizationRequired")
    del lifecycle["changeType"], lifecycle["resourceData"]
    response = await client.post(LIFECYCLE_PATH, json={"value": [lifecycle]})
    assert response.status == 202
    assert sink.batches[0].notifications[0].lifecycle_event == LifecycleEventType.reauthorization_required


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "Invalid JSON"),
        (json.dumps({"values": []}), "value: Field required"),
        (json.dumps({"value": [{"changeType": "updated"}]}), "value.0.subscriptionId: Field required"),
    ],
)
async def test_malformed_body_is_400_with_the_reason(
    client: TestClient, sink: RecordingSink, body: str, reason: str
) -> None:
    response = await client.post(NOTIFICATIONS_PATH, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert reason in (await response.json())["error"]
    assert sink.batches == []


async def test_oversized_body_is_refused(client: TestClient, sink: RecordingSink) -> None:
    many = {"value": [notification() for _ in range(20)]}
    response = await client.post(NOTIFICATIONS_PATH, json=many)
    assert response.status == 413
    assert sink.batches == []


async def test_kafka_unreachable_answers_503_so_graph_retries() -> None:
    settings = WebhookSettings(client_state=SECRET)
    sink = NotificationSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    async with TestClient(TestServer(build_app(settings, sink))) as client:
        response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
        assert response.status == 503
        assert "retry" in (await response.json())["error"]
