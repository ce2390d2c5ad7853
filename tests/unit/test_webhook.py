"""The webhook's edge cases: handshake, clientState and tenantId, malformed bodies, size limits,
what reaches graph.notifications, Kafka down, and what hostile requests cost in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from ingest.webhook import (
    LIFECYCLE_PATH,
    NOTIFICATIONS_PATH,
    RECORD_MAX_BYTES,
    CountedLog,
    NotificationSink,
    build_app,
)
from schemas.config import KafkaSettings, WebhookSettings
from schemas.notifications import LifecycleEventType
from tests.deliveries import SECRET, SUBSCRIPTION, TENANT, RecordingSink, notification, until_ready, worst_case_body


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest_asyncio.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest_asyncio.fixture
async def client(sink: RecordingSink) -> AsyncIterator[TestClient]:
    settings = WebhookSettings(client_state=SECRET, max_body_bytes=4096)
    async with TestClient(TestServer(build_app(settings, sink, tenant_id=TENANT))) as test_client:
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


async def test_the_client_state_is_not_stored_only_that_it_matched(client: TestClient, sink: RecordingSink) -> None:
    # Also when given a second time under the field's own name, which pydantic would keep as an extra.
    both = notification(**{"client_state": SECRET})
    response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification(), both]})
    assert response.status == 202
    [record] = sink.records
    assert SECRET.encode() not in record
    [batch] = sink.batches
    assert batch.client_state_matched
    assert [n.client_state for n in batch.notifications] == [None, None]
    assert [n.tenant_id for n in batch.notifications] == [TENANT, TENANT]


async def test_records_are_compact(client: TestClient, sink: RecordingSink) -> None:
    lifecycle = {"subscriptionId": SUBSCRIPTION, "clientState": SECRET, "tenantId": TENANT, "lifecycleEvent": "missed"}
    await client.post(LIFECYCLE_PATH, json={"value": [lifecycle]})
    [record] = sink.records
    assert b"null" not in record
    assert json.loads(record)["notifications"] == [
        {"subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "lifecycleEvent": "missed"}
    ]


async def test_wrong_client_state_is_dropped_but_answered_202(client: TestClient, sink: RecordingSink) -> None:
    response = await client.post(
        NOTIFICATIONS_PATH,
        json={"value": [notification("forged"), notification(), notification(client_state=""), notification(None)]},
    )
    assert response.status == 202
    [batch] = sink.batches
    assert len(batch.notifications) == 1  # only the authentic one goes on


async def test_only_forged_notifications_persist_nothing(client: TestClient, sink: RecordingSink) -> None:
    response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification("forged")]})
    assert response.status == 202
    assert sink.records == []


@pytest.mark.parametrize("tenant", ["99999999-2222-3333-4444-555555555555", "", "not-a-guid", None])
async def test_another_tenant_is_dropped_and_counted_like_a_forgery(
    client: TestClient, sink: RecordingSink, tenant: str | None
) -> None:
    mismatches = sample("e2ad_webhook_notifications_total", endpoint="notifications", outcome="tenant_mismatch")
    forged = sample("e2ad_webhook_forged_deliveries_total")
    other = notification(tenantId=tenant)
    response = await client.post(NOTIFICATIONS_PATH, json={"value": [other, notification(tenantId=TENANT.upper())]})
    assert response.status == 202
    [batch] = sink.batches
    assert [n.tenant_id for n in batch.notifications] == [TENANT.upper()]  # a GUID in any case is the tenant
    assert sample("e2ad_webhook_forged_deliveries_total") == forged + 1
    assert (
        sample("e2ad_webhook_notifications_total", endpoint="notifications", outcome="tenant_mismatch")
        == mismatches + 1
    )


async def test_a_tenant_named_by_domain_cannot_be_checked_and_is_not(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WebhookSettings(client_state=SECRET)
    app = build_app(settings, sink, tenant_id="contoso.onmicrosoft.com")
    assert "not checked" in caplog.text
    async with TestClient(TestServer(app)) as client:
        response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
        assert response.status == 202
        assert len(sink.batches) == 1


async def test_lifecycle_event_is_parsed(client: TestClient, sink: RecordingSink) -> None:
    lifecycle = notification(lifecycleEvent="reauthorizationRequired")
    del lifecycle["changeType"], lifecycle["resourceData"]
    response = await client.post(LIFECYCLE_PATH, json={"value": [lifecycle]})
    assert response.status == 202
    assert sink.batches[0].notifications[0].lifecycle_event == LifecycleEventType.reauthorization_required


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        (b'[{"value": []}]', "Input should be an object"),
        (b'{"value": {}}', "value: Input should be a valid array"),
        (b'{"value": ["\xff"]}', "Invalid JSON"),
        (b'{"value": [{"subscriptionId": "' + "é".encode("latin-1") + b'"}]}', "Invalid JSON"),
        (b'{"value": [{"subscriptionId": "\\ud800"}]}', "Invalid JSON"),
        (b'{"value": [{"subscriptionId": "a", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}]}", "recursion limit"),
        (json.dumps({"values": []}).encode(), "value: Field required"),
        (json.dumps({"value": [{"changeType": "updated"}]}).encode(), "value[0].subscriptionId: Field required"),
    ],
)
async def test_malformed_body_is_400_with_the_reason(
    client: TestClient, sink: RecordingSink, body: bytes, reason: str
) -> None:
    response = await client.post(NOTIFICATIONS_PATH, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert reason in (await response.json())["error"]
    assert sink.records == []


async def test_oversized_body_is_refused(client: TestClient, sink: RecordingSink) -> None:
    many = {"value": [notification() for _ in range(20)]}
    response = await client.post(NOTIFICATIONS_PATH, json=many)
    assert response.status == 413
    assert sink.records == []


async def test_a_gzip_bomb_is_refused_fast(client: TestClient, sink: RecordingSink) -> None:
    gzipped = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    spaces = b" " * 10_000_000
    bomb = gzipped.compress(b'{"value": [') + b"".join(gzipped.compress(spaces) for _ in range(30))
    bomb += gzipped.compress(b"]}") + gzipped.flush()  # 300 MB of JSON in about 1.3 MB
    started = time.monotonic()
    response = await client.post(NOTIFICATIONS_PATH, data=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    assert time.monotonic() - started < 2.0
    assert sink.records == []


async def test_a_body_that_does_not_decompress_is_400_without_a_traceback(
    client: TestClient, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.post(NOTIFICATIONS_PATH, data=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert response.status == 400
    assert sink.records == []
    # aiohttp drains the body after the reply, and meets the error again: closing the server waits
    # for its request handlers, the drain included.
    await client.close()
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("max_body", [1_048_576, 4 * 1_048_576])
async def test_every_delivery_under_the_body_limit_fits_in_records_kafka_takes(max_body: int) -> None:
    body = worst_case_body(max_body)
    sink = RecordingSink()
    settings = WebhookSettings(client_state="s", max_body_bytes=max_body)
    async with TestClient(TestServer(build_app(settings, sink, tenant_id=TENANT))) as client:
        response = await client.post(NOTIFICATIONS_PATH, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 202
    assert len(body) <= max_body
    assert sum(map(len, sink.records)) > 3.5 * len(body)  # re-encoded, the delivery is 3.5 times as large
    assert max(len(record) for record in sink.records) <= RECORD_MAX_BYTES
    assert sum(len(batch.notifications) for batch in sink.batches) == body.count(b"subscriptionId")


async def test_a_notification_too_large_for_a_record_is_refused_not_accepted(sink: RecordingSink) -> None:
    huge = notification(resource="Groups/" + "g" * (RECORD_MAX_BYTES + 10))
    settings = WebhookSettings(client_state=SECRET, max_body_bytes=2 * RECORD_MAX_BYTES)
    async with TestClient(TestServer(build_app(settings, sink, tenant_id=TENANT))) as client:
        response = await client.post(NOTIFICATIONS_PATH, json={"value": [huge]})
    assert response.status == 413
    assert sink.records == []


async def test_kafka_unreachable_answers_503_so_graph_retries() -> None:
    settings = WebhookSettings(client_state=SECRET)
    sink = NotificationSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    async with TestClient(TestServer(build_app(settings, sink))) as client:
        response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
        assert response.status == 503
        assert "retry" in (await response.json())["error"]
        assert (await client.get("/healthz")).status == 503


async def test_a_broker_that_never_answers_delays_no_delivery() -> None:
    """A broker that accepts connections and answers nothing (one that is starting): each delivery
    is refused at once instead of waiting on the producer's start, and /healthz says not ready."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = NotificationSink(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
    try:
        async with TestClient(TestServer(build_app(WebhookSettings(client_state=SECRET), sink))) as client:

            async def deliver() -> tuple[int, float]:
                started = time.monotonic()
                response = await client.post(NOTIFICATIONS_PATH, json={"value": [notification()]})
                return response.status, time.monotonic() - started

            replies = await asyncio.gather(*(deliver() for _ in range(10)))
            assert {status for status, _ in replies} == {503}
            assert max(seconds for _, seconds in replies) < 1.0
            assert (await client.get("/healthz")).status == 503
    finally:
        for writer in held:
            writer.close()
        server.close()


