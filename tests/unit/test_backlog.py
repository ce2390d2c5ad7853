"""A writer's backlog without a broker: below the end a partition had, only each group's latest record."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from writers.backlog import Backlog, Backlogs

P0, P1 = TopicPartition("ad.desired", 0), TopicPartition("ad.desired", 1)


def record(tp: TopicPartition, offset: int, key: str) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, key.encode(), b"{}", None, 0, 0, ())


def test_a_record_below_the_end_is_superseded_by_a_later_one_of_its_group() -> None:
    backlog = Backlog(10, {b"a": 7, b"b": 3})
    assert backlog.superseded(record(P0, 2, "a"))
    assert not backlog.superseded(record(P0, 7, "a"))  # the latest itself
    assert not backlog.superseded(record(P0, 3, "b"))


def test_records_at_or_past_the_end_are_never_superseded() -> None:
    backlog = Backlog(10, {b"a": 7})
    assert not backlog.superseded(record(P0, 10, "a"))
    assert not backlog.superseded(record(P0, 12, "x"))


async def test_the_backlog_is_read_once_per_assignment_and_only_for_a_partition_behind_its_end() -> None:
    reads: list[dict[TopicPartition, int]] = []

    async def read(starts: dict[TopicPartition, int]) -> dict[TopicPartition, Backlog]:
        reads.append(dict(starts))
        return {tp: Backlog(20, {b"a": 15}) for tp in starts}

    ends = {P0: 20, P1: 2}
    backlogs = Backlogs(read)  # type: ignore[arg-type]
    first = {P0: [record(P0, 5, "a")], P1: [record(P1, 0, "z"), record(P1, 1, "a")]}
    kept = await backlogs.latest_only(first, [r for rs in first.values() for r in rs], ends.get)
    assert [(r.partition, r.offset) for r in kept] == [(1, 0), (1, 1)]  # P1's batch reached its end
    assert reads == [{P0: 5}]
    later = {P0: [record(P0, 15, "a")]}
    assert await backlogs.latest_only(later, later[P0], ends.get) == later[P0]
    assert reads == [{P0: 5}]  # read once
    backlogs.revoked([P0])
    await backlogs.latest_only(first, first[P0], ends.get)
    assert reads == [{P0: 5}, {P0: 5}]  # assigned again: read again
