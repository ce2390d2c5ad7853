"""The webhook under generated input: bodies, headers, query strings and raw request bytes.

Invariants (issue 11): every request gets a clean answer (no 5xx, no exception in the log, no
hang), and only notifications with the right clientState and tenantId reach the sink, all of
them when the delivery is answered 202, none when it is refused, and never with the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.webhook import LIFECYCLE_PATH, NOTIFICATIONS_PATH, RECORD_MAX_BYTES, build_app
from schemas.config import WebhookSettings
from schemas.notifications import NotificationBatch
from tests.deliveries import SECRET, TENANT, RecordingSink

MAX_BODY = 16_384
REPLY_TIMEOUT = 10.0  # a hang is a failure, not a slow test
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


class _Errors(logging.Handler):
    """Every record at ERROR or with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@dataclass
class Webhook:
    loop: asyncio.AbstractEventLoop
    client: TestClient
    sink: RecordingSink
    errors: _Errors

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, REPLY_TIMEOUT))

    def check_clean(self) -> None:
        errors, self.errors.records = self.errors.records, []
        assert errors == [], [r.getMessage() for r in errors]

    def take_persisted(self) -> list[dict[str, Any]]:
        """The notifications persisted since the last call, as JSON, checking each record on the way."""
        records, self.sink.records = self.sink.records, []
        notifications = []
        for record in records:
            assert len(record) <= RECORD_MAX_BYTES
            assert SECRET.encode() not in record
            batch = NotificationBatch.model_validate_json(record)
            assert batch.client_state_matched
            notifications += json.loads(record)["notifications"]
        return notifications


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    """One webhook server for all examples, on a loop of its own (hypothesis drives it synchronously)."""
    loop = asyncio.new_event_loop()
    sink = RecordingSink()
    app = build_app(WebhookSettings(client_state=SECRET, max_body_bytes=MAX_BODY), sink, tenant_id=TENANT)

    async def started() -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        return client

    client = loop.run_until_complete(started())
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        yield Webhook(loop, client, sink, errors)
    finally:
        logging.getLogger().removeHandler(errors)
        loop.run_until_complete(client.close())
        loop.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Mostly what Graph sends, now and then anything: a delivery must parse to reach the checks.
client_states = st.sampled_from([SECRET, SECRET, SECRET, "forged", "", SECRET.upper(), SECRET + " ", SECRET[:-1]])
tenants = st.sampled_from([TENANT, TENANT.upper(), "{" + TENANT + "}", str(uuid.uuid4()), "", "contoso.com"])
plausible = {
    "subscriptionId": st.text(max_size=40),
    "subscriptionExpirationDateTime": st.sampled_from(["2026-12-24T17:42:30.1669210Z", "2026-12-24", "0"]),
    "changeType": st.sampled_from(["updated", "deleted", "created", "other"]),
    "resource": st.text(max_size=40),
    "resourceData": st.fixed_dictionaries({}, optional={"id": st.text(max_size=10), "@odata.type": st.text()}),
    "lifecycleEvent": st.sampled_from(["reauthorizationRequired", "missed", "subscriptionRemoved", "x"]),
    "clientState": client_states,
    "client_state": client_states,
    "tenantId": tenants,
}


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in n draws (integers() favours its bounds, so 0 would come far more often)."""
    return st.integers(0, n - 1).map(lambda i: i == n // 2)


@st.composite
def notifications(draw: st.DrawFn, index: int) -> dict[str, Any]:
    notification: dict[str, Any] = {"subscriptionId": ""}
    for key, values in plausible.items():
        if not draw(one_in(6 if key in ("clientState", "tenantId") else 2)):
            notification[key] = draw(json_values if draw(one_in(10)) else values)
    notification.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    notification["id"] = f"n{index}"  # to tell which ones were persisted
    return notification


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, set[str]]:
    """A body, and the ids of the notifications in it that are authentic."""
    count = draw(st.integers(0, 4))
    value = [draw(notifications(i)) for i in range(count)]
    body: object = {"value": value}
    if draw(one_in(20)):  # now and then not even the collection's shape
        body = draw(json_values)
    return json.dumps(body).encode(), {n["id"] for n in value if _authentic(n)}


def _authentic(notification: dict[str, Any]) -> bool:
    """What the webhook must accept: the secret, under clientState (which wins) or the field's
    own name, and the tenant's GUID in any spelling."""
    state = notification["clientState"] if "clientState" in notification else notification.get("client_state")
    tenant = notification.get("tenantId")
    try:
        return state == SECRET and isinstance(tenant, str) and uuid.UUID(tenant) == uuid.UUID(TENANT)
    except ValueError:
        return False


