"""The writer process, assembled: ad.desired → a partition loop → the group sink → AD and ad.results.

Several writers share the partitions of ad.desired in the consumer group "e2ad-writers". The
partition loop (writers/loop.py) hands each poll's latest desired state per group to the group
sink (writers/sink.py), which converges them on the writer's one LDAP thread and publishes every
decision to ad.results (failures also to ad.dead-letter); the loop commits only what the sink
decided and acknowledged.

Faults are signals the loop answers (Backpressure); nothing sleeps inside a batch:
- DirectoryUnavailable (the DC down, busy, timing out): pause every assigned partition, rewind
  each to its first record not yet converged, keep polling (so the writer stays in its group)
  and resume after an exponential backoff (writers/hold.py). Nothing is skipped, nothing
  unapplied committed.
- BindRejected, or failing groups past Entra's thresholds: quarantine (writers/quarantine.py).
  The partitions stay paused; each scheduled retry tries one record, and the first success or
  a clear-quarantine command on e2ad.control (read by every writer) resumes them.
- The active configuration (e2ad.config) disabled or deleted: every partition is paused until it
  is enabled; its containers replace the file's as each configuration is published.
Each change of state is published to e2ad.status; /healthz and /metrics show it (runtime/web.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from types import TracebackType

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from runtime import kafka
from runtime.active_config import ActiveConfigFollower, file_differs
from runtime.kafka import leave_and_stop, stop_quietly
from runtime.names import instance_name
from runtime.outages import kafka_not_reachable
from runtime.web import HealthServer, caught_up, readiness
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.config import Settings
from schemas.control import ControlCommand
from schemas.status import WriterStatus
from writers.backlog import Backlog, Backlogs
from writers.connection import BindRejected
from writers.errors import DirectoryUnavailable
from writers.hold import Hold
from writers.loop import PartitionLoop
from writers.metrics import WriterMetrics
from writers.pending_kafka import PendingKafka
from writers.sink import GroupSink

log = logging.getLogger(__name__)

CONSUMER_GROUP = "e2ad-writers"
# A stopping writer's tombstone on e2ad.status waits no longer than this for Kafka.
TOMBSTONE_SECONDS = 1.0
# Caught up: at most this many records of ad.desired not yet fetched on any partition (a full round
# publishes thousands at once; the writer is not ready while it works through them).
READY_MAX_LAG = 1000


class WriterService:
    """One writer process: one consumer in the writers' group, one producer, one LDAP connection."""

    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.writer.name or instance_name()
        self.metrics = WriterMetrics()
        self.hold = Hold.from_settings(settings.writer)
        self.quarantine = self.hold.quarantine
        self._consumer: AIOKafkaConsumer | None = None
        self._control: AIOKafkaConsumer | None = None
        self._configuration: ActiveConfigFollower | None = None
        self.active: ActiveConfiguration | None = None  # None: none published, the file's sections apply
        self._pending: PendingKafka | None = None  # nested groups in any order
        self._producer: AIOKafkaProducer | None = None
        self._health: HealthServer | None = None
        self._sink: GroupSink | None = None
        self._loop: PartitionLoop | None = None
        self._lag: dict[int, int] = {}  # records not yet fetched, per assigned partition of ad.desired

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await kafka.ensure_topics(self.settings.kafka)
            self._producer = kafka.producer(self.settings.kafka)
            await self._producer.start()
            self._control = await kafka.broadcast_reader(self.settings.kafka, topics.CONTROL)
            self._configuration = ActiveConfigFollower(self.settings.kafka)
            active = await self._configuration.start()
            if differs := file_differs(f"writer {self.name}", self.settings.job, active):
                log.warning(differs)
            # Follows ad.created from before joining the group, so no creation goes unseen.
            self._pending = PendingKafka(self.settings.kafka, self._producer)
            await self._pending.start()
            if self.settings.writer.web_port is not None:
                web = self.settings.writer
                # The lag of its partition furthest behind: one partition behind holds its groups back.
                behind = caught_up(topics.AD_DESIRED, lambda: max(self._lag.values(), default=0), READY_MAX_LAG)
                checks = [self._joined, kafka_not_reachable, self._ad_reachable, self._writing, behind]
                self._health = HealthServer(
                    "writer", web.web_host, web.web_port, self._health_body, readiness(checks), self.metrics.registry
                )
                await self._health.start()
            self._sink = GroupSink(
                self.settings,
                name=self.name,
                producer=self._producer,
                pending=self._pending,
                hold=self.hold,
                metrics=self.metrics,
                status_changed=self._publish_status,
            )
            self._follow(active)
            # Bind before joining the group: partitions assigned to a writer still binding would wait.
            try:
                await self._sink.open()
            except DirectoryUnavailable as exc:
                log.warning("writer %s starts without AD, the first record retries: %s", self.name, exc)
            except BindRejected as exc:
                self.quarantine.credentials_rejected(str(exc))
                log.error("writer %s is quarantined: %s", self.name, exc)
            self._consumer = kafka.group_member(self.settings.kafka, group_id=CONSUMER_GROUP)
            backlogs = Backlogs(self._read_backlogs)
            self._loop = PartitionLoop(
                self._consumer,
                self._sink,
                backlogs=backlogs,
                between_polls=self._obey,
                fetching=self._fetching,
                paused=self.metrics.paused_partitions.set,
            )
            listener = _HoldNewPartitions(self._loop, self._pending, self._consumer, backlogs)
            self._consumer.subscribe([topics.AD_DESIRED], listener=listener)
            await self._consumer.start()
            if (wait := self.hold.wait()) != 0:  # quarantined by the bind, or paused: hold until released
                self._loop.hold(wait)
            await self._publish_status()
        except BaseException:
            await self.stop()
            raise
        log.info("writer %s consumes %s in group %s", self.name, topics.AD_DESIRED, CONSUMER_GROUP)

    async def run(self, stop: asyncio.Event) -> None:
        """Converge groups until `stop` is set; records not converged by then stay uncommitted."""
        assert self._loop is not None, "start() first"
        await self._loop.run(stop)

    async def stop(self) -> None:
        if self._health is not None:
            await self._health.stop()
            self._health = None
        # With Kafka gone each stop fails or times out quickly, so SIGTERM still ends the writer in seconds.
        if self._consumer is not None:
            await leave_and_stop(self._consumer)
        for client in (self._control, self._pending, self._configuration):
            if client is not None:
                await stop_quietly(client)
        self._consumer = self._control = self._pending = self._configuration = None
        self._loop = None
        if self._producer is not None:
            # A writer that stops cleanly leaves e2ad.status (a tombstone); a killed one stays with its last state.
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(
                    self._producer.send_and_wait(topics.STATUS, None, key=self.name.encode()), TOMBSTONE_SECONDS
                )
            await stop_quietly(self._producer)
            self._producer = None
        if self._sink is not None:  # stop() may run twice: after a failed start, and on exit
            await self._sink.close()
            self._sink = None

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
            ad_unavailable_since=self.hold.unavailable_since,
            configuration_version=self.active.version if self.active else None,
            configuration_state=self.active.state if self.active else None,
        )

    def _health_body(self) -> tuple[bool, dict[str, object]]:
        status = self.status()
        return status.healthy, topics.jsonable(status)

    # -- readiness (/readyz): joined, Kafka and AD reachable, writing, caught up ----------------
    def _joined(self) -> str | None:
        return None if self._loop is not None else f"not yet consuming {topics.AD_DESIRED}"

    def _ad_reachable(self) -> str | None:
        if (since := self.hold.unavailable_since) is not None:
            return f"AD unreachable since {since.isoformat(timespec='seconds')}"
        if self._sink is None or not self._sink.connected:
            return "not bound to AD"
        return None

    def _writing(self) -> str | None:
        # Not the consumer's paused partitions: the loop pauses them while each batch converges.
        if (state := self.hold.paused_by_configuration) is not None:
            return f"paused: the active configuration is {state}"
        quarantine = self.quarantine
        if quarantine.state != "running":
            return f"{quarantine.state}: {quarantine.reason or 'see e2ad quarantine status'}"
        return None

    async def _measure_lag(self) -> None:
        """Each assigned partition's lag: its highwater (known once fetched from) less the next offset to fetch."""
        assert self._consumer is not None
        lag: dict[int, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue  # not fetched from yet
            try:  # a fetch answered, so the position is valid and position() returns at once
                lag[tp.partition] = max(highwater - await self._consumer.position(tp), 0)
            except IllegalStateError:
                continue  # revoked meanwhile
        self._lag = lag
        self.metrics.show_lag(lag)

    @property
    def web_port(self) -> int | None:
        return self._health.port if self._health else None

    # -- what the loop calls --------------------------------------------------------------------
    def _fetching(self, on: bool) -> None:
        """Stop the other consumers fetching while a batch converges, and let them fetch again after.

        A caught-up consumer fetches in a loop, and the embedded broker answers an empty fetch at
        once instead of waiting fetch_max_wait_ms: while a batch converges that loop took a core
        from the DC (docs/benchmarks.md). The loop does the same with its own consumer.
        """
        assert self._control is not None and self._pending is not None and self._configuration is not None
        self._pending.fetching(on)
        self._configuration.fetching(on)
        if on:
            self._control.resume(*self._control.assignment())
        else:
            self._control.pause(*self._control.assignment())

    async def _obey(self) -> None:
        """Before each poll: the active configuration's changes, then the commands on e2ad.control
        (clear-quarantine or restart ends the hold now)."""
        assert self._control is not None and self._loop is not None and self._configuration is not None
        await self._measure_lag()
        changes = await self._configuration.changes()
        if changes:
            self._follow(changes[-1])  # the latest is the one in effect; the others only passed
            # Paused: the loop holds now; enabled: it probes, and a quarantine or outage still holds.
            if (wait := self.hold.wait()) != 0:
                self._loop.hold(wait)
            else:
                self._loop.release()
            await self._publish_status()
        for records in (await self._control.getmany(timeout_ms=0)).values():
            for record in records:
                try:
                    command = topics.decode(ControlCommand, record.value)
                except pydantic.ValidationError:
                    continue  # a command for another stage
                if not command.addresses(self.name):
                    continue
                left = self.quarantine.restart() if command.command == "restart" else self.quarantine.clear()
                if left:
                    who = command.issued_by or "an operator"
                    log.warning("writer %s: quarantine cleared by %s (%s)", self.name, who, command.command)
                    self._loop.release()
                await self._publish_status()  # a restart also resets the counts the status shows

    async def _read_backlogs(self, starts: Mapping[TopicPartition, int]) -> dict[TopicPartition, Backlog]:
        read = await kafka.latest_offsets(self.settings.kafka, starts)
        for tp, (end, _) in read.items():
            log.info(
                "writer %s reads %s from %d behind its end %d: only each group's latest record is applied",
                self.name,
                tp,
                starts[tp],
                end,
            )
        return {tp: Backlog(end, latest) for tp, (end, latest) in read.items()}

    def _follow(self, active: ActiveConfiguration | None) -> None:
        """Take the active configuration's containers, and pause writing unless it is enabled."""
        assert self._sink is not None
        if active is None:
            return  # none published yet: the file's provisioning sections, writing
        self.active = active
        if active.job is not None:  # deleted: no job, and nothing is written
            self._sink.provisioning = active.job.provisioning
        if active.provisioning:
            if self.hold.resume():
                log.warning("writer %s writes again: configuration version %d is enabled", self.name, active.version)
        elif self.hold.pause(active.state):
            log.warning(
                "writer %s pauses every partition: configuration version %d is %s",
                self.name,
                active.version,
                active.state,
            )

    async def _publish_status(self) -> None:
        assert self._producer is not None
        status = self.status()
        self.metrics.show(status)
        await self._producer.send_and_wait(topics.STATUS, topics.encode(status), key=self.name.encode())


@dataclasses.dataclass
class _HoldNewPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions assigned while the writer holds (DC unavailable, quarantined) are paused too.

    Revocation does not wait for the batch in flight: the embedded broker then never completes
    the rebalance (measured). Its new owner may converge a group this writer is still writing;
    being level-triggered, the later of the two decisions wins.
    """

    loop: PartitionLoop
    pending: PendingKafka
    consumer: AIOKafkaConsumer
    backlogs: Backlogs

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.pending.revoked(revoked)
        self.backlogs.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.loop.assigned()
        await self.pending.assigned(self.consumer, assigned)


async def run_writer(settings: Settings, stop: asyncio.Event) -> None:
    """The `e2ad write` command: one writer until `stop` is set."""
    async with WriterService(settings) as service:
        await service.run(stop)
