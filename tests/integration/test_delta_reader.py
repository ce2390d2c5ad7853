"""Delta rounds through the real msgraph-sdk against the stand-in, and the DeltaReader's Kafka edge."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition

from harness.standin import GraphStandin, running_standin
from ingest import delta
from ingest.delta import GROUP_SELECT, USER_SELECT, DeltaReader, group_select, normalise, read_round
from runtime import kafka
from schemas import topics
from schemas.changes import (
    CHANGE_RECORD,
    ChangeRecord,
    DeltaCursor,
    GroupChanged,
    GroupRemoved,
    UserChanged,
    UserRemoved,
)
from schemas.config import KafkaSettings
from tests.active import WRITEBACK_ENABLED, active_configuration
from tests.fakes import standin_client


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin(delta_page_size=2, delta_members_per_item=3) as standin:
        yield standin


async def all_changes(settings: KafkaSettings) -> list[ChangeRecord]:
    """Every record on graph.changes now, each partition in order."""
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        partitions = [
            TopicPartition(topics.GRAPH_CHANGES, p)
            for p in sorted(reader.partitions_for_topic(topics.GRAPH_CHANGES) or ())
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        end = await reader.end_offsets(partitions)
        records: list[ChangeRecord] = []
        while any([await reader.position(tp) < end[tp] for tp in partitions]):
            for batch in (await reader.getmany(timeout_ms=500)).values():
                records.extend(topics.decode(CHANGE_RECORD, r.value) for r in batch if r.value)
        return records
    finally:
        await reader.stop()


def time_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_full_round_follows_next_links_with_select(standin: GraphStandin) -> None:
    group_ids = [standin.tenant.add_group(f"group {i}").object_id for i in range(5)]

    delta_round = await read_round(standin_client(standin), "groups", None)

    assert delta_round.full_round
    assert [item["id"] for item in delta_round.items] == group_ids
    assert delta_round.delta_link.startswith(f"{standin.graph_base_url}/groups/delta?$deltatoken=")
    requests = standin.requests_to("/groups/delta")
    assert len(requests) == 3  # 5 groups, 2 per page
    assert requests[0].path == "/v1.0/groups/delta()"
    assert requests[0].query["$select"].split(",") == GROUP_SELECT
    assert all("$skiptoken" in r.query for r in requests[1:])


async def test_a_long_round_logs_how_far_it_got(
    standin: GraphStandin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    user = standin.tenant.add_user("member").object_id
    for i in range(3):
        group = standin.tenant.add_group(f"group {i}").object_id
        standin.tenant.add_member(group, user)
    monkeypatch.setattr(delta, "PROGRESS_SECONDS", 0.0)  # every page is "a while" later
    caplog.set_level(logging.INFO, logger="ingest.delta")

    await read_round(standin_client(standin), "groups", None)

    lines = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
    assert lines == [
        "groups delta round: 1 pages, 2 objects, 2 member changes read so far",
        "groups delta round: 2 pages, 3 objects, 3 member changes read so far",
    ]


async def test_page_size_is_asked_for_with_prefer_maxpagesize(standin: GraphStandin) -> None:
    for i in range(3):
        standin.tenant.add_user(f"user {i}")

    delta_round = await read_round(standin_client(standin), "users", None, page_size=1)

    assert len(delta_round.items) == 3
    requests = standin.requests_to("/users/delta")
    assert len(requests) == 3
    assert all(r.headers["prefer"] == "odata.maxpagesize=1" for r in requests)
    assert requests[0].query["$select"].split(",") == USER_SELECT


async def test_members_split_across_pages_are_merged_into_one_group(standin: GraphStandin) -> None:
    tenant = standin.tenant
    group_id = tenant.add_group("Large").object_id
    user_ids = [tenant.add_user(f"member {i}").object_id for i in range(7)]
    for user_id in user_ids:
        tenant.add_member(group_id, user_id)

    delta_round = await read_round(standin_client(standin), "groups", None, page_size=1)

    assert len(standin.requests_to("/groups/delta")) == 3  # 7 members, 3 per item, one item per page
    (record,) = normalise("groups", delta_round.items, full_round=True, observed_at=time_now())
    assert isinstance(record, GroupChanged)
    assert record.members_complete
    assert [m.id for m in record.members_added] == user_ids
    assert record.attributes["displayName"] == "Large"


async def test_token_round_reports_changes_members_and_removals(standin: GraphStandin) -> None:
    tenant = standin.tenant
    kept, soft, hard = (tenant.add_group(name).object_id for name in ("kept", "soft", "hard"))
    ada, bob = (tenant.add_user(name).object_id for name in ("Ada", "Bob"))
    tenant.add_member(kept, ada)
    client = standin_client(standin)
    first = await read_round(client, "groups", None)

    tenant.update_group(kept, description="now described")
    tenant.add_member(kept, bob)
    tenant.remove_member(kept, ada)
    tenant.soft_delete_group(soft)
    tenant.hard_delete_group(hard)
    second = await read_round(client, "groups", first.delta_link)

    assert not second.full_round
    records = {r.id: r for r in normalise("groups", second.items, full_round=False, observed_at=time_now())}
    changed = records[kept]
    assert isinstance(changed, GroupChanged) and not changed.members_complete
    assert changed.attributes["description"] == "now described"
    assert [m.id for m in changed.members_added] == [bob]
    assert [m.id for m in changed.members_removed] == [ada]
    assert records[soft] == GroupRemoved(id=soft, observed_at=records[soft].observed_at, reason="changed")
    assert isinstance(records[hard], GroupRemoved) and records[hard].reason == "deleted"

    third = await read_round(client, "groups", second.delta_link)
    assert third.items == []


async def test_deltatoken_latest_starts_from_now(standin: GraphStandin) -> None:
    standin.tenant.add_group("before")
    client = standin_client(standin)

    latest = await read_round(client, "groups", f"{standin.graph_base_url}/groups/delta?$deltatoken=latest")
    after = standin.tenant.add_group("after").object_id
    following = await read_round(client, "groups", latest.delta_link)

    assert latest.items == [] and not latest.full_round
    assert [item["id"] for item in following.items] == [after]


async def test_expired_token_gets_410_and_a_full_round(standin: GraphStandin) -> None:
    group_ids = [standin.tenant.add_group(f"g{i}").object_id for i in range(3)]
    client = standin_client(standin)
    first = await read_round(client, "groups", None)

    standin.expire_delta_tokens()
    again = await read_round(client, "groups", first.delta_link)

    assert again.full_round
    assert [item["id"] for item in again.items] == group_ids
    assert "$deltatoken" in standin.requests_to("/groups/delta")[2].query  # the refused one


async def test_throttled_round_completes_through_sdk_retries(standin: GraphStandin) -> None:
    standin.tenant.add_group("busy")
    standin.throttle(2, 1)

    started = time.monotonic()
    delta_round = await read_round(standin_client(standin), "groups", None)

    assert len(delta_round.items) == 1
    assert len(standin.requests_to("/groups/delta")) == 3
    assert time.monotonic() - started >= 2.0  # Retry-After was honoured each time


async def test_throttled_round_completes_through_own_retries_when_sdk_gives_up(standin: GraphStandin) -> None:
    standin.tenant.add_group("busy")
    standin.throttle(3, 0.2)

    started = time.monotonic()
    delta_round = await read_round(standin_client(standin, max_retries=0), "groups", None)

    assert len(delta_round.items) == 1
    assert len(standin.requests_to("/groups/delta")) == 4
    assert time.monotonic() - started >= 0.6


async def test_reader_publishes_users_then_groups_then_saves_cursors(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    tenant = standin.tenant
    user_id = tenant.add_user("Ada", onPremisesObjectIdentifier="0f0e0d0c-aaaa-bbbb-cccc-000000000001").object_id
    group_id = tenant.add_group("Sales").object_id
    tenant.add_member(group_id, user_id)
    client = standin_client(standin)

    async with DeltaReader(client, kafka_settings) as reader:
        published = await reader.run_round()

    assert published == 2
    assert sorted(type(r).__name__ for r in await all_changes(kafka_settings)) == ["GroupChanged", "UserChanged"]
    latest_changes = await kafka.read_latest(kafka_settings, topics.GRAPH_CHANGES)
    changes = {k.decode(): topics.decode(CHANGE_RECORD, v) for k, v in latest_changes.items()}
    user, group = changes[user_id], changes[group_id]
    assert isinstance(user, UserChanged) and user.full_round
    assert user.attributes["onPremisesObjectIdentifier"] == "0f0e0d0c-aaaa-bbbb-cccc-000000000001"
    assert isinstance(group, GroupChanged) and group.members_complete
    assert [m.id for m in group.members_added] == [user_id]
    cursors = await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS)
    saved = {k.decode(): topics.decode(DeltaCursor, v) for k, v in cursors.items()}
    assert set(saved) == {"users", "groups"}
    assert saved["groups"].delta_link == reader.cursors["groups"]

    # A new reader (a restart) continues from the saved cursors: only what changed since.
    tenant.update_group(group_id, displayName="Sales EMEA")
    async with DeltaReader(client, kafka_settings) as restarted:
        assert restarted.cursors == reader.cursors
        assert await restarted.run_round() == 1

    (record,) = [r for r in await all_changes(kafka_settings) if not r.full_round]
    assert isinstance(record, GroupChanged) and record.id == group_id
    assert record.attributes["displayName"] == "Sales EMEA"


async def test_failed_round_keeps_the_old_cursor(standin: GraphStandin, kafka_settings: KafkaSettings) -> None:
    standin.tenant.add_group("g")
    client = standin_client(standin, max_retries=0)
    async with DeltaReader(client, kafka_settings) as reader:
        await reader.run_round()
        before = reader.cursors
        standin.tenant.add_group("h")
        standin.throttle(100, 0)
        with pytest.raises(Exception, match="429"):
            await reader.run_round()
        standin.throttle(0, 0)
        reader.note_failure("throttled")

        assert reader.rounds["users"].last_failure is not None
        assert reader.rounds["users"].last_failure.error == "throttled"
        assert reader.rounds["groups"].last_failure is None and reader.rounds["groups"].last_success is not None

        assert reader.cursors == before
        saved = await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS)
        assert topics.decode(DeltaCursor, saved[b"users"]).delta_link == before["users"]


async def test_user_soft_delete_and_restore_reach_users_and_group_memberships(standin: GraphStandin) -> None:
    tenant = standin.tenant
    group_id = tenant.add_group("Team").object_id
    user_id = tenant.add_user("Temp").object_id
    tenant.add_member(group_id, user_id)
    client = standin_client(standin)
    users, groups = await read_round(client, "users", None), await read_round(client, "groups", None)

    tenant.soft_delete_user(user_id)
    users, groups = (
        await read_round(client, "users", users.delta_link),
        await read_round(client, "groups", groups.delta_link),
    )
    (removed,) = normalise("users", users.items, full_round=False, observed_at=time_now())
    (left,) = normalise("groups", groups.items, full_round=False, observed_at=time_now())
    assert isinstance(removed, UserRemoved) and removed.reason == "changed"
    assert isinstance(left, GroupChanged) and [m.id for m in left.members_removed] == [user_id]

    tenant.restore_user(user_id)
    users, groups = (
        await read_round(client, "users", users.delta_link),
        await read_round(client, "groups", groups.delta_link),
    )
    (back,) = normalise("users", users.items, full_round=False, observed_at=time_now())
    (rejoined,) = normalise("groups", groups.items, full_round=False, observed_at=time_now())
    assert isinstance(back, UserChanged) and back.attributes["displayName"] == "Temp"
    assert isinstance(rejoined, GroupChanged) and [m.id for m in rejoined.members_added] == [user_id]


async def test_a_restarted_reader_runs_a_full_groups_round_when_the_select_changed_while_it_was_down(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    tenant = standin.tenant
    tenant.add_user("Ada")
    group_id = tenant.add_group("Sales", **{WRITEBACK_ENABLED: True}).object_id
    client = standin_client(standin)
    async with DeltaReader(client, kafka_settings) as reader:
        await reader.run_round()

    wider = group_select(active_configuration(graph_group_attributes=[WRITEBACK_ENABLED]))
    async with DeltaReader(client, kafka_settings) as restarted:
        restarted.select_groups(wider)
        before = await all_changes(kafka_settings)
        assert await restarted.run_round() == 1  # users continued from their cursor: nothing changed

    (record,) = [r for r in await all_changes(kafka_settings) if r not in before]
    assert isinstance(record, GroupChanged) and record.id == group_id and record.full_round
    assert record.attributes[WRITEBACK_ENABLED] is True
    saved = await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS)
    assert topics.decode(DeltaCursor, saved[b"groups"]).select == wider
    assert topics.decode(DeltaCursor, saved[b"users"]).select == USER_SELECT


async def test_a_cursor_saved_without_its_select_is_continued_with_ingests_own(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    standin.tenant.add_group("Sales")
    client = standin_client(standin)
    delta_round = await read_round(client, "groups", None)
    old = {"resource": "groups", "delta_link": delta_round.delta_link, "saved_at": time_now().isoformat()}
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.GRAPH_CURSORS, json.dumps(old).encode(), key=b"groups")
    finally:
        await producer.stop()

    async with DeltaReader(client, kafka_settings) as reader:
        await reader.run_round()

    # Continued: nothing changed since.
    assert [r for r in await all_changes(kafka_settings) if isinstance(r, GroupChanged)] == []
    groups_requests = standin.requests_to("/groups/delta")
    assert "$deltatoken" in groups_requests[-1].query
