"""Operator commands for ingest: the restarts on e2ad.control, read under ingest's own consumer group.

Restart sync (entra-provisioning.md §4.3) is the one command ingest acts on: its delta cursors are
cleared, so the next round of each resource is a full one. The group's offset is committed once
the cursors are cleared, so a restart issued while ingest is down is applied when it starts, and
one read again after a crash costs one more full round, nothing else. A group that never
committed reads the topic from its start (its retention: a day): at worst one full round more.
"""

from __future__ import annotations

import logging
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from runtime import kafka
from runtime.kafka import stop_quietly
from schemas import topics
from schemas.config import KafkaSettings
from schemas.control import ControlCommand

log = logging.getLogger(__name__)

CONSUMER_GROUP = "e2ad-ingest-control"
CONTROL_PARTITION = TopicPartition(topics.CONTROL, 0)  # e2ad.control has one partition: commands in order
_REMEMBERED_COMMANDS = 256  # a duplicate of a recent command (a producer's retry) acts once


class ControlReader:
    """Reads e2ad.control: the restarts not applied yet, and the offset to commit once they are."""

    def __init__(self, kafka_settings: KafkaSettings) -> None:
        self._consumer: AIOKafkaConsumer = kafka.consumer(kafka_settings, group_id=CONSUMER_GROUP)
        self._pending: list[ControlCommand] = []
        self._applied: deque[str] = deque(maxlen=_REMEMBERED_COMMANDS)
        self._read_to: int | None = None  # the offset after the last record read
        self._committed: int | None = None

    async def start(self) -> None:
        """Join the partition at the group's committed offset and read what waits there, up to its end.

        Reading the backlog here lets the worker's first round already be the full one a restart
        issued while ingest was down asks for.
        """
        await self._consumer.start()
        self._consumer.assign([CONTROL_PARTITION])
        self._committed = await self._consumer.committed(CONTROL_PARTITION)
        end = (await self._consumer.end_offsets([CONTROL_PARTITION]))[CONTROL_PARTITION]
        while await self._consumer.position(CONTROL_PARTITION) < end:
            await self._read(timeout_ms=500)

    async def stop(self) -> None:
        await stop_quietly(self._consumer)

    async def restarts(self) -> list[ControlCommand]:
        """The restarts read and not applied yet, oldest first (records already fetched, no waiting)."""
        await self._read(timeout_ms=0)
        return list(self._pending)

    async def applied(self, commands: list[ControlCommand]) -> None:
        """The commands have been applied: remember them and commit past what has been read."""
        for command in commands:
            self._applied.append(command.command_id)
        self._pending = [c for c in self._pending if c.command_id not in self._applied]
        await self.commit()

    async def commit(self) -> None:
        """Commit the offset past every record read, when no restart read is still waiting to be applied."""
        if self._pending or self._read_to is None or self._read_to == self._committed:
            return
        try:
            await self._consumer.commit({CONTROL_PARTITION: self._read_to})
        except KafkaError as exc:
            # Harmless: the commands are read again, and a restart read again is one more full round.
            log.warning("committing %s offsets failed: %s", topics.CONTROL, exc)
            return
        self._committed = self._read_to

    async def _read(self, *, timeout_ms: int) -> None:
        for messages in (await self._consumer.getmany(CONTROL_PARTITION, timeout_ms=timeout_ms)).values():
            for message in messages:
                self._take(message.value)
                self._read_to = message.offset + 1

    def _take(self, value: bytes | None) -> None:
        try:
            command = topics.decode(ControlCommand, value or b"")
        except ValidationError as exc:
            log.warning("skipping an unreadable %s record: %s", topics.CONTROL, exc)
            return
        if command.command != "restart" or command.command_id in self._applied:
            return  # the other commands are the processors' and the writers'
        if all(c.command_id != command.command_id for c in self._pending):
            self._pending.append(command)