header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True).filter(
    lambda name: name.lower() not in {"host", "content-length", "transfer-encoding", "content-encoding", "connection"}
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
encodings = st.sampled_from(["identity", "gzip", "deflate", "br", "zstd", "gzip, deflate", "x-unknown", "none"])


def _encode(body: bytes, encoding: str, garbage: bool) -> bytes:
    if garbage:
        return body
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


@FUZZ
@given(
    delivery=deliveries(),
    path=st.sampled_from([NOTIFICATIONS_PATH, LIFECYCLE_PATH]),
    query=st.just([]) | st.lists(st.tuples(st.sampled_from(["validationToken", "x"]) | st.text(max_size=5), st.text())),
    headers=st.dictionaries(header_names, header_values, max_size=5),
    encoding=st.none() | st.none() | encodings,
    garbage=st.booleans(),
)
def test_any_request_gets_a_clean_answer_and_persists_only_authentic_notifications(
    webhook: Webhook,
    delivery: tuple[bytes, set[str]],
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    encoding: str | None,
    garbage: bool,
) -> None:
    body, authentic = delivery
    if encoding is not None:
        headers = {**headers, "Content-Encoding": encoding}
        body = _encode(body, encoding, garbage)

    async def post() -> tuple[int, str, bytes]:
        async with webhook.client.post(path, params=query, headers=headers, data=body) as response:
            return response.status, response.content_type, await response.read()

    status, content_type, reply = webhook.run(post())
    webhook.check_clean()
    persisted = webhook.take_persisted()
    assert status < 500, reply
    event(f"{status}, {'some' if persisted else 'none'} persisted")
    tokens = [v for k, v in query if k == "validationToken"]
    if tokens and encoding is None:  # a body encoding aiohttp cannot decode is a 400 before any handler
        assert (status, content_type, reply) == (200, "text/plain", tokens[0].encode())
    if status == 202:
        assert {n["id"] for n in persisted} == authentic
        assert all(uuid.UUID(n["tenantId"]) == uuid.UUID(TENANT) for n in persisted)
    else:
        assert persisted == []


request_lines = st.builds(
    lambda method, target, version: f"{method} {target} {version}".encode(),
    st.sampled_from(["POST", "GET", "PUT", "post", "PRI", "CONNECT", ""]) | st.text(max_size=8),
    st.sampled_from([NOTIFICATIONS_PATH, LIFECYCLE_PATH, "*", "/", "http://x" + NOTIFICATIONS_PATH])
    | st.text(max_size=40).map(lambda t: NOTIFICATIONS_PATH + "?" + t)
    | st.integers(8_000, 9_000).map(lambda n: NOTIFICATIONS_PATH + "?x=" + "a" * n),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]),
)
raw_headers = st.lists(
    st.sampled_from(
        [
            b"Content-Length: 10",
            b"Content-Length: -1",
            b"Content-Length: 99999999999999999999",
            b"Content-Length: 5\r\nContent-Length: 6",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip, chunked",
            b"Content-Encoding: gzip",
            b"Content-Type: application/json",
            b"Expect: 100-continue",
            b"Host: x",
            b"X-Big: " + b"a" * 9_000,
            b" folded",
            b"NoColon",
        ]
    )
    | st.binary(max_size=40),
    max_size=6,
)


@FUZZ
@given(line=request_lines, header_lines=raw_headers, body=st.binary(max_size=300))
def test_any_bytes_on_the_socket_get_a_clean_answer_or_a_closed_connection(
    webhook: Webhook, line: bytes, header_lines: list[bytes], body: bytes
) -> None:
    request = line + b"\r\n" + b"".join(h + b"\r\n" for h in header_lines) + b"\r\n" + body

    async def exchange() -> bytes:
        server = webhook.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(request)
            writer.write_eof()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    reply = webhook.run(exchange())
    webhook.check_clean()
    assert webhook.take_persisted() == []  # the secret is never in these bytes
    for status_line in (part.split(b"\r\n", 1)[0] for part in reply.split(b"HTTP/1.")[1:]):
        assert not status_line[2:].startswith(b"5"), reply[:300]
