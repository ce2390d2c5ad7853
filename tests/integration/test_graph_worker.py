"""The Graph worker on its own thread: rounds at start, on hints (debounced) and after failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from harness.standin import GraphStandin, running_standin
from ingest.delta import GROUP_SELECT
from ingest.graph_worker import CONSUMER_GROUP, GraphWorker
from runtime import kafka
from schemas import topics
from schemas.changes import CHANGE_RECORD, GroupChanged
from schemas.config import KafkaSettings, Settings, WebhookSettings
from schemas.notifications import ChangeNotification, NotificationBatch, ResourceData
from schemas.status import IngestStatus
from tests.active import WRITEBACK_ENABLED, active_configuration
from tests.fakes import FakeAsyncCredential, running_receiver
from tests.integration.stages import publish
from tests.polling import until


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin() as standin:
        yield standin


def settings_for(standin: GraphStandin, kafka_settings: KafkaSettings, **graph: object) -> Settings:
    options: dict[str, object] = {"delta_interval_seconds": 60, "hint_debounce_seconds": 0.2, **graph}
    return Settings(kafka=kafka_settings, graph=standin.graph_settings(**options))


def hint(group_id: str, endpoint: str = "notifications", **fields: object) -> tuple[str, NotificationBatch]:
    notification = ChangeNotification(
        subscription_id="00000000-0000-0000-0000-0000000000aa",
        change_type="updated",
        resource=f"Groups/{group_id}",
        resource_data=ResourceData(id=group_id),
        **fields,
    )
    return group_id, NotificationBatch(
        received_at=dt.datetime.now(dt.UTC), endpoint=endpoint, notifications=[notification]
    )


async def group_change(kafka_settings: KafkaSettings, group_id: str) -> GroupChanged:
    latest = await kafka.read_latest(kafka_settings, topics.GRAPH_CHANGES)
    record = topics.decode(CHANGE_RECORD, latest[group_id.encode()])
    assert isinstance(record, GroupChanged)
    return record


def sample(name: str, **labels: str) -> float:
    """A sample of ingest's metrics (the default registry: process-wide, so tests compare before and after)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def committed_hints(kafka_settings: KafkaSettings) -> int | None:
    consumer = kafka.consumer(kafka_settings, group_id=CONSUMER_GROUP)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topics.GRAPH_NOTIFICATIONS, 0))
    finally:
        await consumer.stop()


