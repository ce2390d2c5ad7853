"""The partition loop without a broker: latest per key, the commit/rewind arithmetic, and Backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from writers import loop as partition_loop
from writers.backlog import Backlog, Backlogs
from writers.loop import Backpressure, PartitionLoop, latest_per_key, offsets_after

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def record(tp: TopicPartition, offset: int, key: str, value: str | None = "v") -> ConsumerRecord:
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, key.encode(), value.encode() if value is not None else None,
        None, 0, 0, (),
    )  # fmt: skip


def where(records: Sequence[ConsumerRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


# -- pure parts -------------------------------------------------------------------------------
def test_the_latest_record_of_each_key_per_partition_in_offset_order() -> None:
    batches = {
        P0: [record(P0, 0, "a"), record(P0, 1, "b"), record(P0, 2, "a")],
        P1: [record(P1, 5, "a")],  # another partition: its own latest
    }
    assert where(latest_per_key(batches)) == [(0, 1), (0, 2), (1, 5)]


def test_a_tombstone_drops_the_key_and_what_it_supersedes() -> None:
    batches = {P0: [record(P0, 0, "a"), record(P0, 1, "b"), record(P0, 2, "a", None)]}
    assert where(latest_per_key(batches)) == [(0, 1)]


def test_all_finished_commits_past_each_batch_and_rewinds_nothing() -> None:
    batches = {P0: [record(P0, 3, "a"), record(P0, 4, "b")], P1: [record(P1, 7, "c")]}
    assert offsets_after(batches, [], {P0, P1}) == ({}, {P0: 5, P1: 8})


def test_a_partition_commits_up_to_its_first_unfinished_record_and_rewinds_to_it() -> None:
    batches = {P0: [record(P0, 3, "a"), record(P0, 4, "b"), record(P0, 5, "c")], P1: [record(P1, 7, "d")]}
    unfinished = [batches[P0][1], batches[P0][2]]
    assert offsets_after(batches, unfinished, {P0, P1}) == ({P0: 4}, {P0: 4, P1: 8})


def test_a_superseded_record_before_the_first_unfinished_one_is_committed() -> None:
    batches = {P0: [record(P0, 3, "a"), record(P0, 4, "b"), record(P0, 5, "a")]}
    [b, a] = latest_per_key(batches)
    assert offsets_after(batches, [a], {P0}) == ({P0: 5}, {P0: 5})  # offset 3 was superseded by 5
    assert offsets_after(batches, [b, a], {P0}) == ({P0: 4}, {P0: 4})


def test_a_partition_moved_away_meanwhile_is_neither_committed_nor_rewound() -> None:
    batches = {P0: [record(P0, 3, "a")], P1: [record(P1, 7, "b")]}
    assert offsets_after(batches, [batches[P0][0], batches[P1][0]], {P1}) == ({P1: 7}, {P1: 7})


# -- the loop around a fake consumer and sink -------------------------------------------------
class FakeConsumer:
    """Two partitions with fixed logs; fetches from the position of each partition not paused."""

    def __init__(self, logs: dict[TopicPartition, list[ConsumerRecord]], per_poll: int | None = None) -> None:
        self.logs = logs
        self.per_poll = per_poll  # records per partition and poll (None: all there are)
        self.position = dict.fromkeys(logs, 0)
        self.committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs[tp])

    async def backlogs(self, starts: dict[TopicPartition, int]) -> dict[TopicPartition, Backlog]:
        """What kafka.latest_offsets reads, from the fixed logs."""
        return {
            tp: Backlog(len(self.logs[tp]), {r.key: r.offset for r in self.logs[tp][start:]})
            for tp, start in starts.items()
        }

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> dict:
        batches = {}
        for tp, log in sorted(self.logs.items()):
            wanted = log[self.position[tp] :][: max_records or self.per_poll]
            if tp in self._paused or not wanted or (max_records and batches):
                continue
            batches[tp] = wanted
            self.position[tp] += len(wanted)
        if not batches:
            await asyncio.sleep(0.01)
        return batches


class FakeSink:
    """Writes up to `capacity` records per batch, then signals Backpressure; stops the loop once all are in."""

    def __init__(self, stop: asyncio.Event, expected: int, capacity: int | None, retry_after: float | None) -> None:
        self.stop, self.expected, self.capacity, self.retry_after = stop, expected, capacity, retry_after
        self.written: list[tuple[int, int]] = []
        self.batches: list[list[tuple[int, int]]] = []
        self.idle_calls = 0

    async def write(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> int:
        self.batches.append(where(records))
        done = len(records) if self.capacity is None else min(self.capacity, len(records))
        self.written += where(records[:done])
        if len(self.written) >= self.expected:
            self.stop.set()
        if done < len(records):
            self.capacity = None  # recovers after the hold
            raise Backpressure(done, self.retry_after)
        return done

    async def idle(self, stop: asyncio.Event) -> None:
        self.idle_calls += 1


def make_loop(consumer: FakeConsumer, sink: FakeSink, paused: list[int]) -> PartitionLoop:
    async def nothing() -> None:
        pass

    return PartitionLoop(
        consumer,  # type: ignore[arg-type]
        sink,
        backlogs=Backlogs(consumer.backlogs),  # type: ignore[arg-type]
        between_polls=nothing,
        fetching=lambda on: None,
        paused=paused.append,
    )


async def run_loop(consumer: FakeConsumer, sink: FakeSink, paused: list[int]) -> None:
    await asyncio.wait_for(make_loop(consumer, sink, paused).run(sink.stop), 5)


@pytest.fixture(autouse=True)
def short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition_loop, "POLL_TIMEOUT_MS", 10)
    monkeypatch.setattr(partition_loop, "PROBE_FETCH_TIMEOUT_MS", 10)


async def test_a_batch_written_whole_is_committed() -> None:
    consumer = FakeConsumer({P0: [record(P0, 0, "a"), record(P0, 1, "a")], P1: [record(P1, 0, "b")]})
    stop = asyncio.Event()
    sink = FakeSink(stop, expected=2, capacity=None, retry_after=0)
    await run_loop(consumer, sink, [])
    assert sink.written == [(0, 1), (1, 0)]  # the burst of "a" collapsed to its latest
    assert consumer.committed == {P0: 2, P1: 1}


async def test_backpressure_commits_what_was_done_rewinds_the_rest_and_probes_after_the_delay() -> None:
    logs = {P0: [record(P0, i, f"k{i}") for i in range(3)], P1: [record(P1, 0, "x")]}
    consumer = FakeConsumer(logs)
    stop, paused = asyncio.Event(), []
    sink = FakeSink(stop, expected=4, capacity=1, retry_after=0.05)
    await run_loop(consumer, sink, paused)

    first, probe, *_ = sink.batches
    assert first == [(0, 0), (0, 1), (0, 2), (1, 0)] and sink.written[0] == (0, 0)
    assert probe == [(0, 1)]  # after the delay one record, from where the partition was rewound
    assert sorted(sink.written) == [(0, 0), (0, 1), (0, 2), (1, 0)]  # nothing skipped, nothing twice
    assert consumer.committed == {P0: 3, P1: 1}
    assert 2 in paused and paused[-1] == 0  # every partition held, then resumed


async def test_a_hold_without_a_delay_lasts_until_released() -> None:
    consumer = FakeConsumer({P0: [record(P0, 0, "a"), record(P0, 1, "b")]})
    stop = asyncio.Event()
    sink = FakeSink(stop, expected=2, capacity=1, retry_after=None)
    loop = make_loop(consumer, sink, [])
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.2)
    assert sink.written == [(0, 0)] and consumer.committed == {P0: 1} and consumer.paused() == {P0}
    loop.release()
    await asyncio.wait_for(task, 5)
    assert sink.written == [(0, 0), (0, 1)] and consumer.committed == {P0: 2}


async def test_behind_the_end_only_the_latest_record_of_a_group_reaches_the_sink() -> None:
    # One record per poll: without the backlog a (its old state) would be written before a's latest.
    log = [record(P0, 0, "a", "old"), record(P0, 1, "b"), record(P0, 2, "a", "new"), record(P0, 3, "c")]
    consumer = FakeConsumer({P0: log, P1: []}, per_poll=1)
    stop = asyncio.Event()
    sink = FakeSink(stop, expected=3, capacity=None, retry_after=0)
    await run_loop(consumer, sink, [])
    assert sink.written == [(0, 1), (0, 2), (0, 3)]
    assert consumer.committed[P0] == 4  # the superseded record counts as finished
