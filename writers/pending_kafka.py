"""The Kafka side of nested groups in any order: ad.pending keeps the waits, ad.created announces.

A writer's group sink drives one PendingKafka. What makes it exact, without polling AD:
- ad.created is followed from its end *before* the writer joins its consumer group. A group
  created after that is announced to this writer; one created before is found by the single
  lookup of the loaded parents' missing anchors after each (re)assignment (`due`).
- `due` and every convergence run in the writer's one loop, never interleaved: a parent has
  recorded its wait before the loop reads the next announcement.
- ad.pending is written to the partition of the parent's ad.desired record, so the writer that
  owns a parent also owns its wait; that record is acknowledged before the ad.desired offset
  is committed (`settle` returns the futures to await with the results).
- On (re)assignment the waits of the partitions are read back, leaving out parents with a
  newer desired state past the committed offset: the consumer delivers that one again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings
from schemas.desired import DesiredGroup
from schemas.pending import CreatedGroup, PendingGroup
from writers.pending import PendingReferences, Waiting
from writers.provision import Convergence

log = logging.getLogger(__name__)

LOAD_TIMEOUT_SECONDS = 30.0
_CREATED = TopicPartition(topics.AD_CREATED, 0)

Resolve = Callable[[frozenset[str]], Awaitable[Mapping[str, Any]]]


class PendingKafka:
    """One writer's PendingReferences, kept in step with ad.pending and ad.created."""

    def __init__(self, settings: KafkaSettings, producer: AIOKafkaProducer) -> None:
        self.references = PendingReferences()
        self._settings = settings
        self._producer = producer
        self._announcements: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Follow ad.created from its current end. Call before the writer's consumer joins its group."""
        self._announcements = await kafka.broadcast_reader(self._settings, topics.AD_CREATED)

    def fetching(self, on: bool) -> None:
        """Pause or resume following ad.created: the writer stops its fetch loops while a batch converges."""
        assert self._announcements is not None, "start() first"
        if on:
            self._announcements.resume(_CREATED)
        else:
            self._announcements.pause(_CREATED)

    async def stop(self) -> None:
        if self._announcements is not None:
            await self._announcements.stop()
            self._announcements = None

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """From the writer's rebalance listener: these partitions are another writer's now."""
        self.references.forget(tp.partition for tp in partitions if tp.topic == topics.AD_DESIRED)

    async def assigned(self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
        """From the writer's rebalance listener: take these partitions over, with the waits recorded for them."""
        ours = sorted(tp for tp in partitions if tp.topic == topics.AD_DESIRED)
        # Own them before the first await: the loop may converge their records while they load.
        self.references.assign(tp.partition for tp in ours)
        await self.load({tp.partition: await consumer.committed(tp) for tp in ours})

    async def load(self, committed: Mapping[int, int | None]) -> None:
        """Take over these ad.desired partitions (partition → committed offset) with their waits."""
        self.references.assign(committed)
        try:
            loaded = await asyncio.wait_for(self._read(committed), LOAD_TIMEOUT_SECONDS)
        except Exception as exc:  # aiokafka would log and swallow it in the listener: degrade knowingly
            log.error(
                "could not read %s for partitions %s (%s); their waits are not resumed",
                topics.AD_PENDING,
                sorted(committed),
                exc,
            )
            return  # the partitions stay owned with their waits unknown
        for partition, (records, superseded) in loaded.items():
            self.references.load(partition, records, superseded)
        log.info(
            "resumed %d parent group(s) waiting for nested groups in partitions %s",
            len(self.references),
            sorted(committed),
        )

    async def settle(
        self, desired: DesiredGroup, partition: int | None, convergence: Convergence
    ) -> list[asyncio.Future]:
        """After converging `desired` (from `partition` of ad.desired): record its wait, announce its creation.

        With no partition (`e2ad reconcile` owns none) no wait is recorded, but a creation is announced.

        Returns the send futures; await them before committing the ad.desired offset.
        """
        sent = []
        change = self.references.record(desired, partition, convergence.missing) if partition is not None else None
        if change is not None:
            value = topics.encode(change.record) if change.record is not None else None
            key = topics.key(change.group_id)
            sent.append(await self._producer.send(topics.AD_PENDING, value, key=key, partition=change.partition))
        if convergence.created is not None:
            created = CreatedGroup(group_id=desired.group_id, anchor=desired.anchor, dn=convergence.created)
            sent.append(
                await self._producer.send(topics.AD_CREATED, topics.encode(created), key=topics.key(desired.group_id))
            )
        return sent

    async def due(self, resolve: Resolve) -> list[Waiting]:
        """Parents to converge again now: a nested group they wait for was announced, or found in AD.

        `resolve` looks anchors up in AD (Directory.resolve_groups on the LDAP thread). It runs
        only after a (re)assignment loaded waits, once for all their missing anchors; if it
        raises (DirectoryUnavailable), the lookup is repeated on the next call.
        """
        self.references.resolved(await self._announced())
        if unchecked := self.references.unchecked():
            self.references.resolved(await resolve(unchecked))
            self.references.checked(unchecked)
        return self.references.due()

    async def _announced(self) -> list[str]:
        """Anchors announced on ad.created since the last call, without waiting."""
        assert self._announcements is not None, "start() first"
        batches = await self._announcements.getmany(_CREATED, timeout_ms=0)
        anchors = []
        for record in batches.get(_CREATED, ()):
            try:
                anchors.append(topics.decode(CreatedGroup, record.value).anchor)
            except (pydantic.ValidationError, TypeError) as exc:
                log.warning("ignoring an unusable record at %s@%d: %s", topics.AD_CREATED, record.offset, exc)
        return anchors

    async def _read(
        self, committed: Mapping[int, int | None]
    ) -> dict[int, tuple[dict[str, PendingGroup], frozenset[str]]]:
        """Per partition: its ad.pending records, and the parents with a desired state past `committed`."""
        pending = {p: TopicPartition(topics.AD_PENDING, p) for p in committed}
        desired = {p: TopicPartition(topics.AD_DESIRED, p) for p in committed}
        waits = await kafka.read_partitions(self._settings, {tp: None for tp in pending.values()})
        # Only partitions with waits need their uncommitted tail of ad.desired.
        tails = await kafka.read_partitions(
            self._settings, {desired[p]: committed[p] for p in committed if waits[pending[p]]}
        )
        loaded = {}
        for partition in committed:
            records = {}
            for key, value in waits[pending[partition]].items():
                try:
                    records[key.decode()] = topics.decode(PendingGroup, value)
                except pydantic.ValidationError as exc:
                    log.warning(
                        "ignoring an unusable %s record for %s: %s",
                        topics.AD_PENDING,
                        key.decode(errors="replace"),
                        exc,
                    )
            superseded = frozenset(key.decode() for key in tails.get(desired[partition], {}))
            loaded[partition] = (records, superseded)
        return loaded