async def test_round_at_start_then_one_debounced_round_for_a_burst_of_hints(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    group_id = standin.tenant.add_group("Sales").object_id
    worker = GraphWorker(settings_for(standin, kafka_settings), credential=FakeAsyncCredential(standin.issue_token()))
    assert worker.not_ready() == "no delta round has finished yet"
    before = {
        "pages": sample("e2ad_graph_delta_pages_total", resource="groups"),
        "changes": sample("e2ad_graph_delta_changes_total", kind="group.changed"),
        "rounds": sample("e2ad_graph_delta_round_seconds_count", outcome="success"),
        "latency": sample("e2ad_change_latency_seconds_count", stage="ingest"),
        "hints": sample("e2ad_records_total", topic=topics.GRAPH_NOTIFICATIONS, direction="in"),
    }
    worker.start_thread()
    try:
        await until(lambda: worker.completed_rounds == 1, "the round at start", timeout=15)
        assert (await group_change(kafka_settings, group_id)).full_round
        assert worker.not_ready() is None
        assert sample("e2ad_change_latency_seconds_count", stage="ingest") == before["latency"]  # no hint: untimed

        mutation = standin.tenant.update_group(group_id, displayName="Sales EMEA")
        await publish(kafka_settings, topics.GRAPH_NOTIFICATIONS, [hint(group_id), hint(group_id)])
        await until(lambda: worker.completed_rounds == 2, "the debounced round the hints brought forward", timeout=15)
        latency = time.monotonic() - mutation.monotonic
        assert sample("e2ad_graph_delta_round_age_seconds") < 5

        # No third round: both hints shared the debounced one. A hint is committed only after the
        # round it brought forward, so once both are, every round they led to is counted.
        async def both_hints_committed() -> bool:
            return await committed_hints(kafka_settings) == 2

        await until(both_hints_committed, "both hints committed", timeout=15)
        assert worker.completed_rounds == 2
    finally:
        await asyncio.to_thread(worker.stop)

    record = await group_change(kafka_settings, group_id)
    assert record.attributes["displayName"] == "Sales EMEA" and not record.full_round
    assert len(standin.requests_to("/groups/delta")) == 2
    assert latency < 5
    assert await committed_hints(kafka_settings) == 2
    # Two rounds of one groups page each, each publishing the group; the hinted round timed once.
    assert sample("e2ad_graph_delta_pages_total", resource="groups") - before["pages"] == 2
    assert sample("e2ad_graph_delta_changes_total", kind="group.changed") - before["changes"] == 2
    assert sample("e2ad_graph_delta_round_seconds_count", outcome="success") - before["rounds"] == 2
    assert sample("e2ad_records_total", topic=topics.GRAPH_NOTIFICATIONS, direction="in") - before["hints"] == 2
    assert sample("e2ad_change_latency_seconds_count", stage="ingest") - before["latency"] == 1
    assert sample("e2ad_graph_delta_interval_seconds") == 60


async def test_graph_failure_is_logged_and_retried_without_crashing(
    standin: GraphStandin, kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    group_id = standin.tenant.add_group("Later").object_id
    settings = settings_for(standin, kafka_settings, delta_interval_seconds=0.3)
    worker = GraphWorker(settings, credential=FakeAsyncCredential("not-issued-yet"))
    caplog.set_level(logging.ERROR, logger="ingest.graph_worker")
    worker.start_thread()
    try:
        await until(lambda: worker.failed_rounds >= 2, "two failed rounds", timeout=15)
        assert worker.not_ready() == "the last delta round failed (see the log); it is retried"
        standin.issued_tokens.add("not-issued-yet")  # the credential starts working
        await until(lambda: worker.completed_rounds >= 1, "a round once the credential works", timeout=15)
        assert worker.not_ready() is None
    finally:
        await asyncio.to_thread(worker.stop)

    assert "HTTP 401 InvalidAuthenticationToken" in caplog.text
    assert (await group_change(kafka_settings, group_id)).members_complete
    # What `e2ad status` shows: the failure, on the resource it failed on, kept after the success.
    reported = topics.decode(IngestStatus, (await kafka.read_latest(kafka_settings, topics.STATUS))[b"ingest"])
    assert reported.failed_rounds >= 2 and reported.completed_rounds >= 1, reported
    users = reported.resources["users"]
    assert users.last_failure is not None and "HTTP 401 InvalidAuthenticationToken" in users.last_failure.error
    assert users.last_success is not None and users.last_success.at > users.last_failure.at
    assert reported.resources["groups"].last_failure is None, "the round failed before it read groups"
    assert reported.resources["groups"].last_success is not None


async def test_reauthorization_required_hint_reauthorizes_then_runs_a_round(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    async with running_receiver() as receiver:
        settings = settings_for(standin, kafka_settings).model_copy(
            update={"webhook": WebhookSettings(public_url=receiver.url, client_state="worker-secret")}
        )
        worker = GraphWorker(settings, credential=FakeAsyncCredential(standin.issue_token()))
        worker.start_thread()
        try:
            await until(lambda: worker.completed_rounds == 1, "the round at start", timeout=15)
            subscriptions = {s["resource"]: s["id"] for s in standin.subscriptions.subscriptions.values()}
            assert set(subscriptions) == {"/groups", "/users"}
            for resource, subscription in standin.subscriptions.subscriptions.items():
                expires_at = sample("e2ad_graph_subscription_expires_at_seconds", resource=subscription["resource"])
                expected = dt.datetime.fromisoformat(subscription["expirationDateTime"]).timestamp()
                assert abs(expires_at - expected) < 1, resource
            groups_subscription = subscriptions["/groups"]
            await standin.send_lifecycle(groups_subscription)
            assert groups_subscription in standin.subscriptions.paused

            lifecycle = ChangeNotification.model_validate(receiver.bodies[-1]["value"][0])
            batch = NotificationBatch(
                received_at=dt.datetime.now(dt.UTC), endpoint="lifecycle", notifications=[lifecycle]
            )
            await publish(kafka_settings, topics.GRAPH_NOTIFICATIONS, [(groups_subscription, batch)])
            await until(lambda: worker.completed_rounds == 2, "the round after the reauthorization", timeout=15)
        finally:
            await asyncio.to_thread(worker.stop)

    assert groups_subscription not in standin.subscriptions.paused
    reauthorizations = standin.requests_to(f"/subscriptions/{groups_subscription}/reauthorize")
    assert len(reauthorizations) == 1
    assert reauthorizations[0].at < standin.requests_to("/groups/delta")[-1].at  # before the round's reads


async def test_an_attribute_the_active_configuration_names_arrives_with_a_full_groups_round(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    group_id = standin.tenant.add_group("Sales", **{WRITEBACK_ENABLED: True}).object_id
    worker = GraphWorker(settings_for(standin, kafka_settings), credential=FakeAsyncCredential(standin.issue_token()))
    worker.start_thread()
    try:
        await until(lambda: worker.completed_rounds == 1, "the round at start", timeout=15)
        assert WRITEBACK_ENABLED not in (await group_change(kafka_settings, group_id)).attributes

        configuration = active_configuration(graph_group_attributes=[WRITEBACK_ENABLED, "displayName"])
        await publish(kafka_settings, topics.CONFIG, [("active", configuration)])
        # The interval is 60 s: only the change of the selected attributes runs this round now.
        await until(lambda: worker.completed_rounds == 2, "the round the new $select brought forward", timeout=15)
        full = await group_change(kafka_settings, group_id)

        standin.tenant.update_group(group_id, **{WRITEBACK_ENABLED: False})  # as PATCH /groups/{id} does
        await publish(kafka_settings, topics.GRAPH_NOTIFICATIONS, [hint(group_id)])
        await until(lambda: worker.completed_rounds == 3, "the round the hint brought forward", timeout=15)
        changed = await group_change(kafka_settings, group_id)
    finally:
        await asyncio.to_thread(worker.stop)

    assert full.full_round and full.members_complete and full.attributes[WRITEBACK_ENABLED] is True
    assert not changed.full_round and changed.attributes[WRITEBACK_ENABLED] is False
    first, second, third = standin.requests_to("/groups/delta")
    assert first.query["$select"].split(",") == GROUP_SELECT
    assert "$deltatoken" not in second.query  # a full round: the old delta link has the old $select
    assert second.query["$select"].split(",") == [*GROUP_SELECT, WRITEBACK_ENABLED]
    assert "$deltatoken" in third.query
    assert all("$deltatoken" in r.query for r in standin.requests_to("/users/delta")[1:])  # users continue


async def test_while_the_configuration_is_deleted_no_round_runs_and_the_first_one_after_is_full(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    group_id = standin.tenant.add_group("Sales").object_id
    worker = GraphWorker(settings_for(standin, kafka_settings), credential=FakeAsyncCredential(standin.issue_token()))
    worker.start_thread()
    try:
        await until(lambda: worker.completed_rounds == 1, "the round at start", timeout=15)
        await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(1, "deleted"))])

        async def cursors_cleared() -> bool:
            return await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS) == {}

        await until(cursors_cleared, "the delta cursors cleared", timeout=15)
        standin.tenant.update_group(group_id, displayName="Sales EMEA")
        await publish(kafka_settings, topics.GRAPH_NOTIFICATIONS, [hint(group_id)])
        await asyncio.sleep(1.5)  # well past the debounce (0.2 s): a round the hint brought forward would have run
        assert worker.completed_rounds == 1 and len(standin.requests_to("/groups/delta")) == 1

        await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(2, "enabled"))])
        await until(lambda: worker.completed_rounds == 2, "the round once enabled", timeout=15)
    finally:
        await asyncio.to_thread(worker.stop)

    record = await group_change(kafka_settings, group_id)
    assert record.full_round and record.attributes["displayName"] == "Sales EMEA"
    assert all("$deltatoken" not in r.query for r in standin.requests_to("/delta"))  # users too: all full
    assert await committed_hints(kafka_settings) == 1  # the hint waited for the round that served it
