"""The Graph webhook: answer the validation handshake, check clientState and tenantId, persist, reply 202.

Graph waits at most 3 s for a reply and throttles endpoints that answer slowly, so this handler
only validates and persists: the accepted notifications go to graph.notifications (Kafka ack)
and the reply follows. Reading Graph is the graph worker's job, on another event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from ingest.metrics import RECORDS
from runtime import kafka
from runtime.errors import error_lines
from runtime.outages import kafka_not_reachable
from runtime.web import Health, ReadinessCheck, add_health_routes, readiness
from schemas import topics
from schemas.config import KafkaSettings, WebhookSettings
from schemas.notifications import ChangeNotification, ChangeNotificationCollection, NotificationBatch

log = logging.getLogger(__name__)
# aiohttp's request handler logs here: requests it refuses before any handler runs are counted, not traced.
http_log = logging.getLogger(__name__ + ".http")

NOTIFICATIONS_PATH = "/graph/notifications"
LIFECYCLE_PATH = "/graph/lifecycle"
# The longest a delivery waits for Kafka before it is refused with 503 (Graph redelivers): well
# under Graph's 3 s (2.9 s counts as slow), and no delivery queues behind a slow send for longer.
PERSIST_TIMEOUT_SECONDS = 1.0
# The largest graph.notifications value: aiokafka refuses a record over max_request_size (1 MiB by
# default, counting the record batch's own ~70 bytes) and Apache Kafka one over message.max.bytes
# (1 MiB + 12 by default), so a delivery is split into records of at most this size.
RECORD_MAX_BYTES = 1_000_000
# Forged deliveries and malformed requests are counted in metrics and logged once per interval.
REPORT_INTERVAL_SECONDS = 60.0
# A broker that accepts connections but does not answer yet must not hold the start-up forever.
PRODUCER_START_TIMEOUT_SECONDS = 10.0
PRODUCER_RETRY_MAX_SECONDS = 5.0

NOTIFICATIONS = Counter("e2ad_webhook_notifications", "Notifications received by the webhook", ["endpoint", "outcome"])
REQUESTS = Counter("e2ad_webhook_requests", "Webhook requests by reply status", ["endpoint", "status"])
FORGED_DELIVERIES = Counter(
    "e2ad_webhook_forged_deliveries", "Deliveries with notifications dropped for a wrong clientState or tenantId"
)
MALFORMED_REQUESTS = Counter(
    "e2ad_webhook_malformed_requests", "Requests refused before the webhook ran (URL or headers too long, bad syntax)"
)
REPLY_SECONDS = Histogram("e2ad_webhook_reply_seconds", "Time from request to reply", ["endpoint"])


class SinkNotReady(Exception):
    """The producer has not started yet: the delivery is refused so that Graph redelivers it."""


class RecordTooLarge(ValueError):
    """One notification alone does not fit in a graph.notifications record."""


class RecordSink(Protocol):
    """Where accepted deliveries go: graph.notifications in production, a list in tests."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def persist(self, records: Sequence[bytes]) -> None: ...

    async def close(self) -> None: ...


class NotificationSink:
    """Persists the records of accepted deliveries to graph.notifications.

    The producer starts in the background when the webhook starts, retrying until Kafka answers;
    until then deliveries are refused at once (503) and /healthz answers 503. A delivery never
    waits on another one: there is no lock, and every persist is bounded by PERSIST_TIMEOUT_SECONDS.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.create_task(self._start_producer(), name="graph.notifications producer")

    async def _start_producer(self) -> None:
        failures = CountedLog(log, logging.WARNING, "graph.notifications producer not started (%d attempt(s)): %s")
        delay = 0.2
        while True:
            producer = kafka.producer(self._settings, request_timeout_ms=int(PERSIST_TIMEOUT_SECONDS * 1000))
            try:
                await asyncio.wait_for(producer.start(), PRODUCER_START_TIMEOUT_SECONDS)
            except (KafkaError, OSError, TimeoutError) as exc:
                await producer.stop()
                failures.note(detail=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, PRODUCER_RETRY_MAX_SECONDS)
                continue
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            log.info("the graph.notifications producer is ready")
            return

    async def persist(self, records: Sequence[bytes]) -> None:
        producer = self._producer
        if producer is None:
            raise SinkNotReady("the graph.notifications producer has not started yet")

        async def send_all() -> None:
            acks: list[asyncio.Future[object]] = []
            try:
                for record in records:  # send() itself waits while the producer's buffer is full
                    acks.append(await producer.send(topics.GRAPH_NOTIFICATIONS, record))
                await asyncio.gather(*acks)
            finally:
                # A refused delivery leaves no ack behind whose failure nobody would retrieve.
                for ack in acks:
                    ack.cancel()

        await asyncio.wait_for(send_all(), PERSIST_TIMEOUT_SECONDS)
        RECORDS.labels(topics.GRAPH_NOTIFICATIONS, "out").inc(len(records))

    async def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
            self._starting = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class CountedLog:
    """A log line with a count, written at most once per interval instead of once per event.

    The first event is logged at once; later ones are added up and logged with the next event
    after the interval, or by flush().
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        message: str,  # "%d" for the count, then "%s" for the detail of the latest event
        *,
        interval: float = REPORT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._level, self._message = logger, level, message
        self._interval, self._clock = interval, clock
        self._pending = 0
        self._detail = ""
        self._next_at = float("-inf")

    def note(self, count: int = 1, detail: str = "") -> None:
        self._pending += count
        self._detail = detail
        if self._clock() >= self._next_at:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._logger.log(self._level, self._message, self._pending, self._detail)
            self._pending = 0
            self._next_at = self._clock() + self._interval