class StuckProducer:
    """A producer that started and whose sends are never acknowledged (a broker that hangs); its
    buffer holds one record, so a second send waits for room, as aiokafka's does."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[object]] = []

    async def start(self) -> None:
        pass

    async def send(self, *_: object, **__: object) -> asyncio.Future[object]:
        if self.acks:
            await asyncio.Event().wait()
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize("records", [1, 2])
async def test_a_slow_send_is_refused_within_a_second(monkeypatch: pytest.MonkeyPatch, records: int) -> None:
    producer = StuckProducer()
    monkeypatch.setattr("ingest.webhook.kafka.producer", lambda *_, **__: producer)
    sink = NotificationSink(KafkaSettings())
    settings = WebhookSettings(client_state=SECRET, max_body_bytes=2 * RECORD_MAX_BYTES)
    large = "Groups/" + "g" * (RECORD_MAX_BYTES // 2)  # two of them need two records
    delivery = {"value": [notification(resource=large) for _ in range(records)]}
    async with TestClient(TestServer(build_app(settings, sink))) as client:
        await until_ready(client)
        started = time.monotonic()
        replies = await asyncio.gather(*(client.post(NOTIFICATIONS_PATH, json=delivery) for _ in range(5)))
        assert [r.status for r in replies] == [503] * 5
        assert time.monotonic() - started < 1.5
    assert producer.acks and all(ack.cancelled() for ack in producer.acks)  # no send left waiting


async def test_forged_deliveries_are_counted_not_logged_one_by_one(
    client: TestClient, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    forged = sample("e2ad_webhook_forged_deliveries_total")
    caplog.set_level(logging.INFO)
    for _ in range(50):
        assert (await client.post(NOTIFICATIONS_PATH, json={"value": [notification("forged")]})).status == 202
    assert sample("e2ad_webhook_forged_deliveries_total") == forged + 50
    assert len([r for r in caplog.records if "forged" in r.getMessage()]) <= 1
    assert sink.records == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (NOTIFICATIONS_PATH + "?x=" + "a" * 9000, {}),
        (NOTIFICATIONS_PATH, {"X-Long": "a" * 9000}),
        (NOTIFICATIONS_PATH, {"X-Many-" + str(i): "a" * 100 for i in range(200)}),
    ],
)
async def test_an_oversized_url_or_header_is_refused_without_a_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str]
) -> None:
    malformed = sample("e2ad_webhook_malformed_requests_total")
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        response = await client.post(path, headers=headers, data=b"{}")
        assert response.status in {400, 413, 414, 431}
    assert sample("e2ad_webhook_malformed_requests_total") == malformed + 3
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) <= 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", NOTIFICATIONS_PATH, {"json": {"value": [notification()]}}),
        ("POST", NOTIFICATIONS_PATH + "?validationToken=%3Cscript%3E", {}),
        ("POST", NOTIFICATIONS_PATH, {"data": b"<html>"}),
        ("POST", NOTIFICATIONS_PATH, {"data": b"x" * 5000}),
        ("GET", NOTIFICATIONS_PATH, {}),
        ("GET", "/nowhere", {}),
        ("GET", "/healthz", {}),
        ("GET", "/metrics", {}),
    ],
)
async def test_no_reply_lets_a_browser_sniff_its_type(
    client: TestClient, method: str, path: str, kwargs: dict[str, object]
) -> None:
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_counted_log_writes_one_line_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    counted = CountedLog(logging.getLogger("t"), logging.WARNING, "%d events, the latest %s", clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    counted.note(detail="a")
    for _ in range(5):
        now[0] += 10
        counted.note(detail="b")
    now[0] += 10
    counted.note(detail="c")  # 60 s after the first line
    counted.note(2, detail="d")
    counted.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "1 events, the latest a",
        "6 events, the latest c",
        "2 events, the latest d",
    ]
