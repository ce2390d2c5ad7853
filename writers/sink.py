"""The group sink: desired states from ad.desired → AD → ad.results, and what nested groups need.

A batch of desired states is read from AD in a few searches, each group is converged
(writers/provision.py) on the sink's one LDAP thread, every decision goes to ad.results (a
failure also to ad.dead-letter, with the desired state as it came), a parent missing nested
groups waits on ad.pending and a created group is announced on ad.created (pending_kafka.py).
Whatever stops writing (the DC unavailable, the credentials rejected, quarantine) is told to
the writer's hold (hold.py) and signalled to the caller as Backpressure. The writer's partition
loop and `e2ad reconcile` both feed this sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pydantic
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas import topics
from schemas.config import Settings
from schemas.desired import DesiredGroup, anchor_of
from schemas.results import ProvisioningResult, ProvisioningStep
from writers.connection import BindRejected, connect
from writers.directory import Directory
from writers.errors import DirectoryUnavailable
from writers.hold import Hold
from writers.loop import Backpressure
from writers.metrics import WriterMetrics
from writers.pending_kafka import PendingKafka
from writers.provision import converge
from writers.quarantine import outcome_of
from writers.reconcile import AdGroup

log = logging.getLogger(__name__)

T = TypeVar("T")
Acks = list[asyncio.Future[object]]


@dataclass(frozen=True)
class DesiredRecord:
    """A record of ad.desired as the sink takes it: from a writer's consumer, or from one read of the topic."""

    key: bytes | None
    value: bytes
    source: str  # where it was read, for the dead letter and an unusable record's result
    partition: int | None  # of ad.desired, which owns a parent's wait; None: no writer's (e2ad reconcile)

    @classmethod
    def of(cls, record: ConsumerRecord) -> DesiredRecord:
        return cls(record.key, record.value, f"{record.topic}/{record.partition}@{record.offset}", record.partition)