class _MalformedRequests(logging.Filter):
    """Turns aiohttp's traceback for a request it could not parse (URL or header over 8 KiB, bad
    syntax; a body that does not decode, met again when aiohttp drains it after the reply) into a
    count: anyone can send those, and a traceback each floods the log. Exceptions of the handler
    itself still pass, with their traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._log = CountedLog(log, logging.WARNING, "refused %d malformed HTTP request(s), the latest: %s")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            return True
        MALFORMED_REQUESTS.inc()
        self._log.note(detail=ascii(str(exc))[:200])  # the request's own bytes: escaped, cut short
        return False


http_log.addFilter(_MalformedRequests())


class _Forgeries:
    """Counts and reports notifications dropped as forged (wrong clientState or tenantId)."""

    def __init__(self) -> None:
        self._log = CountedLog(
            log, logging.WARNING, "dropped %d forged notification(s) (wrong clientState or tenantId), the latest: %s"
        )

    def note(self, endpoint: str, client_state_mismatch: int, tenant_mismatch: int) -> None:
        NOTIFICATIONS.labels(endpoint, "client_state_mismatch").inc(client_state_mismatch)
        NOTIFICATIONS.labels(endpoint, "tenant_mismatch").inc(tenant_mismatch)
        FORGED_DELIVERIES.inc()
        reason = "wrong clientState" if client_state_mismatch else "wrong tenantId"
        self._log.note(client_state_mismatch + tenant_mismatch, f"{endpoint}, {reason}")

    def flush(self) -> None:
        self._log.flush()


def build_app(
    webhook: WebhookSettings,
    sink: RecordSink,
    *,
    tenant_id: str | None = None,
    ready: Sequence[ReadinessCheck] = (),
) -> web.Application:
    """The webhook app; with tenant_id (graph.tenant_id), notifications of other tenants are dropped.

    /readyz adds `ready` (the graph worker's checks, in `e2ad ingest`) to the webhook's own.
    """
    # handler_args reach aiohttp's request handler however the app is run (e2ad ingest, tests). No
    # access log: a line per request would let anyone fill the disk; the metrics count the replies.
    app = web.Application(client_max_size=webhook.max_body_bytes, handler_args={"logger": http_log, "access_log": None})
    expected = webhook.client_state.get_secret_value().encode() if webhook.client_state else None
    forgeries = _Forgeries()
    authentic = _authenticity(expected, _tenant(tenant_id))
    for endpoint, path in (("notifications", NOTIFICATIONS_PATH), ("lifecycle", LIFECYCLE_PATH)):
        app.router.add_post(path, _handler(endpoint, authentic, forgeries, webhook.max_body_bytes, sink))
    add_health_routes(app, _health(sink), readiness([_producer_started(sink), kafka_not_reachable, *ready]))
    app.on_response_prepare.append(_security_headers)

    async def start_sink(_: web.Application) -> None:
        await sink.start()

    async def close_sink(_: web.Application) -> None:
        forgeries.flush()
        await sink.close()

    app.on_startup.append(start_sink)
    app.on_cleanup.append(close_sink)
    return app


def _tenant(tenant_id: str | None) -> uuid.UUID | None:
    """The tenant every notification must name, or None when it cannot be checked.

    Graph's tenantId is the tenant's GUID; graph.tenant_id may also be a domain name, which
    notifications never carry: comparing with it would drop every delivery."""
    if tenant_id is None:
        return None
    try:
        return uuid.UUID(tenant_id)
    except ValueError:
        log.warning("graph.tenant_id %r is not a GUID: the tenantId of notifications is not checked", tenant_id)
        return None


def _authenticity(expected_client_state: bytes | None, tenant: uuid.UUID | None) -> Callable[[ChangeNotification], str]:
    """A check that names why a notification is not authentic ("" when it is)."""

    def check(notification: ChangeNotification) -> str:
        state = notification.client_state
        if expected_client_state is None or state is None:
            return "client_state_mismatch"
        if not hmac.compare_digest(state.encode(), expected_client_state):
            return "client_state_mismatch"
        if tenant is not None and not _same_tenant(notification.tenant_id, tenant):
            return "tenant_mismatch"
        return ""

    return check


def _same_tenant(tenant_id: str | None, expected: uuid.UUID) -> bool:
    try:
        return tenant_id is not None and uuid.UUID(tenant_id) == expected
    except ValueError:
        return False


def _handler(
    endpoint: str,
    authentic: Callable[[ChangeNotification], str],
    forgeries: _Forgeries,
    max_body: int,
    sink: RecordSink,
) -> Callable[[web.Request], Awaitable[web.Response]]:
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
        except web.RequestPayloadError as exc:  # a body aiohttp cannot decode (bad gzip, chunking…)
            return _problem(400, f"unreadable request body: {exc}")
        try:
            collection = ChangeNotificationCollection.model_validate_json(body)
        except ValidationError as exc:
            return _problem(400, "not a change notification collection: " + error_lines(exc)[0])
        verdicts = [authentic(n) for n in collection.value]
        accepted = [n for n, verdict in zip(collection.value, verdicts, strict=True) if not verdict]
        if len(accepted) < len(verdicts):
            forgeries.note(endpoint, verdicts.count("client_state_mismatch"), verdicts.count("tenant_mismatch"))
        if accepted:
            try:
                records = delivery_records(endpoint, accepted)
            except RecordTooLarge as exc:
                NOTIFICATIONS.labels(endpoint, "too_large").inc(len(accepted))
                return _problem(413, str(exc))
            try:
                await sink.persist(records)
            except (SinkNotReady, KafkaError, TimeoutError, OSError) as exc:
                NOTIFICATIONS.labels(endpoint, "not_persisted").inc(len(accepted))
                log.error("could not persist %d notification(s), Graph will retry: %r", len(accepted), exc)
                return _problem(503, "notifications could not be persisted; retry later")
            NOTIFICATIONS.labels(endpoint, "accepted").inc(len(accepted))
        # 202 also when everything was dropped: a forger learns nothing, and Graph sees success.
        return web.Response(status=202)

    return handle


def delivery_records(
    endpoint: str, accepted: Sequence[ChangeNotification], *, max_bytes: int = RECORD_MAX_BYTES
) -> list[bytes]:
    """The graph.notifications records of one delivery's accepted notifications.

    Each record is compact (no nulls, no clientState: ChangeNotification never serialises it) and
    at most max_bytes long, so that a delivery of any size the webhook accepts can be persisted.
    """
    received_at = dt.datetime.now(dt.UTC)

    def encoded(notifications: list[ChangeNotification]) -> bytes:
        batch = NotificationBatch(
            received_at=received_at, endpoint=endpoint, client_state_matched=True, notifications=notifications
        )
        return topics.encode(batch, exclude_none=True)

    # Compact JSON joins list items with a comma, so a record's size is the empty envelope's plus
    # its notifications' own sizes plus the commas between them.
    envelope = len(encoded([]))
    records: list[bytes] = []
    chunk: list[ChangeNotification] = []
    size = envelope
    for notification in accepted:
        notification_size = len(topics.encode(notification, exclude_none=True))
        if envelope + notification_size > max_bytes:
            raise RecordTooLarge(f"a notification of {notification_size} bytes does not fit in a record")
        added = notification_size + (1 if chunk else 0)
        if size + added > max_bytes:
            records.append(encoded(chunk))
            chunk, size, added = [], envelope, notification_size
        chunk.append(notification)
        size += added
    records.append(encoded(chunk))
    return records


def _problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _security_headers(_: web.Request, response: web.StreamResponse) -> None:
    # No client may guess a type other than the one declared (error bodies echo request input).
    response.headers["X-Content-Type-Options"] = "nosniff"


def _health(sink: RecordSink) -> Health:
    def health() -> tuple[bool, dict[str, object]]:
        # Healthy only once deliveries can be persisted: until then each one would be refused.
        if (reason := _producer_started(sink)()) is not None:
            return False, {"status": "starting", "reason": reason}
        return True, {"status": "ok"}

    return health


def _producer_started(sink: RecordSink) -> ReadinessCheck:
    return lambda: None if sink.ready else "Kafka producer not started"
