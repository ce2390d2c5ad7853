"""The metrics' values where the code computing them is pure, and /readyz's answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from ingest.metrics import RoundClock
from ingest.webhook import build_app
from processors.app import changes_behind
from runtime.web import caught_up
from schemas import topics
from schemas.config import WebhookSettings
from schemas.results import ProvisioningResult
from tests.deliveries import SECRET, RecordingSink
from writers.metrics import WriterMetrics, ldap_result

AT = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class Switch:
    """A readiness check whose answer the test sets."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason

    def __call__(self) -> str | None:
        return self.reason


@pytest.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def graph_side() -> Switch:
    return Switch("no delta round has finished yet")


@pytest.fixture
async def client(sink: RecordingSink, graph_side: Switch) -> AsyncIterator[TestClient]:
    app = build_app(WebhookSettings(client_state=SECRET), sink, ready=[graph_side])
    async with TestClient(TestServer(app)) as client:
        yield client


async def answer(client: TestClient, path: str) -> tuple[int, dict[str, object]]:
    response = await client.get(path)
    return response.status, await response.json()


async def test_readyz_is_503_with_the_reasons_until_every_check_passes_and_healthz_stays_200(
    client: TestClient, graph_side: Switch
) -> None:
    assert await answer(client, "/readyz") == (503, {"status": "not ready", "reasons": [graph_side.reason]})
    assert await answer(client, "/healthz") == (200, {"status": "ok"})  # alive, though not ready

    graph_side.reason = None
    assert await answer(client, "/readyz") == (200, {"status": "ready"})

    graph_side.reason = "the last delta round failed (see the log); it is retried"
    assert await answer(client, "/readyz") == (503, {"status": "not ready", "reasons": [graph_side.reason]})


async def test_readyz_names_every_reason_at_once(client: TestClient, sink: RecordingSink, graph_side: Switch) -> None:
    sink.ready = False
    status, body = await answer(client, "/readyz")
    assert (status, body["reasons"]) == (503, ["Kafka producer not started", graph_side.reason])
    assert await answer(client, "/healthz") == (503, {"status": "starting", "reason": "Kafka producer not started"})


def test_caught_up_allows_at_most_the_given_lag() -> None:
    waiting = [1000]
    check = caught_up(topics.AD_DESIRED, lambda: waiting[0], 1000)
    assert check() is None
    waiting[0] = 1001
    assert check() == "1001 records of ad.desired behind (ready at 1000 or fewer)"


def result(action: str, status: str, *, changed_seconds_before: float | None = 3.0) -> ProvisioningResult:
    changed = AT - dt.timedelta(seconds=changed_seconds_before) if changed_seconds_before is not None else None
    return ProvisioningResult(
        at=AT,
        group_id="g",
        anchor="Group_g",
        action=action,
        status=status,
        source_changed_at=changed,  # type: ignore[arg-type]
    )


def test_the_writer_times_only_the_changes_it_applied_from_their_source() -> None:
    metrics = WriterMetrics()
    for decided in (
        result("create", "success"),
        result("update", "success", changed_seconds_before=0.5),
        result("skip", "success"),  # nothing written: no change reached AD
        result("delete", "failure"),
        result("update", "success", changed_seconds_before=None),  # a state without its source's time
        result("update", "success", changed_seconds_before=-2.0),  # the processors' clock ahead: 0, not negative
    ):
        metrics.decided(decided)

    sample = metrics.registry.get_sample_value
    assert sample("e2ad_change_latency_seconds_count", {"stage": "writer"}) == 3
    assert sample("e2ad_change_latency_seconds_sum", {"stage": "writer"}) == 3.5
    assert sample("e2ad_change_latency_seconds_bucket", {"stage": "writer", "le": "0.5"}) == 2
    assert sample("e2ad_records_total", {"topic": topics.AD_RESULTS, "direction": "out"}) == 6


def test_the_writer_lag_shows_only_the_partitions_assigned_now() -> None:
    metrics = WriterMetrics()
    metrics.show_lag({0: 5, 1: 0})
    metrics.show_lag({1: 2})
    sample = metrics.registry.get_sample_value
    assert sample("e2ad_writer_consumer_lag", {"partition": "0"}) is None
    assert sample("e2ad_writer_consumer_lag", {"partition": "1"}) == 2


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ({"result": 0, "description": "success"}, "success"),
        ({"result": 32, "description": "noSuchObject"}, "noSuchObject"),
        ({"result": 51, "description": ""}, "unknown"),
        (None, "unknown"),
    ],
)
def test_an_ldap_result_is_named_by_its_description(answer: object, name: str) -> None:
    assert ldap_result(answer) == name


def test_processors_are_behind_by_what_follows_the_last_record_read_or_the_last_commit() -> None:
    changes = [TopicPartition(topics.GRAPH_CHANGES, p) for p in range(4)]
    other = TopicPartition(topics.CONTROL, 0)
    end = {changes[0]: 100, changes[1]: 50, changes[2]: 10, changes[3]: 7, other: 1000}
    read = {changes[0]: 89, other: 0}  # partition 0: records 90..99 not yet read
    committed = {changes[1]: 20, changes[2]: 12}  # 2: a commit past a stale end offset counts 0
    assert changes_behind(end, read, committed) == 10 + 30  # partition 3: neither read nor committed, not counted


def test_the_delta_round_age_counts_from_the_worker_start_then_from_each_success() -> None:
    now = [100.0]
    clock = RoundClock(lambda: now[0])
    now[0] = 130.0
    assert clock.age() == 30.0
    clock.succeeded()
    now[0] = 135.5
    assert clock.age() == 5.5
