"""The writer's consumer loop: ad.desired → AD → ad.results, committing only what AD has applied.

Several writers share the partitions of ad.desired in the consumer group "e2ad-writers". Per
poll, each partition's records collapse to the latest desired state per group (a burst of
updates to one group is one convergence, design principle 3); every group is converged on the
writer's one LDAP thread, every decision is published to ad.results (failures also to
ad.dead-letter), and the offsets are committed only once the results are acknowledged.

Faults are signals the loop answers; nothing sleeps inside a batch:
- DirectoryUnavailable (the DC down, busy, timing out): pause every assigned partition, rewind
  each to its first record not yet converged, keep polling (so the writer stays in its group)
  and resume after an exponential backoff. Nothing is skipped, nothing unapplied committed.
- BindRejected, or failing groups past Entra's thresholds: quarantine (writers/quarantine.py).
  The partitions stay paused; each scheduled retry tries one record, and the first success or
  a clear-quarantine command on e2ad.control (read by every writer) resumes them.
Each change of state is published to e2ad.status; /healthz and /metrics show it (runtime/web.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from runtime import kafka
from runtime.kafka import stop_quietly
from runtime.names import instance_name
from runtime.web import HealthServer
from schemas import topics
from schemas.config import Settings
from schemas.control import ControlCommand
from schemas.desired import DesiredGroup, anchor_of
from schemas.results import ProvisioningResult, ProvisioningStep
from schemas.status import WriterStatus
from writers.connection import BindRejected, connect
from writers.directory import Directory
from writers.errors import DirectoryUnavailable
from writers.metrics import WriterMetrics
from writers.pending_kafka import PendingKafka
from writers.provision import converge
from writers.quarantine import Quarantine, QuarantinePolicy, outcome_of
from writers.reconcile import AdGroup

log = logging.getLogger(__name__)

CONSUMER_GROUP = "e2ad-writers"
POLL_TIMEOUT_MS = 500
# A retry in quarantine resumes the partitions and waits this long for one record to arrive.
RETRY_FETCH_TIMEOUT_MS = 1000
# A stopping writer's tombstone on e2ad.status waits no longer than this for Kafka.
TOMBSTONE_SECONDS = 1.0

T = TypeVar("T")


class WriterService:
    """One writer process: one consumer in the writers' group, one producer, one LDAP connection."""

    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.writer.name or instance_name()
        self.metrics = WriterMetrics()
        self.quarantine = Quarantine(QuarantinePolicy.from_settings(settings.writer))
        self._directory = Directory(settings.ad, connector=self.metrics.timed(connect))
        # ldap3 blocks; all LDAP work runs on this one thread, which also owns the connection.
        self._ldap = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e2ad-ldap")
        self._consumer: AIOKafkaConsumer | None = None
        self._control: AIOKafkaConsumer | None = None
        self._pending: PendingKafka | None = None  # nested groups in any order
        self._producer: AIOKafkaProducer | None = None
        self._health: HealthServer | None = None
        self._ldap_closed = False
        self._backoff = settings.writer.retry_initial_seconds
        self._resume_at: float | None = None  # event-loop time when the partitions paused for the DC resume
        self._ad_unavailable_since: dt.datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await kafka.ensure_topics(self.settings.kafka)
            self._producer = kafka.producer(self.settings.kafka)
            await self._producer.start()
            self._control = await kafka.broadcast_reader(self.settings.kafka, topics.CONTROL)
            # Follows ad.created from before joining the group, so no creation goes unseen.
            self._pending = PendingKafka(self.settings.kafka, self._producer)
            await self._pending.start()
            if self.settings.writer.web_port is not None:
                web = self.settings.writer
                self._health = HealthServer(
                    "writer", web.web_host, web.web_port, self._health_body, self.metrics.registry
                )
                await self._health.start()
            # Bind before joining the group: partitions assigned to a writer still binding would wait.
            try:
                await self._on_ldap_thread(self._directory.open)
            except DirectoryUnavailable as exc:
                log.warning("writer %s starts without AD, the first record retries: %s", self.name, exc)
            except BindRejected as exc:
                self.quarantine.credentials_rejected(str(exc))
                log.error("writer %s is quarantined: %s", self.name, exc)
            self._consumer = kafka.consumer(self.settings.kafka, group_id=CONSUMER_GROUP)
            self._consumer.subscribe([topics.AD_DESIRED], listener=_HoldNewPartitions(self))
            await self._consumer.start()
            await self._publish_status()
        except BaseException:
            await self.stop()
            raise
        log.info("writer %s consumes %s in group %s", self.name, topics.AD_DESIRED, CONSUMER_GROUP)

    async def run(self, stop: asyncio.Event) -> None:
        """Converge groups until `stop` is set; records not converged by then stay uncommitted."""
        assert self._consumer is not None and self._control is not None, "start() first"
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await self._obey(await self._control.getmany(timeout_ms=0))
            if self.quarantine.expire():
                log.error("writer %s is disabled: %s", self.name, self.quarantine.detail)
                await self._publish_status()
            if self.quarantine.retry_due():
                await self._retry(stop)
                continue
            if self._resume_at is not None and loop.time() >= self._resume_at:
                self._resume_at = None
                self._hold_or_resume()
            if not self.holding:
                await self._converge_waiting_parents(stop)
            # Paused partitions return nothing, but polling keeps the writer in its group.
            batches = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if batches:
                await self._converge(batches, stop)

    async def stop(self) -> None:
        if self._health is not None:
            await self._health.stop()
            self._health = None
        # With Kafka gone each stop fails or times out quickly, so SIGTERM still ends the writer in seconds.
        for client in (self._consumer, self._control, self._pending):
            if client is not None:
                await stop_quietly(client)
        self._consumer = self._control = self._pending = None
        if self._producer is not None:
            # A writer that stops cleanly leaves e2ad.status (a tombstone); a killed one stays with its last state.
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(
                    self._producer.send_and_wait(topics.STATUS, None, key=self.name.encode()), TOMBSTONE_SECONDS
                )
            await stop_quietly(self._producer)
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

    def status(self) -> WriterStatus:
        quarantine = self.quarantine
        return WriterStatus(
            writer=self.name,
            state=quarantine.state,
            reason=quarantine.reason,
            detail=quarantine.detail,
            since=quarantine.since,
            next_retry=quarantine.next_retry,
            retries=quarantine.retries,
            decided=quarantine.decided,
            failing=quarantine.failing,
            reference_failing=quarantine.reference_failing,
            ad_unavailable_since=self._ad_unavailable_since,
        )

    def _health_body(self) -> tuple[bool, dict[str, object]]:
        status = self.status()
        return status.healthy, topics.jsonable(status)

    @property
    def web_port(self) -> int | None:
        return self._health.port if self._health else None

    # -- one batch ------------------------------------------------------------------------------
    async def _converge(self, batches: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        assert self._producer is not None
        self._fetching(False)
        records = latest_per_group(batches)
        states = [_desired_or_error(record) for record in records]
        acks: list[asyncio.Future[object]] = []
        found: dict[str, list[AdGroup]] | None = None
        for index, record in enumerate(records):
            if stop.is_set():
                return await self._settle(batches, records[index:], acks)
            try:
                if found is None:
                    found = await self._read_batch(states)
                result, pending_acks = await self._provision(record, states[index], found)
            except DirectoryUnavailable as exc:
                await self._ad_unavailable(exc)
                return await self._settle(batches, records[index:], acks)
            except BindRejected as exc:
                await self._credentials_rejected(exc)
                return await self._settle(batches, records[index:], acks)
            acks.extend(pending_acks)
            source = f"{record.topic}/{record.partition}@{record.offset}"
            await self._decided(result, record.key, record.value, acks, source)
            if not self.quarantine.writing:
                return await self._settle(batches, records[index + 1 :], acks)
        await self._settle(batches, [], acks)

    async def _decided(
        self,
        result: ProvisioningResult,
        key: bytes,
        desired: bytes,
        acks: list[asyncio.Future[object]],
        source: str = topics.AD_PENDING,
    ) -> None:
        """Log one decision (ad.results; a failure also on ad.dead-letter) and count it for quarantine."""
        assert self._producer is not None
        acks.append(await self._producer.send(topics.AD_RESULTS, topics.encode(result), key=key))
        if result.status == "failure":
            acks.append(await self._dead_letter(key, desired, source, result))
        log.info("%s %s %s: %s", result.action, result.status, result.anchor, result.dn or "-")
        self.metrics.decided(result)
        await self._ad_available()
        if self.quarantine.record(result.group_id, outcome_of(result.status)):
            await self._quarantine_changed()
        self.metrics.failing_groups.set(self.quarantine.failing)

    async def _settle(
        self,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        unconverged: list[ConsumerRecord],
        acks: list[asyncio.Future[object]],
    ) -> None:
        """Once the results are acknowledged, commit what is converged; rewind to what is not.

        A partition is committed up to its first unconverged record (the records before it are
        converged, or superseded by a later state of their group) and sought back to it.
        """
        assert self._consumer is not None
        await asyncio.gather(*acks)
        rewind: dict[TopicPartition, int] = {}
        for record in unconverged:  # in offset order per partition: the first is the earliest
            rewind.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        assigned = self._consumer.assignment()
        for tp, offset in rewind.items():
            if tp in assigned:  # a rebalance may have moved it; its new owner starts from the commit
                self._consumer.seek(tp, offset)
        offsets = {tp: rewind.get(tp, records[-1].offset + 1) for tp, records in batches.items() if tp in assigned}
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another writer meanwhile; it converges the same states again,
            # which is harmless because the writer is level-triggered.
            log.warning("writer %s could not commit %s: %s", self.name, offsets, exc)
        self._fetching(True)

    def _fetching(self, on: bool) -> None:
        """Stop the consumers fetching while a batch converges, and let them fetch again after.

        A caught-up consumer fetches in a loop, and the embedded broker answers an empty fetch at
        once instead of waiting fetch_max_wait_ms: while a batch converges that loop took a core
        from the DC (docs/benchmarks.md). The partitions held for the DC or quarantine stay paused.
        """
        assert self._consumer is not None and self._control is not None and self._pending is not None
        self._pending.fetching(on)
        if on:
            self._control.resume(*self._control.assignment())
            self._hold_or_resume()
        else:
            self._control.pause(*self._control.assignment())
            self._consumer.pause(*self._consumer.assignment())

    async def _read_batch(self, states: list[DesiredGroup | pydantic.ValidationError]) -> dict[str, list[AdGroup]]:
        """The batch's groups as AD has them, in a few searches instead of one per group."""
        desired = [state for state in states if isinstance(state, DesiredGroup)]  # _provision reports the rest
        managed = {name for state in desired for name in state.attributes}
        return await self._on_ldap_thread(self._directory.find_groups, [state.anchor for state in desired], managed)

    async def _provision(
        self,
        record: ConsumerRecord,
        state: DesiredGroup | pydantic.ValidationError,
        found: dict[str, list[AdGroup]],
    ) -> tuple[ProvisioningResult, list[asyncio.Future[object]]]:
        """The result for one record, and the sends its wait for nested groups needs acknowledged.

        Raises DirectoryUnavailable or BindRejected when AD cannot decide.
        """
        if isinstance(state, pydantic.ValidationError):
            return _invalid_record(record, state, self.name), []
        return await self._decide(state, record.partition, found)

    async def _decide(
        self, desired: DesiredGroup, partition: int, found: dict[str, list[AdGroup]] | None = None
    ) -> tuple[ProvisioningResult, list[asyncio.Future[object]]]:
        assert self._pending is not None
        convergence = await self._on_ldap_thread(
            converge,
            self._directory,
            desired,
            default_container=self.settings.provisioning.target_container,
            containers=self.settings.provisioning.write_containers,
            writer=self.name,
            found=found,
        )
        return convergence.result, await self._pending.settle(desired, partition, convergence)

    async def _converge_waiting_parents(self, stop: asyncio.Event) -> None:
        """Converge again the parents whose missing nested groups now exist (announced or found).

        Their ad.desired records are committed already; ad.pending holds their wait, and a parent
        stays due until it is converged, so a DC outage or a stop here only postpones it.
        """
        assert self._pending is not None and self._producer is not None
        try:
            for waiting in await self._pending.due(self._resolve):
                if stop.is_set():
                    return
                result, acks = await self._decide(waiting.desired, waiting.partition)
                await self._decided(result, topics.key(result.group_id), topics.encode(waiting.desired), acks)
                await asyncio.gather(*acks)
        except DirectoryUnavailable as exc:
            await self._ad_unavailable(exc)
        except BindRejected as exc:
            await self._credentials_rejected(exc)

    async def _resolve(self, anchors: frozenset[str]) -> dict[str, object]:
        return await self._on_ldap_thread(self._directory.resolve_groups, anchors)

    async def _dead_letter(
        self, key: bytes, desired: bytes, source: str, result: ProvisioningResult
    ) -> asyncio.Future[object]:
        """The desired state as it came (so it can be re-published as is), the reason in headers."""
        assert self._producer is not None
        headers = [
            ("e2ad-error", (result.error_message or "").encode()),
            ("e2ad-error-code", str(result.error_code or "").encode()),
            ("e2ad-source", source.encode()),
            ("e2ad-result-id", result.id.encode()),
        ]
        return await self._producer.send(topics.AD_DEAD_LETTER, desired, key=key, headers=headers)

    # -- faults, quarantine and commands --------------------------------------------------------
    @property
    def holding(self) -> bool:
        """Whether the partitions stay paused: the DC is unavailable, or the writer is quarantined."""
        return self._resume_at is not None or not self.quarantine.writing

    def _hold_or_resume(self) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        if self.holding:
            self._consumer.pause(*assigned)
        else:
            self._consumer.resume(*assigned)
        self.metrics.paused_partitions.set(len(self._consumer.paused()))

    async def _ad_unavailable(self, error: DirectoryUnavailable) -> None:
        delay, self._backoff = self._backoff, min(self._backoff * 2, self.settings.writer.retry_max_seconds)
        self._resume_at = asyncio.get_running_loop().time() + delay
        self._hold_or_resume()
        log.warning("writer %s pauses its partitions for %.1f s, AD is unavailable: %s", self.name, delay, error)
        await self._on_ldap_thread(self._directory.close)  # the next attempt reconnects
        if self._ad_unavailable_since is None:
            self._ad_unavailable_since = dt.datetime.now(dt.UTC)
            await self._publish_status()

    async def _ad_available(self) -> None:
        self._backoff = self.settings.writer.retry_initial_seconds
        if self._ad_unavailable_since is not None:
            log.info("writer %s reaches AD again", self.name)
            self._ad_unavailable_since = None
            await self._publish_status()

    async def _credentials_rejected(self, error: BindRejected) -> None:
        if self.quarantine.credentials_rejected(str(error)):
            log.error("writer %s is quarantined: %s", self.name, error)
            await self._quarantine_changed()
        self._hold_or_resume()

    async def _quarantine_changed(self) -> None:
        quarantine = self.quarantine
        if quarantine.writing:
            log.warning("writer %s leaves quarantine", self.name)
        else:
            log.error("writer %s is %s (%s): %s", self.name, quarantine.state, quarantine.reason, quarantine.detail)
        self._hold_or_resume()
        await self._publish_status()

    async def _retry(self, stop: asyncio.Event) -> None:
        """A scheduled retry in quarantine: one record, or with none waiting the bind alone."""
        assert self._consumer is not None
        self.quarantine.start_retry()
        log.info("writer %s retries (retry %d of this quarantine)", self.name, self.quarantine.retries)
        self._consumer.resume(*self._consumer.assignment())
        batches = await self._consumer.getmany(timeout_ms=RETRY_FETCH_TIMEOUT_MS, max_records=1)
        if batches:
            await self._converge(batches, stop)
        else:
            try:
                await self._on_ldap_thread(self._directory.reconnect)
            except DirectoryUnavailable as exc:
                log.warning("writer %s stays quarantined, AD is unavailable: %s", self.name, exc)
            except BindRejected as exc:
                await self._credentials_rejected(exc)
            else:
                if self.quarantine.clear():
                    await self._quarantine_changed()
        self._hold_or_resume()
        await self._publish_status()  # the retry count and the next retry changed in any case

    async def _obey(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for records in batches.values():
            for record in records:
                try:
                    command = topics.decode(ControlCommand, record.value)
                except pydantic.ValidationError:
                    continue  # a command for another stage
                if command.addresses(self.name) and self.quarantine.clear():
                    log.warning("writer %s: quarantine cleared by %s", self.name, command.issued_by or "an operator")
                    await self._quarantine_changed()

    async def _publish_status(self) -> None:
        assert self._producer is not None
        status = self.status()
        self.metrics.show(status)
        await self._producer.send_and_wait(topics.STATUS, topics.encode(status), key=self.name.encode())

    async def _on_ldap_thread(self, call: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ldap, lambda: call(*args, **kwargs))


@dataclasses.dataclass
class _HoldNewPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions assigned while the writer holds (DC unavailable, quarantined) are paused too.

    Revocation does not wait for the batch in flight: the embedded broker then never completes
    the rebalance (measured). Its new owner may converge a group this writer is still writing;
    being level-triggered, the later of the two decisions wins.
    """

    service: WriterService

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self.service._pending is not None:
            self.service._pending.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.service._hold_or_resume()
        if self.service._pending is not None and self.service._consumer is not None:
            await self.service._pending.assigned(self.service._consumer, assigned)


def latest_per_group(batches: dict[TopicPartition, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    """The last record of each key in each partition; earlier states of a group are superseded.

    Tombstones (null values, from compaction of ad.desired) carry no state and are dropped, also
    dropping the earlier states they supersede. Per partition, the records stay in offset order.
    """
    latest: list[ConsumerRecord] = []
    for records in batches.values():
        by_key: dict[bytes | None, ConsumerRecord] = {}
        for record in records:
            by_key.pop(record.key, None)  # re-insert, so the order follows the latest offsets
            by_key[record.key] = record
        latest += [record for record in by_key.values() if record.value is not None]
    return latest


def _desired_or_error(record: ConsumerRecord) -> DesiredGroup | pydantic.ValidationError:
    """A record's desired state, decoded once per batch; the error names the field when it is unusable."""
    try:
        return topics.decode(DesiredGroup, record.value)
    except pydantic.ValidationError as exc:
        return exc


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
