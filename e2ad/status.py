"""The Kafka side of `e2ad status` and `e2ad monitor`: one Snapshot of the brokers and e2ad.status.

Offsets, committed offsets and members come from the brokers; the stages' own records from the
compacted e2ad.status. Nothing is taken from a stage's memory, so any machine that reaches
Kafka sees the same. What the snapshot means is e2ad/status_view.py's.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from e2ad.status_view import PACE_SECONDS, PartitionOffsets, Snapshot, StageTopics, stages
from e2ad.topics import running_members
from runtime import kafka
from runtime.active_config import ActiveConfigurationError, read_active
from runtime.errors import error_lines
from schemas import topics
from schemas.config import KafkaSettings
from schemas.status import INGEST_KEY, PROCESSORS_KEY, IngestStatus, ProcessorStatus, WriterStatus

# How long the newest dead letter may take to arrive once asked for.
NEWEST_RECORD_SECONDS = 5.0


def stage_topics() -> list[StageTopics]:
    from ingest.graph_worker import CONSUMER_GROUP as GRAPH_WORKER
    from processors.app import APP_ID as PROCESSORS
    from writers.service import CONSUMER_GROUP as WRITERS

    return stages(GRAPH_WORKER, PROCESSORS, WRITERS)


async def read_snapshot(settings: KafkaSettings, watched: list[StageTopics]) -> Snapshot:
    """The brokers' offsets, the stages' committed offsets and members, e2ad.status and e2ad.config, now."""
    now = dt.datetime.now(dt.UTC)
    names = sorted(
        {stage.consumes for stage in watched} | {stage.produces for stage in watched} | {topics.AD_DEAD_LETTER}
    )
    paced = {stage.produces for stage in watched}
    reader = kafka.consumer(settings, group_id=None)
    try:
        await reader.start()
        partitions = {name: sorted(reader.partitions_for_topic(name) or ()) for name in names}
        offsets = await _offsets(reader, partitions, paced, now)
        last_dead_letter_at = await _newest_record_at(reader, topics.AD_DEAD_LETTER, offsets[topics.AD_DEAD_LETTER])
    finally:
        await kafka.stop_quietly(reader)
    committed = {
        stage.group: await kafka.committed_offsets(
            settings, stage.group, [TopicPartition(stage.consumes, p) for p in partitions[stage.consumes]]
        )
        for stage in watched
    }
    members = await running_members(settings, [stage.group for stage in watched])
    snapshot = Snapshot(
        at=now,
        offsets=offsets,
        committed=committed,
        members=members,
        staged_deletes=len(await kafka.read_latest(settings, topics.AD_STAGED_DELETES)),
        last_dead_letter_at=last_dead_letter_at,
    )
    await _read_statuses(settings, snapshot)
    try:
        snapshot.configuration = await read_active(settings)
    except ActiveConfigurationError as exc:
        snapshot.unreadable.append(f"{topics.CONFIG}: {exc}")
    return snapshot


async def _offsets(
    reader: AIOKafkaConsumer, partitions: dict[str, list[int]], paced: set[str], now: dt.datetime
) -> dict[str, dict[int, PartitionOffsets]]:
    tps = [TopicPartition(name, p) for name, numbers in partitions.items() for p in numbers]
    if not tps:
        return {name: {} for name in partitions}
    beginning, end = await reader.beginning_offsets(tps), await reader.end_offsets(tps)
    minute_ago = int((now.timestamp() - PACE_SECONDS) * 1000)
    since = await reader.offsets_for_times({tp: minute_ago for tp in tps if tp.topic in paced})
    result: dict[str, dict[int, PartitionOffsets]] = {name: {} for name in partitions}
    for tp in tps:
        found = since.get(tp)
        result[tp.topic][tp.partition] = PartitionOffsets(
            beginning=beginning[tp],
            end=end[tp],
            # A partition with nothing written since has no offset for that time: nothing to count.
            minute_ago=None if found is None else found.offset,
        )
    return result


async def _newest_record_at(
    reader: AIOKafkaConsumer, topic: str, held: dict[int, PartitionOffsets]
) -> dt.datetime | None:
    last = {TopicPartition(topic, p): offsets.end - 1 for p, offsets in held.items() if offsets.end > offsets.beginning}
    if not last:
        return None
    reader.assign(list(last))
    for tp, offset in last.items():
        reader.seek(tp, offset)
    newest: int | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NEWEST_RECORD_SECONDS
    waiting = set(last)
    while waiting and loop.time() < deadline:
        for tp, records in (await reader.getmany(timeout_ms=500)).items():
            waiting.discard(tp)
            newest = max([newest or 0, *(record.timestamp for record in records)])
    return None if newest is None else dt.datetime.fromtimestamp(newest / 1000, dt.UTC)


async def _read_statuses(settings: KafkaSettings, snapshot: Snapshot) -> None:
    for key, value in sorted((await kafka.read_latest(settings, topics.STATUS)).items()):
        name = key.decode(errors="replace")
        try:
            if name == PROCESSORS_KEY:
                snapshot.processors = topics.decode(ProcessorStatus, value)
            elif name == INGEST_KEY:
                snapshot.ingest = topics.decode(IngestStatus, value)
            else:
                snapshot.writers.append(topics.decode(WriterStatus, value))
        except ValidationError as exc:
            snapshot.unreadable.append(f"{topics.STATUS} record {name!r}: {'; '.join(error_lines(exc))}")
