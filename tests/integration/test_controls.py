"""The operator's controls on the real broker: `e2ad deletes list|approve|reject` and `e2ad restart`.

Restart runs against ingest's graph worker and the Graph stand-in: its delta cursors are cleared
and the next round is a full one, whether ingest runs when the restart is sent or starts later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from click.testing import CliRunner, Result

from e2ad.cli import main
from e2ad.control import send
from harness.standin import GraphStandin, running_standin
from ingest.control import CONSUMER_GROUP as CONTROL_GROUP
from ingest.graph_worker import GraphWorker
from runtime import kafka
from schemas import topics
from schemas.changes import CHANGE_RECORD, GroupChanged
from schemas.config import KafkaSettings, Settings
from schemas.control import ControlCommand
from schemas.deletes import StagedDelete
from schemas.desired import DesiredGroup
from tests.fakes import FakeAsyncCredential
from tests.polling import until

pytestmark = pytest.mark.integration


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin() as standin:
        yield standin


async def e2ad(kafka_settings: KafkaSettings, *args: str) -> Result:
    """The command line in a thread of its own (it runs its own event loop), on the test's broker."""
    env = {"E2AD_CONFIG": None, "E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def records(kafka_settings: KafkaSettings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a one-partition topic from its start, tombstones included, as (key, value)."""
    consumer = kafka.consumer(kafka_settings, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        seen: list[tuple[bytes | None, bytes | None]] = []
        while await consumer.position(tp) < end:
            for messages in (await consumer.getmany(tp, timeout_ms=500)).values():
                seen.extend((m.key, m.value) for m in messages)
        return seen
    finally:
        await consumer.stop()


async def group_changes(kafka_settings: KafkaSettings, group_id: str) -> list[GroupChanged]:
    """Every graph.changes record of the group, oldest first (read_latest would keep only the last)."""
    found: list[GroupChanged] = []
    consumer = kafka.consumer(kafka_settings, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.GRAPH_CHANGES, p) for p in range(kafka_settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    record = topics.decode(CHANGE_RECORD, message.value or b"")
                    if isinstance(record, GroupChanged) and record.id == group_id:
                        found.append(record)
        return found
    finally:
        await consumer.stop()


async def committed_control(kafka_settings: KafkaSettings) -> int | None:
    consumer = kafka.consumer(kafka_settings, group_id=CONTROL_GROUP)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topics.CONTROL, 0))
    finally:
        await consumer.stop()


async def ingest_read_past(kafka_settings: KafkaSettings, marker: ControlCommand) -> None:
    """Send a command ingest ignores, and wait until ingest's control reader has committed past it.

    The reader commits in the worker's loop, before the loop's round: once past a marker sent after
    an earlier one was committed past, the round of the loop that read the earlier one is over.
    """
    past = await send(kafka_settings, marker) + 1
    await until(
        lambda: _committed_at_least(kafka_settings, past), f"ingest to commit {topics.CONTROL} past {past}", timeout=60
    )


async def _committed_at_least(kafka_settings: KafkaSettings, offset: int) -> bool:
    return (await committed_control(kafka_settings) or 0) >= offset


async def no_round_pending(kafka_settings: KafkaSettings) -> None:
    """Wait until the worker's loop has gone round after the round just completed, twice over.

    Two markers, each sent once ingest committed past the one before: any round the worker's loop
    started after the last round seen (a restart applied twice) is over when it passes the second.
    """
    for _ in range(2):
        await ingest_read_past(kafka_settings, MARKER)


# Not ingest's: its control reader commits past it and does nothing else.
MARKER = ControlCommand(command="clear-quarantine", writer="no-such-writer")


def worker_for(standin: GraphStandin, kafka_settings: KafkaSettings) -> GraphWorker:
    # Rounds only at start and on a restart: the interval is far away, and no hint is sent.
    settings = Settings(kafka=kafka_settings, graph=standin.graph_settings(delta_interval_seconds=600))
    return GraphWorker(settings, credential=FakeAsyncCredential(standin.issue_token()))


def cursor_tombstones(cursor_records: list[tuple[bytes | None, bytes | None]]) -> set[bytes | None]:
    return {key for key, value in cursor_records if value is None}


def full_delta_requests(standin: GraphStandin) -> list[bool]:
    """For each groups delta round's first request: whether it started without a delta token."""
    firsts = [r for r in standin.requests_to("/groups/delta") if "$skiptoken" not in r.query]
    return ["$deltatoken" not in r.query and "$deltaToken" not in r.query for r in firsts]


async def test_restart_while_ingest_runs_clears_the_cursors_and_runs_a_full_round(
    standin: GraphStandin, kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    group_id = standin.tenant.add_group("Sales").object_id
    caplog.set_level(logging.INFO, logger="ingest.graph_worker")
    worker = worker_for(standin, kafka_settings)
    worker.start_thread()
    try:
        await until(lambda: worker.completed_rounds == 1, "1 completed round(s)")
        standin.tenant.update_group(group_id, displayName="Sales EMEA")  # a delta round would list it too
        result = await e2ad(kafka_settings, "restart")
        assert result.exit_code == 0, result.output
        await until(lambda: worker.completed_rounds == 2, "2 completed round(s)")
        await no_round_pending(kafka_settings)
        assert worker.completed_rounds == 2  # one round per restart
    finally:
        await asyncio.to_thread(worker.stop)

    command_record, *markers = await records(kafka_settings, topics.CONTROL)
    assert [topics.decode(ControlCommand, value or b"") for _, value in markers] == [MARKER, MARKER]
    command = topics.decode(ControlCommand, command_record[1] or b"")
    assert result.output.startswith(f"sent restart {command.command_id}:")
    assert cursor_tombstones(await records(kafka_settings, topics.GRAPH_CURSORS)) == {b"users", b"groups"}
    assert full_delta_requests(standin) == [True, True]
    changes = await group_changes(kafka_settings, group_id)
    assert [(c.full_round, c.attributes["displayName"]) for c in changes] == [(True, "Sales"), (True, "Sales EMEA")]
    assert changes[-1].members_complete
    assert f"restart {command.command_id} issued by {command.issued_by}" in caplog.text
    assert await committed_control(kafka_settings) == 3  # past the restart and both markers
    cursors = await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS)
    assert set(cursors) == {b"users", b"groups"}  # the full round saved new ones


async def test_a_restart_sent_while_ingest_is_stopped_is_applied_when_it_starts(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    group_id = standin.tenant.add_group("Finance").object_id
    first = worker_for(standin, kafka_settings)
    first.start_thread()
    try:
        await until(lambda: first.completed_rounds == 1, "1 completed round(s)")
    finally:
        await asyncio.to_thread(first.stop)

    assert (await e2ad(kafka_settings, "deletes", "reject", "--all", "--force")).exit_code == 0  # not ingest's
    assert (await e2ad(kafka_settings, "restart", "--force-deletes")).exit_code == 0
    assert set(await kafka.read_latest(kafka_settings, topics.GRAPH_CURSORS)) == {b"users", b"groups"}

    second = worker_for(standin, kafka_settings)
    second.start_thread()
    try:
        await until(lambda: second.completed_rounds == 1, "1 completed round(s)")
        await no_round_pending(kafka_settings)
        assert second.completed_rounds == 1  # the restart read at start made the start's round the full one
    finally:
        await asyncio.to_thread(second.stop)

    assert full_delta_requests(standin) == [True, True]
    assert [c.full_round for c in await group_changes(kafka_settings, group_id)] == [True, True]
    assert await committed_control(kafka_settings) == 4  # past both commands and both markers

    third = worker_for(standin, kafka_settings)  # applied once: the next start reads from its cursors
    third.start_thread()
    try:
        await until(lambda: third.completed_rounds == 1, "1 completed round(s)")
    finally:
        await asyncio.to_thread(third.stop)
    assert full_delta_requests(standin) == [True, True, False]


def staged_delete(group_id: str, display_name: str) -> StagedDelete:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return StagedDelete(
        group_id=group_id,
        display_name=display_name,
        reason="soft-deleted",
        arrived_at=now,
        staged_at=now,
        tripped_at=now,
        burst_first_arrival=now - dt.timedelta(minutes=2),
        burst_last_arrival=now,
        desired=DesiredGroup(group_id=group_id, anchor=f"Entra_{group_id}", state="absent", reason="soft-deleted"),
    )


async def stage(kafka_settings: KafkaSettings, *deletes: StagedDelete, unstaged: tuple[str, ...] = ()) -> None:
    """Write ad.staged-deletes as the processors do: a record per staged group, a tombstone when it ends."""
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        for delete in deletes:
            await producer.send_and_wait(
                topics.AD_STAGED_DELETES, topics.encode(delete), key=topics.key(delete.group_id)
            )
        for group_id in unstaged:
            await producer.send_and_wait(topics.AD_STAGED_DELETES, None, key=topics.key(group_id))
    finally:
        await producer.stop()


async def test_deletes_list_shows_exactly_the_live_staged_deletes(kafka_settings: KafkaSettings) -> None:
    nothing = await e2ad(kafka_settings, "deletes", "list")
    assert (nothing.exit_code, nothing.output) == (0, "nothing is staged on ad.staged-deletes\n")

    await stage(
        kafka_settings, staged_delete("g-1", "Alpha"), staged_delete("g-2", "Beta"), staged_delete("g-3", "Gamma")
    )
    await stage(kafka_settings, unstaged=("g-2",))

    listed = await e2ad(kafka_settings, "deletes", "list", "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)
    assert [(i["group_id"], i["display_name"], i["reason"]) for i in items] == [
        ("g-1", "Alpha", "soft-deleted"),
        ("g-3", "Gamma", "soft-deleted"),
    ]
    assert set(items[0]) == {
        "group_id",
        "display_name",
        "anchor",
        "reason",
        "held_because",
        "arrived_at",
        "staged_at",
        "tripped_at",
        "burst_first_arrival",
        "burst_last_arrival",
    }
    table = await e2ad(kafka_settings, "deletes", "list")
    rows = table.output.splitlines()
    assert [row.split()[0] for row in rows[1:-1]] == ["g-1", "g-3"]
    assert rows[-1].startswith("2 staged:")


async def test_approve_and_reject_put_their_commands_on_e2ad_control(kafka_settings: KafkaSettings) -> None:
    await stage(kafka_settings, staged_delete("g-1", "Alpha"), staged_delete("g-2", "Beta"))

    approve = await e2ad(kafka_settings, "deletes", "approve", "g-2")
    reject = await e2ad(kafka_settings, "deletes", "reject", "--all")
    refused = await e2ad(kafka_settings, "deletes", "approve", "g-9")
    assert (approve.exit_code, reject.exit_code, refused.exit_code) == (0, 0, 1)
    assert "not staged on ad.staged-deletes: g-9" in refused.output

    sent = [topics.decode(ControlCommand, value or b"") for _, value in await records(kafka_settings, topics.CONTROL)]
    assert [(c.command, c.groups, c.force_deletes) for c in sent] == [
        ("approve-deletes", ["g-2"], False),
        ("reject-deletes", None, False),
    ]
    assert approve.output.startswith(f"sent approve-deletes {sent[0].command_id}: release 1 staged delete (Beta g-2)")
    assert reject.output.startswith(
        f"sent reject-deletes {sent[1].command_id}: drop every staged delete (2 staged now)"
    )
    assert all(c.issued_by and c.issued_at for c in sent)
