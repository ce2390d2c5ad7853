"""The Graph webhook: answer the validation handshake, check clientState, persist, reply 202.

Graph waits at most 3 s for a reply and throttles endpoints that answer slowly, so this handler
only validates and persists: the accepted notifications go to graph.notifications (Kafka ack)
and the reply follows. Reading Graph is the graph worker's job, on another event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import ValidationError

from e2ad import kafka
from schemas import topics
from schemas.config import KafkaSettings, WebhookSettings
from schemas.notifications import ChangeNotification, ChangeNotificationCollection, NotificationBatch

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/graph/notifications"
LIFECYCLE_PATH = "/graph/lifecycle"
PERSIST_TIMEOUT_SECONDS = 2.0  # leaves headroom under Graph's 3 s (2.9 s counts as slow)

NOTIFICATIONS = Counter("e2ad_webhook_notifications", "Notifications received by the webhook", ["endpoint", "outcome"])
REQUESTS = Counter("e2ad_webhook_requests", "Webhook requests by reply status", ["endpoint", "status"])
REPLY_SECONDS = Histogram("e2ad_webhook_reply_seconds", "Time from request to reply", ["endpoint"])


class NotificationSink:
    """Persists accepted batches to graph.notifications; starts its producer on first use so the
    webhook can answer 503 (and Graph retry) while Kafka is unreachable instead of refusing to start."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer = None
        self._lock = asyncio.Lock()

    async def persist(self, batch: NotificationBatch) -> None:
        producer = await self._started()
        await asyncio.wait_for(
            producer.send_and_wait(topics.GRAPH_NOTIFICATIONS, topics.encode(batch)), PERSIST_TIMEOUT_SECONDS
        )

    async def _started(self):  # type: ignore[no-untyped-def]
        async with self._lock:
            if self._producer is None:
                producer = kafka.producer(self._settings, request_timeout_ms=int(PERSIST_TIMEOUT_SECONDS * 1000))
                try:
                    await asyncio.wait_for(producer.start(), PERSIST_TIMEOUT_SECONDS)
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build_app(webhook: WebhookSettings, sink: NotificationSink) -> web.Application:
    app = web.Application(client_max_size=webhook.max_body_bytes)
    expected = webhook.client_state.get_secret_value().encode() if webhook.client_state else None
    for endpoint, path in (("notifications", NOTIFICATIONS_PATH), ("lifecycle", LIFECYCLE_PATH)):
        app.router.add_post(path, _handler(endpoint, expected, webhook.max_body_bytes, sink))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)

    async def close_sink(_: web.Application) -> None:
        await sink.close()

    app.on_cleanup.append(close_sink)
    return app


def _handler(endpoint: str, expected_client_state: bytes | None, max_body: int, sink: NotificationSink):  # type: ignore[no-untyped-def]
    async def handle(request: web.Request) -> web.Response:
        with REPLY_SECONDS.labels(endpoint).time():
            response = await _handle(request)
        REQUESTS.labels(endpoint, str(response.status)).inc()
        return response

    async def _handle(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            # aiohttp has URL-decoded the token; Graph wants it back decoded, as text/plain.
            return web.Response(text=token, content_type="text/plain")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, f"request body larger than {max_body} bytes")
        try:
            collection = ChangeNotificationCollection.model_validate_json(body)
        except ValidationError as exc:
            return _problem(400, "not a change notification collection: " + _first_error(exc))
        accepted = [n for n in collection.value if _authentic(n, expected_client_state)]
        forged = len(collection.value) - len(accepted)
        if forged:
            NOTIFICATIONS.labels(endpoint, "client_state_mismatch").inc(forged)
            log.warning("dropped %d %s notification(s) with a wrong clientState", forged, endpoint)
        if accepted:
            batch = NotificationBatch(received_at=dt.datetime.now(dt.UTC), endpoint=endpoint, notifications=accepted)
            try:
                await sink.persist(batch)
            except (KafkaError, TimeoutError, OSError) as exc:
                NOTIFICATIONS.labels(endpoint, "not_persisted").inc(len(accepted))
                log.error("could not persist %d notification(s), Graph will retry: %r", len(accepted), exc)
                return _problem(503, "notifications could not be persisted; retry later")
            NOTIFICATIONS.labels(endpoint, "accepted").inc(len(accepted))
        # 202 also when everything was dropped: a forger learns nothing, and Graph sees success.
        return web.Response(status=202)

    return handle


def _authentic(notification: ChangeNotification, expected: bytes | None) -> bool:
    if expected is None or notification.client_state is None:
        return False
    return hmac.compare_digest(notification.client_state.encode(), expected)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(_: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