class GroupSink:
    """Converges desired groups into AD; all ldap3 work runs on its one thread, which owns the connection."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        producer: AIOKafkaProducer,
        pending: PendingKafka,
        hold: Hold,
        metrics: WriterMetrics,
        status_changed: Callable[[], Awaitable[None]],
    ) -> None:
        """`status_changed` is awaited after each change the writer's status shows (hold, quarantine, retries)."""
        self.settings = settings
        # Where groups go and where the writer may write: the writer replaces it as e2ad.config changes.
        self.provisioning = settings.provisioning
        self.name = name
        self.hold = hold
        self.metrics = metrics
        self.statuses: Counter[str] = Counter()  # decisions by status; an unusable record counts as "unusable"
        self._producer = producer
        self._pending = pending
        self._status_changed = status_changed
        self._directory = Directory(settings.ad, connector=metrics.timed(connect))
        # ldap3 blocks; all LDAP work runs on this one thread, which also owns the connection.
        self._ldap = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e2ad-ldap")
        self._closed = False

    async def open(self) -> None:
        """Bind to AD. Raises DirectoryUnavailable or BindRejected."""
        await self._on_ldap_thread(self._directory.open)

    @property
    def connected(self) -> bool:
        return self._directory.connected

    async def close(self) -> None:
        if not self._closed:  # a writer may stop twice: after a failed start, and on exit
            self._closed = True
            await self._on_ldap_thread(self._directory.close)
            self._ldap.shutdown()

    # -- what the callers hand over -------------------------------------------------------------
    async def write(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> int:
        """The partition loop's batch (writers/loop.py Sink)."""
        self.metrics.records.labels(topics.AD_DESIRED, "in").inc(len(records))
        return await self.converge([DesiredRecord.of(record) for record in records], stop)

    async def converge(self, records: Sequence[DesiredRecord], stop: asyncio.Event) -> int:
        """Converge the records in order; how many, from the first, are decided (all, unless `stop` is set).

        Raises Backpressure when the hold says to wait. A quarantine retry decides one record,
        or with none given tries the bind alone.
        """
        if self.hold.retry_due():
            return await self._retry(records, stop)
        if (wait := self.hold.wait()) != 0:
            raise Backpressure(0, wait)
        return await self._acknowledged(records, stop)

    async def idle(self, stop: asyncio.Event) -> None:
        """Converge again the parents whose missing nested groups now exist (announced or found).

        Their ad.desired records are committed already; ad.pending holds their wait, and a parent
        stays due until it is converged, so a DC outage or a stop here only postpones it.
        """
        if self.hold.wait() != 0 or not self.hold.quarantine.writing:
            return  # held: the next write() says for how long
        for waiting in await self._guarded(0, self._pending.due(self._resolve)):
            if stop.is_set():
                return
            parent = waiting.desired
            key, value = topics.key(parent.group_id), topics.encode(parent)
            record = DesiredRecord(key, value, topics.AD_PENDING, waiting.partition)
            await self._acknowledged([record], stop, [parent])

    # -- one batch ------------------------------------------------------------------------------
    async def _acknowledged(
        self,
        records: Sequence[DesiredRecord],
        stop: asyncio.Event,
        states: Sequence[DesiredGroup] | None = None,
    ) -> int:
        """Decide each record in turn, and wait for Kafka to acknowledge what that sent, also on Backpressure.

        `states`: already decoded (a waiting parent, read from AD on its own); else decoded here
        and read from AD as one batch.
        """
        acks: Acks = []
        try:
            return await self._each(records, stop, acks, states)
        finally:
            await asyncio.gather(*acks)

    async def _each(
        self,
        records: Sequence[DesiredRecord],
        stop: asyncio.Event,
        acks: Acks,
        decoded: Sequence[DesiredGroup] | None,
    ) -> int:
        states = decoded if decoded is not None else [_desired_or_error(record.value) for record in records]
        found: dict[str, list[AdGroup]] | None = None
        for index, (record, state) in enumerate(zip(records, states, strict=True)):
            if stop.is_set():
                return index
            if found is None and decoded is None:
                found = await self._guarded(index, self._read_batch(states))
            if isinstance(state, pydantic.ValidationError):
                result, sent = _invalid_record(record, state, self.name), []
            else:
                result, sent = await self._guarded(index, self._decide(state, record.partition, found))
            acks.extend(sent)
            await self._decided(result, record, acks)
            self.statuses["unusable" if isinstance(state, pydantic.ValidationError) else result.status] += 1
            if not self.hold.quarantine.writing:
                raise Backpressure(index + 1, self.hold.wait())
        return len(records)

    async def _guarded(self, done: int, call: Awaitable[T]) -> T:
        """Await an AD call; when AD cannot decide, tell the hold and raise Backpressure after `done` records."""
        try:
            return await call
        except DirectoryUnavailable as exc:
            await self._unavailable(exc)
            raise Backpressure(done, self.hold.wait()) from exc
        except BindRejected as exc:
            await self._credentials_rejected(exc)
            raise Backpressure(done, self.hold.wait()) from exc

    async def _read_batch(self, states: Sequence[DesiredGroup | pydantic.ValidationError]) -> dict[str, list[AdGroup]]:
        """The batch's groups as AD has them, in a few searches instead of one per group."""
        desired = [state for state in states if isinstance(state, DesiredGroup)]  # _each reports the rest
        managed = {name for state in desired for name in state.attributes}
        return await self._on_ldap_thread(self._directory.find_groups, [state.anchor for state in desired], managed)

    async def _decide(
        self, desired: DesiredGroup, partition: int | None, found: dict[str, list[AdGroup]] | None
    ) -> tuple[ProvisioningResult, Acks]:
        """The result for one group, and the sends its wait for nested groups needs acknowledged."""
        convergence = await self._on_ldap_thread(
            converge,
            self._directory,
            desired,
            default_container=self.provisioning.target_container,
            containers=self.provisioning.write_containers,
            writer=self.name,
            found=found,
        )
        return convergence.result, await self._pending.settle(desired, partition, convergence)

    async def _decided(self, result: ProvisioningResult, record: DesiredRecord, acks: Acks) -> None:
        """Log one decision (ad.results; a failure also on ad.dead-letter) and count it for quarantine."""
        acks.append(await self._producer.send(topics.AD_RESULTS, topics.encode(result), key=record.key))
        if result.status == "failure":
            acks.append(await self._dead_letter(record, result))
        log.info("%s %s %s: %s", result.action, result.status, result.anchor, result.dn or "-")
        self.metrics.decided(result)
        if self.hold.available():
            log.info("writer %s reaches AD again", self.name)
            await self._status_changed()
        if self.hold.quarantine.record(result.group_id, outcome_of(result.status)):
            await self._quarantine_changed()
        self.metrics.failing_groups.set(self.hold.quarantine.failing)

    async def _dead_letter(self, record: DesiredRecord, result: ProvisioningResult) -> asyncio.Future[object]:
        """The desired state as it came (so it can be re-published as is), the reason in headers."""
        headers = [
            ("e2ad-error", (result.error_message or "").encode()),
            ("e2ad-error-code", str(result.error_code or "").encode()),
            ("e2ad-source", record.source.encode()),
            ("e2ad-result-id", result.id.encode()),
        ]
        return await self._producer.send(topics.AD_DEAD_LETTER, record.value, key=record.key, headers=headers)

    async def _resolve(self, anchors: frozenset[str]) -> dict[str, object]:
        return await self._on_ldap_thread(self._directory.resolve_groups, anchors)

    # -- faults and quarantine ------------------------------------------------------------------
    async def _unavailable(self, error: DirectoryUnavailable) -> None:
        newly = self.hold.unavailable_since is None
        delay = self.hold.unavailable()
        log.warning("writer %s pauses its partitions for %.1f s, AD is unavailable: %s", self.name, delay, error)
        await self._on_ldap_thread(self._directory.close)  # the next attempt reconnects
        if newly:
            await self._status_changed()

    async def _credentials_rejected(self, error: BindRejected) -> None:
        if self.hold.quarantine.credentials_rejected(str(error)):
            log.error("writer %s is quarantined: %s", self.name, error)
            await self._quarantine_changed()

    async def _quarantine_changed(self) -> None:
        quarantine = self.hold.quarantine
        if quarantine.writing:
            log.warning("writer %s leaves quarantine", self.name)
        else:
            log.error("writer %s is %s (%s): %s", self.name, quarantine.state, quarantine.reason, quarantine.detail)
        await self._status_changed()

    async def _retry(self, records: Sequence[DesiredRecord], stop: asyncio.Event) -> int:
        """A scheduled retry in quarantine: one record, or with none given the bind alone."""
        quarantine = self.hold.quarantine
        if quarantine.expire():
            log.error("writer %s is disabled: %s", self.name, quarantine.detail)
            await self._status_changed()
            raise Backpressure(0, None)
        quarantine.start_retry()
        log.info("writer %s retries (retry %d of this quarantine)", self.name, quarantine.retries)
        try:
            if records:
                return await self._acknowledged(records[:1], stop)
            await self._bind_again()
        finally:
            await self._status_changed()  # the retry count and the next retry changed in any case
        if (wait := self.hold.wait()) != 0:
            raise Backpressure(0, wait)
        return 0

    async def _bind_again(self) -> None:
        try:
            await self._on_ldap_thread(self._directory.reconnect)
        except DirectoryUnavailable as exc:
            log.warning("writer %s stays quarantined, AD is unavailable: %s", self.name, exc)
        except BindRejected as exc:
            await self._credentials_rejected(exc)
        else:
            if self.hold.quarantine.clear():
                await self._quarantine_changed()

    async def _on_ldap_thread(self, call: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ldap, lambda: call(*args, **kwargs))


def _desired_or_error(value: bytes) -> DesiredGroup | pydantic.ValidationError:
    """A record's desired state, decoded once per batch; the error names the field when it is unusable."""
    try:
        return topics.decode(DesiredGroup, value)
    except pydantic.ValidationError as exc:
        return exc


def _invalid_record(record: DesiredRecord, error: pydantic.ValidationError, writer: str) -> ProvisioningResult:
    group_id = record.key.decode(errors="replace") if record.key else ""
    message = f"invalid desired state at {record.source}: {error}"
    return ProvisioningResult(
        group_id=group_id,
        anchor=anchor_of(group_id),
        action="skip",
        status="failure",
        steps=[ProvisioningStep(name="import", status="failure", description=message)],
        error_message=message,
        writer=writer,
    )
