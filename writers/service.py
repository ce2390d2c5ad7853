"""The writer's consumer loop: ad.desired → AD → ad.results, committing only what AD has applied.

Several writers share the partitions of ad.desired in the consumer group "e2ad-writers". Per
poll, each partition's records collapse to the latest desired state per group (a burst of
updates to one group is one convergence, design principle 3); every group is converged on the
writer's one LDAP thread, every decision is published to ad.results (failures also to
ad.dead-letter), and the offsets are committed only once the results are acknowledged.
When the DC is unreachable the same records are retried after a backoff, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from e2ad import kafka
from schemas import topics
from schemas.config import Settings
from schemas.desired import DesiredGroup, anchor_of
from schemas.results import ProvisioningResult, ProvisioningStep
from writers.directory import Directory
from writers.errors import DirectoryUnavailable
from writers.provision import provision

log = logging.getLogger(__name__)

CONSUMER_GROUP = "e2ad-writers"
POLL_TIMEOUT_MS = 500
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

T = TypeVar("T")


class WriterService:
    """One writer process: one consumer in the writers' group, one producer, one LDAP connection."""

    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._directory = Directory(settings.ad)
        # ldap3 blocks; all LDAP work runs on this one thread, which also owns the connection.
        self._ldap = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e2ad-ldap")
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._ldap_closed = False

    async def start(self) -> None:
        try:
            await self._on_ldap_thread(self._directory.open)
        except DirectoryUnavailable as exc:
            # Not fatal: the loop retries with backoff. A rejected bind (BindRejected) is, and propagates.
            log.warning("writer %s starts without AD: %s", self.name, exc)
        try:
            self._producer = kafka.producer(self.settings.kafka)
            await self._producer.start()
            self._consumer = kafka.consumer(self.settings.kafka, topics.AD_DESIRED, group_id=CONSUMER_GROUP)
            await self._consumer.start()
        except BaseException:
            await self.stop()
            raise
        log.info("writer %s consumes %s in group %s", self.name, topics.AD_DESIRED, CONSUMER_GROUP)

    async def run(self, stop: asyncio.Event) -> None:
        """Converge groups until `stop` is set; a batch interrupted by stop is left uncommitted."""
        assert self._consumer is not None, "start() first"
        while not stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if batches:
                await self._converge(batches, stop)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if not self._ldap_closed:  # stop() may run twice: after a failed start, and on exit
            self._ldap_closed = True
            await self._on_ldap_thread(self._directory.close)
            self._ldap.shutdown()

    async def __aenter__(self) -> WriterService:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _converge(self, batches: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        assert self._consumer is not None and self._producer is not None
        acks = []
        for record in latest_per_group(batches):
            result = await self._provision(record, stop)
            if result is None:
                return  # stopping while the DC is away: nothing of this batch is committed
            acks.append(await self._producer.send(topics.AD_RESULTS, topics.encode(result), key=record.key))
            if result.status == "failure":
                acks.append(await self._dead_letter(record, result))
            log.info("%s %s %s: %s", result.action, result.status, result.anchor, result.dn or "-")
        await asyncio.gather(*acks)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another writer meanwhile; it converges the same states again,
            # which is harmless because the writer is level-triggered.
            log.warning("writer %s could not commit %s: %s", self.name, offsets, exc)

    async def _provision(self, record: ConsumerRecord, stop: asyncio.Event) -> ProvisioningResult | None:
        """The result for one record, retrying while the DC is unavailable; None if stopped meanwhile."""
        try:
            desired = topics.decode(DesiredGroup, record.value)
        except pydantic.ValidationError as exc:
            return _invalid_record(record, exc, self.name)
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                return await self._on_ldap_thread(
                    provision,
                    self._directory,
                    desired,
                    default_container=self.settings.provisioning.target_container,
                    writer=self.name,
                )
            except DirectoryUnavailable as exc:
                log.warning("AD unavailable while converging %s, retrying in %.1f s: %s", desired.anchor, delay, exc)
            await self._on_ldap_thread(self._directory.close)  # the next attempt reconnects
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return None
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _dead_letter(self, record: ConsumerRecord, result: ProvisioningResult) -> asyncio.Future:
        """The desired state as it came (so it can be re-published as is), the reason in headers."""
        assert self._producer is not None
        headers = [
            ("e2ad-error", (result.error_message or "").encode()),
            ("e2ad-error-code", str(result.error_code or "").encode()),
            ("e2ad-source", f"{record.topic}/{record.partition}@{record.offset}".encode()),
            ("e2ad-result-id", result.id.encode()),
        ]
        return await self._producer.send(topics.AD_DEAD_LETTER, record.value, key=record.key, headers=headers)

    async def _on_ldap_thread(self, call: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ldap, lambda: call(*args, **kwargs))


def latest_per_group(batches: dict[TopicPartition, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    """The last record of each key in each partition; earlier states of a group are superseded.

    Tombstones (null values, from compaction of ad.desired) carry no state and are dropped, also
    dropping the earlier states they supersede.
    """
    latest: list[ConsumerRecord] = []
    for records in batches.values():
        by_key: dict[bytes | None, ConsumerRecord] = {}
        for record in records:
            by_key.pop(record.key, None)  # re-insert, so the order follows the latest offsets
            by_key[record.key] = record
        latest += [record for record in by_key.values() if record.value is not None]
    return latest


def _invalid_record(record: ConsumerRecord, error: pydantic.ValidationError, writer: str) -> ProvisioningResult:
    group_id = record.key.decode(errors="replace") if record.key else ""
    message = f"invalid desired state at {record.topic}/{record.partition}@{record.offset}: {error}"
    return ProvisioningResult(
        group_id=group_id,
        anchor=anchor_of(group_id),
        action="skip",
        status="failure",
        steps=[ProvisioningStep(name="import", status="failure", description=message)],
        error_message=message,
        writer=writer,
    )


async def run_writer(settings: Settings, stop: asyncio.Event) -> None:
    """The `e2ad write` command: one writer until `stop` is set."""
    async with WriterService(settings) as service:
        await service.run(stop)
