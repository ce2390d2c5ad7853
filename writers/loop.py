"""A partition loop: each poll's batch goes to a sink, and only what the sink finished is committed.

As quix-streams' sinks do it: per partition the records collapse to the latest per key (and,
behind the end a partition had when assigned, to the latest there: writers/backlog.py), the sink
writes them, and the loop (not the sink) commits. A sink that cannot go on raises Backpressure:
the loop commits what it finished, rewinds each partition to its first record not finished,
pauses every partition and keeps polling (so the consumer stays in its group), then after the
delay lets one record through to probe, or with none waiting hands the sink an empty batch. The
loop knows nothing of what the sink writes to; the offset arithmetic is in pure functions.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from writers.backlog import Backlogs, Batches

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
# A probe after a hold resumes the partitions and waits this long for one record to arrive.
PROBE_FETCH_TIMEOUT_MS = 1000


class Backpressure(Exception):
    """A sink cannot go on now (cf. quix-streams' SinkBackpressureError).

    The first `done` records it was handed are finished; the rest are delivered again after
    `retry_after` seconds, or with None not before the loop is released. The cause, when there
    is one, is chained (`raise Backpressure(...) from error`).
    """

    def __init__(self, done: int, retry_after: float | None) -> None:
        super().__init__(f"{done} record(s) done, retry after {retry_after} s")
        self.done = done
        self.retry_after = retry_after


class Sink(Protocol):
    async def write(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> int:
        """Write the records (in offset order per partition); how many, from the first, are finished.

        All of them, unless `stop` was set meanwhile or the sink took fewer (a probe after a
        hold); the rest are delivered again. Raises Backpressure. An empty batch is a probe
        with no record waiting, for the sink to tell whether it can write again.
        """
        ...

    async def idle(self, stop: asyncio.Event) -> None:
        """The sink's own work between polls, while not held; may raise Backpressure (with done 0)."""
        ...


class PartitionLoop:
    """One consumer's loop around one sink."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        sink: Sink,
        *,
        backlogs: Backlogs,
        between_polls: Callable[[], Awaitable[None]],
        fetching: Callable[[bool], None],
        paused: Callable[[int], object],
    ) -> None:
        """`backlogs` keeps superseded records below a partition's end from the sink (writers/backlog.py);
        `between_polls` runs before each poll; `fetching(False)` stops the other consumers
        fetching while the sink writes (True lets them again); `paused` is told how many
        partitions are paused after each change."""
        self._consumer = consumer
        self._sink = sink
        self._backlogs = backlogs
        self._between_polls = between_polls
        self._fetching = fetching
        self._paused = paused
        self._resume_at: float | None = None  # event-loop time a hold ends; inf: when released

    def hold(self, retry_after: float | None) -> None:
        """Pause every partition for `retry_after` seconds (None: until released), then probe."""
        now = asyncio.get_running_loop().time()
        self._resume_at = math.inf if retry_after is None else now + retry_after
        self.assigned()

    def release(self) -> None:
        """End a hold now: the next turn probes with one record."""
        if self._resume_at is not None:
            self._resume_at = asyncio.get_running_loop().time()

    def assigned(self) -> None:
        """Pause or resume every assigned partition as the hold says; also for partitions just assigned."""
        partitions = self._consumer.assignment()
        if self._resume_at is None:
            self._consumer.resume(*partitions)
        else:
            self._consumer.pause(*partitions)
        self._paused(len(self._consumer.paused()))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and write until `stop` is set; records not finished by then stay uncommitted."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await self._between_polls()
            if self._resume_at is not None and loop.time() >= self._resume_at:
                await self._probe(stop)
                continue
            if self._resume_at is None:
                try:
                    await self._sink.idle(stop)
                except Backpressure as exc:
                    self.hold(exc.retry_after)
            # Paused partitions return nothing, but polling keeps the consumer in its group.
            batches = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if batches:
                await self._flush(batches, stop)

    async def _probe(self, stop: asyncio.Event) -> None:
        """After a hold: one record, or with none waiting an empty batch; the sink says whether to hold on."""
        self._resume_at = None
        self._consumer.resume(*self._consumer.assignment())
        await self._flush(await self._consumer.getmany(timeout_ms=PROBE_FETCH_TIMEOUT_MS, max_records=1), stop)

    async def _flush(self, batches: Batches, stop: asyncio.Event) -> None:
        self._fetching(False)
        self._consumer.pause(*self._consumer.assignment())
        records = await self._backlogs.latest_only(batches, latest_per_key(batches), self._consumer.highwater)
        try:
            done = await self._sink.write(records, stop)
        except Backpressure as exc:
            done = exc.done
            self.hold(exc.retry_after)
        assigned = self._consumer.assignment()
        rewind, commit = offsets_after(batches, records[done:], assigned)
        for tp, offset in rewind.items():
            self._consumer.seek(tp, offset)
        try:
            if commit:
                await self._consumer.commit(commit)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another consumer meanwhile; it writes the same records again.
            log.warning("could not commit %s: %s", commit, exc)
        self._fetching(True)
        self.assigned()


def latest_per_key(batches: Batches) -> list[ConsumerRecord]:
    """The last record of each key in each partition; earlier records of a key are superseded.

    Tombstones (null values, from compaction) carry no state and are dropped, also dropping the
    earlier records they supersede. Per partition, the records stay in offset order.
    """
    latest: list[ConsumerRecord] = []
    for records in batches.values():
        by_key: dict[bytes | None, ConsumerRecord] = {}
        for record in records:
            by_key.pop(record.key, None)  # re-insert, so the order follows the latest offsets
            by_key[record.key] = record
        latest += [record for record in by_key.values() if record.value is not None]
    return latest


def offsets_after(
    batches: Batches, unfinished: Sequence[ConsumerRecord], assigned: Collection[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Where to rewind and what to commit once a batch is written, except `unfinished`.

    A partition is committed up to its first unfinished record (the records before it are
    finished, or superseded by a later record of their key) and rewound to it; a partition
    with none is committed past its batch. Only assigned partitions count: a rebalance may
    have moved one, and its new owner starts from the last commit.
    """
    rewind: dict[TopicPartition, int] = {}
    for record in unfinished:  # in offset order per partition: the first is the earliest
        tp = TopicPartition(record.topic, record.partition)
        if tp in assigned:
            rewind.setdefault(tp, record.offset)
    commit = {tp: rewind.get(tp, records[-1].offset + 1) for tp, records in batches.items() if tp in assigned}
    return rewind, commit
