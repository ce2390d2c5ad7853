"""A writer's backlog: what a partition of ad.desired held behind its end when the writer began reading it.

ad.desired is compacted lazily, so a writer that reads a partition from behind its end (an
`e2ad replay writers`, a writer that restarts behind its last commits) also reads superseded
states of a group. Applied in turn they would put back, until the group's latest record is
reached, a member removed since: an identity product must never show that. So, at the first
batch of a partition after its assignment, the writer reads the keys and offsets (not the
states) from that batch to the partition's end as the fetch reported it, once, and applies a
record below that end only when it is its group's latest there. The index is bounded by the
number of groups; records written after the end are applied as ever (latest per poll).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition

# The batches of one poll, per partition, in offset order.
Batches = Mapping[TopicPartition, Sequence[ConsumerRecord]]


@dataclass(frozen=True)
class Backlog:
    """One partition's records below `end`: the offset of each key's latest one."""

    end: int
    latest: Mapping[bytes | None, int] = field(default_factory=dict)

    def superseded(self, record: ConsumerRecord) -> bool:
        """Whether a later record of the record's group lies below the end: this one must not be applied."""
        return record.offset < self.end and self.latest.get(record.key, record.offset) > record.offset


# Reads each partition's keys and offsets from its start offset to its current end.
ReadBacklogs = Callable[[Mapping[TopicPartition, int]], Awaitable[dict[TopicPartition, Backlog]]]


class Backlogs:
    """The backlog of each assigned partition, learnt at its first batch and forgotten at its revocation."""

    def __init__(self, read: ReadBacklogs) -> None:
        self._read = read
        self._of: dict[TopicPartition, Backlog] = {}

    def revoked(self, partitions: Collection[TopicPartition]) -> None:
        for tp in partitions:
            self._of.pop(tp, None)  # assigned again, it may start anywhere

    async def latest_only(
        self, batches: Batches, records: Sequence[ConsumerRecord], ends: Callable[[TopicPartition], int | None]
    ) -> list[ConsumerRecord]:
        """`records` (of `batches`) without those superseded by a later record of their group below the backlog's end.

        `ends` is the partition's end as the last fetch reported it (the consumer's highwater).
        """
        behind: dict[TopicPartition, int] = {}
        for tp, batch in batches.items():
            if tp in self._of or not batch:
                continue
            end = ends(tp)
            if end is None or batch[-1].offset + 1 >= end:
                self._of[tp] = Backlog(batch[-1].offset + 1)  # the batch reaches the end: its latest per key is enough
            else:
                behind[tp] = batch[0].offset
        if behind:
            self._of.update(await self._read(behind))
        return [record for record in records if not self._of[_partition(record)].superseded(record)]


def _partition(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)
