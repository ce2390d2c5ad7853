"""The faust application: graph.changes → the processors' state → ad.desired.

Kafka is the processors' only I/O (design principle 2). The state (users, groups, parents) is
processors/state.py's store, written through to the compacted processors.state topic and rebuilt
from it at start, so a restarted worker carries on where it stopped; it replaced faust tables,
which could read back a stale value (see that module). The store holds every partition: run one
processor worker (docs/architecture.md).

Every desired state goes through one deletion guard (processors/deletion_guard.py; one worker, so
it sees every delete): what it passes goes to ad.desired, what it stages to the compacted
ad.staged-deletes with a StagedDelete record on ad.results, and its state to processors.state
under guard/. A timer releases the deletes whose window has passed; operator commands on
e2ad.control (approve-deletes, reject-deletes, restart) are consumed under the processors'
consumer group, so one issued while they are down is applied at start. Fold, timer and commands
take turns (one lock), each making its outputs durable before the state that records them.
The full round a `restart --force-deletes` triggers sends no end signal yet: the guard treats it
as finished once deletes.window_seconds have passed since the restart.

Scope and mappings come from the active configuration on e2ad.config (processors/configuration.py),
not from the file, once there is one: a new version re-evaluates every group of the state, in
turn with the fold, and its outputs go through the same guard (docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import faust
import faust.web
from aiokafka import TopicPartition
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import Gauge
from pydantic import ValidationError

from processors.configuration import (
    compile_core,
    evaluation_marker,
    first_configuration,
    needs_evaluation,
)
from processors.deletion_guard import ALL, DeletionGuard, GuardOutcome, GuardSettings, utc_now
from processors.guard_records import TripNotice, processor_status, staged_result
from processors.provisioning import Decision, ProvisioningState
from processors.state import ProcessorStore
from runtime import kafka
from runtime.active_config import ActiveConfigurationError, file_differs, parse_active, read_active
from runtime.errors import describe_errors
from runtime.faust_worker import SignalBoundedWorker
from runtime.mail import Mailer
from runtime.metrics import CHANGE_LATENCY, seconds_since
from runtime.names import instance_name
from runtime.outages import kafka_not_reachable
from runtime.web import caught_up, readiness
from schemas import topics
from schemas.active import ACTIVE_KEY, ActiveConfiguration
from schemas.changes import CHANGE_RECORD
from schemas.config import Settings
from schemas.control import ControlCommand
from schemas.deletes import DeletionTrip, StagedDelete
from schemas.desired import DesiredGroup
from schemas.status import PROCESSORS_KEY, ProcessorStatus

log = logging.getLogger(__name__)

APP_ID = "e2ad-processors"
# A record that cannot be made durable (Kafka unavailable, a defect it finds) is tried again, in
# order: never skipped, since the records after it build on its state.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# How often the timer looks for deletes whose window has passed (and for a forced round's end).
TICK_SECONDS = 1.0
# The counts on e2ad.status are refreshed at most this often; a trip or its end at once.
STATUS_EVERY_SECONDS = 5.0
# Caught up (/readyz): at most this many records of graph.changes not yet folded in, over all partitions.
READY_MAX_LAG = 1000
# A record to send: topic, key, value (None: a tombstone), headers.
Output = tuple[faust.TopicT, bytes | None, bytes | None, dict[str, bytes] | None]


@dataclass
class InEffect:
    """The active configuration the processors follow, and the core evaluating groups with it (None: deleted)."""

    active: ActiveConfiguration | None = None
    core: ProvisioningState | None = None


@dataclass
class Staged:
    """What one step staged: a trip (at most one), and the deletes, for the trip's e-mail."""

    trip: DeletionTrip | None = None
    deletes: list[StagedDelete] = field(default_factory=list)


# faust's own metrics (messages in and out per topic, offsets per partition) carry this prefix.
FAUST_METRICS_PREFIX = "e2ad_processors"
# On the default registry, which faust's Prometheus sensor serves at /metrics.
STAGED_DELETES = Gauge("e2ad_processors_staged_deletes", "Deletes staged by the deletion guard for an operator")
PENDING_DELETES = Gauge("e2ad_processors_pending_deletes", "Deletes waiting for the deletion guard's window")
THRESHOLD_EXCEEDED = Gauge(
    "e2ad_processors_delete_threshold_exceeded", "1 while the processors are quarantined: delete threshold exceeded"
)


def create_app(settings: Settings, datadir: Path) -> faust.App:
    app = faust.App(
        APP_ID,
        **kafka.faust_options(settings.kafka),  # brokers, TLS and SASL
        datadir=str(datadir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        web_enabled=settings.processors.web_port is not None,
        web_bind=settings.processors.web_host,
        web_port=settings.processors.web_port or 6066,
        key_serializer="raw",
        value_serializer="raw",
    )
    changes = app.topic(topics.GRAPH_CHANGES, key_type=bytes, value_type=bytes)
    desired = app.topic(topics.AD_DESIRED, key_type=bytes, value_type=bytes)
    results = app.topic(topics.AD_RESULTS, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.AD_DEAD_LETTER, key_type=bytes, value_type=bytes)
    state = app.topic(topics.PROCESSORS_STATE, key_type=bytes, value_type=bytes)
    staged_deletes = app.topic(topics.AD_STAGED_DELETES, key_type=bytes, value_type=bytes)
    status_topic = app.topic(topics.STATUS, key_type=bytes, value_type=bytes)
    control = app.topic(topics.CONTROL, key_type=bytes, value_type=bytes)
    config_topic = app.topic(topics.CONFIG, key_type=bytes, value_type=bytes)
    store = ProcessorStore()
    current = InEffect()
    guard_settings = GuardSettings(settings.deletes.threshold, settings.deletes.window_seconds)
    gate = GuardGate(guard_settings)
    if guard_settings.threshold == 0:
        log.warning("deletes.threshold is 0: the deletion guard is off, every delete reaches AD at once, however many")
    mailer = Mailer(settings.notifications.email) if settings.notifications.email else None
    # Fold, timer and operator commands take turns: the state's writes of one never interleave another's.
    turn = asyncio.Lock()
    loaded = asyncio.Event()

    if settings.processors.web_port is not None:
        setup_prometheus_sensors(app, name_prefix=FAUST_METRICS_PREFIX)

        @app.page("/healthz")
        async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            status = gate.status(utc_now())
            if not status.healthy:
                body = {"status": status.state, "reason": status.reason, "app": APP_ID, **topics.jsonable(status)}
                return web.json(body, status=503)
            return web.json({"status": "ok", "app": APP_ID, "staged": status.staged, "pending": status.pending})

        def started() -> str | None:
            return None if loaded.is_set() else "loading the state and the active configuration"

        def behind() -> int:
            monitor = app.monitor  # faust's Prometheus monitor tracks the offsets it sees
            return changes_behind(monitor.tp_end_offsets, monitor.tp_read_offsets, monitor.tp_committed_offsets)

        ready = readiness([started, kafka_not_reachable, caught_up(topics.GRAPH_CHANGES, behind, READY_MAX_LAG)])

        @app.page("/readyz")
        async def readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            is_ready, body = ready()
            return web.json({**body, "app": APP_ID}, status=200 if is_ready else 503)

    async def durable(writes: list[Output]) -> None:
        """Send, then wait until the broker has acknowledged every one."""
        sent = [await target.send(key=key, value=value, headers=headers) for target, key, value, headers in writes]
        await asyncio.gather(*sent)

    def route(outcome: GuardOutcome, effects: Staged) -> list[Output]:
        """The records a guard decision asks for: ad.desired, ad.staged-deletes, ad.results."""
        writes: list[Output] = [(desired, topics.key(d.group_id), topics.encode(d), None) for d in outcome.publish]
        staged = tuple(named(item) for item in outcome.staged)
        for item in staged:
            key = topics.key(item.group_id)
            writes.append((staged_deletes, key, topics.encode(item), None))
            writes.append((results, key, topics.encode(staged_result(item)), None))
        ended = [*outcome.unstaged, *outcome.superseded, *(item.group_id for item in outcome.dropped)]
        writes += [(staged_deletes, topics.key(group_id), None, None) for group_id in dict.fromkeys(ended)]
        effects.trip = outcome.tripped or effects.trip
        effects.deletes += staged
        return writes

    def named(item: StagedDelete) -> StagedDelete:
        """An absent state carries no attributes: the display name is the one the state last knew."""
        if item.display_name is not None:
            return item
        name = (store.groups.get(item.group_id) or {}).get("attributes", {}).get("displayName")
        return item.model_copy(update={"display_name": name}) if isinstance(name, str) else item

    def status_writes(now: dt.datetime, *, at_once: bool) -> list[Output]:
        """The processors' record on e2ad.status when it changed (its counts: at most every few seconds)."""
        status = gate.status_to_publish(now, at_once=at_once)
        return [] if status is None else [(status_topic, topics.key(PROCESSORS_KEY), topics.encode(status), None)]

    def guard_state() -> list[Output]:
        return [(state, key, value, None) for key, value in store.guard_writes(gate.guard.take_writes())]

    notices: list[TripNotice] = []  # trips whose e-mail waits for the burst to stop growing

    def noticed(effects: Staged, now: dt.datetime) -> None:
        """After the step is durable: a trip opens its e-mail; deletes staged during it join that."""
        if effects.trip is not None:
            trip = effects.trip
            log.warning(
                "%s: %d groups deleted within %g s (threshold %d); the deletes are staged, none applied."
                " See `e2ad deletes list`, then `e2ad deletes approve --all` or `e2ad deletes reject --all`",
                trip.reason, trip.burst_deletes, trip.window_seconds, trip.threshold,
            )  # fmt: skip
            notices.append(TripNotice(trip, now))
        if notices and effects.deletes:
            notices[-1].add(effects.deletes, now)

    def notify_due(now: dt.datetime) -> None:
        """One e-mail per trip (a record folded in again after a crash may repeat it)."""
        for notice in [n for n in notices if n.due(now)]:
            notices.remove(notice)
            subject, body = notice.email()
            log.warning("%s: %d deletes staged", notice.trip.reason, len(notice.staged))
            if mailer is not None:
                mailer.notify(subject, body)
            else:
                log.warning("no e-mail is configured (notifications.email): the trip is only logged")

    def publish(decisions: list[Decision], effects: Staged) -> list[Output]:
        """Desired states through the deletion guard; mapping failures to the provisioning log."""
        writes: list[Output] = []
        for decision in decisions:
            if isinstance(decision, DesiredGroup):
                writes += route(gate.guard.decide(decision), effects)
            else:
                writes.append((results, topics.key(decision.group_id), topics.encode(decision), None))
        return writes

    def decide(event: faust.EventT, effects: Staged) -> tuple[list[Output], dt.datetime | None]:
        """The outputs of one graph.changes record, and when ingest observed its change (None: unusable)."""
        try:
            record = CHANGE_RECORD.validate_json(event.value)
        except ValidationError as exc:
            # Never stop the stream for one bad record: park it where operators look.
            key = event.key.decode(errors="replace") if event.key else "?"
            log.error("unusable record for object %s on %s:\n%s", key, topics.GRAPH_CHANGES, describe_errors(exc))
            return [(dead_letter, event.key, event.value, {"e2ad-error": str(exc).encode()})], None
        if current.core is None:
            return [], None  # the configuration is deleted: nothing is provisioned, no state is kept
        return publish(current.core.apply(record), effects), record.observed_at

    async def fold(event: faust.EventT) -> None:
        message = event.message
        if store.already_applied(message.topic, message.partition, message.offset):
            return  # delivered again after a restart or rebalance: its effect is in the state
        # Outputs first, then the state that records them as published, then the offset: a
        # crash at any point repeats at most this record, and never loses a desired state.
        effects = Staged()
        outputs, observed_at = decide(event, effects)
        await durable(outputs + status_writes(utc_now(), at_once=effects.trip is not None))
        if observed_at is not None and any(target is desired for target, *_ in outputs):
            CHANGE_LATENCY.labels("processors").observe(seconds_since(observed_at, utc_now()))
        await durable([(state, key, value, None) for key, value in store.changed_keys()] + guard_state())
        await durable([(state, *store.applied(message.topic, message.partition, message.offset), None)])
        noticed(effects, utc_now())
        if store.replay_caught_up():
            await horizon_reached()

    async def command(event: faust.EventT) -> None:
        try:
            order = topics.decode(ControlCommand, event.value)
        except ValidationError as exc:
            log.error("unusable command on %s, ignored:\n%s", topics.CONTROL, describe_errors(exc))
            return
        guard = gate.guard
        if order.command == "approve-deletes":
            outcome = guard.approve(order.groups if order.groups is not None else ALL, order.command_id)
        elif order.command == "reject-deletes":
            outcome = guard.reject(order.groups if order.groups is not None else ALL, order.command_id)
        elif order.command == "restart":
            outcome = guard.restart(forced(order, utc_now(), settings.deletes.window_seconds), order.command_id)
        else:
            return  # clear-quarantine is the writers'
        for item in outcome.dropped:
            if current.core is not None:
                current.core.kept(item.group_id)  # its AD group stays: a later delete of another reason must reach AD
        # The command's id is in the guard's state: read again after a crash, it changes nothing.
        await durable(route(outcome, Staged()) + status_writes(utc_now(), at_once=True))
        await durable([(state, key, value, None) for key, value in store.changed_keys()] + guard_state())
        log.info(
            "%s (%s) applied: %d published, %d staged deletes ended",
            order.command, order.command_id, len(outcome.publish), len(outcome.unstaged),
        )  # fmt: skip

    async def release() -> None:
        """The timer's turn: deletes one window old go out; a forced round ends; the counts refresh."""
        now = utc_now()
        guard = gate.guard
        effects = Staged()
        outputs: list[Output] = []
        due = guard.next_release_at()
        if due is not None and due <= now:
            outputs += route(guard.release_due(), effects)
        if guard.forcing_since is not None and now - guard.forcing_since >= guard_settings.window:
            guard.round_finished()
            log.info("the forced round is taken as finished: deletes are guarded again")
        await durable(outputs + status_writes(now, at_once=False))
        await durable(guard_state())
        noticed(effects, now)
        notify_due(now)

    async def reconfigure(active: ActiveConfiguration) -> None:
        """Follow a configuration: every known group evaluated with it, from the state, without Graph."""
        previous = current.active
        if previous is not None and active.version <= previous.version:
            return  # read again (a restart, a rebalance): already in effect
        now = utc_now()
        was_deleted = (store.evaluated or {}).get("state") == "deleted"
        effects = Staged()
        outputs: list[Output] = []
        if active.state == "deleted":
            # Forgotten, not deleted: the AD groups stay; a later configuration starts from a full round.
            store.forget()
            outputs += route(gate.guard.discard(), effects)
            current.core = None
        else:
            try:
                core = core_for(active)
            except ValueError as exc:
                if previous is None:
                    raise ActiveConfigurationError(f"{topics.CONFIG} version {active.version}: {exc}") from None
                log.error(
                    "configuration version %d cannot be used, version %d stays in effect: %s",
                    active.version, previous.version, exc,
                )  # fmt: skip
                return
            current.core = core
            if needs_evaluation(active, store.evaluated):
                outputs += publish(core.reevaluate(active.changed_at), effects)
            if was_deleted:
                # The state was forgotten: a full delta round rebuilds it. Asked for only now that the
                # processors follow this configuration, so that none of the round is folded into the
                # deleted one; before the marker, so that a crash in between asks again (ingest runs
                # one more full round, nothing else).
                restart = ControlCommand(
                    command="restart", command_id=f"config-{active.version}", issued_by=instance_name("processors")
                )
                outputs.append((control, None, topics.encode(restart), None))
        await durable(outputs + status_writes(now, at_once=True))
        changed = [(state, key, value, None) for key, value in store.changed_keys()] + guard_state()
        await durable([*changed, (state, *store.evaluated_with(evaluation_marker(active)), None)])
        # Only now: a step that fails part way is tried again, on the state reloaded, as a new configuration.
        current.active = active
        noticed(effects, now)
        log.info(
            "configuration version %d (%s) in effect: %d groups re-evaluated, %d records published",
            active.version, active.state, len(store.groups), len(outputs),
        )  # fmt: skip

    def core_for(active: ActiveConfiguration) -> ProvisioningState:
        return compile_core(
            settings, active, users=store.users, groups=store.groups, parents=store.parents, replaying=store.replaying()
        )

    async def horizon_reached() -> None:
        """A replay's horizon is reached: every group's desired state, evaluated once from the state folded up to it.

        Groups already published with that state are not published again; the writers, level-
        triggered, leave the groups already right in AD as they are.
        """
        now = utc_now()
        effects = Staged()
        outputs: list[Output] = []
        if current.active is not None and current.active.job is not None:
            current.core = core_for(current.active)  # no longer paused by the replay
            outputs = publish(current.core.reevaluate(now), effects)
        await durable(outputs + status_writes(now, at_once=True))
        changed = [(state, key, value, None) for key, value in store.changed_keys()] + guard_state()
        await durable([*changed, (state, *store.replay_finished(), None)])
        noticed(effects, now)
        log.info(
            "replay caught up with its horizon: %d groups evaluated, %d records published",
            len(store.groups),
            len(outputs),
        )

    async def configuration() -> ActiveConfiguration:
        """The active configuration; the file's, published as version 1, when there is none yet."""
        active = await read_active(settings.kafka)
        if active is None:
            active = first_configuration(settings.job, changed_by=instance_name("processors"), source=None)
            await durable([(config_topic, ACTIVE_KEY, topics.encode(active), None)])
            log.info("%s was empty: this file's configuration is published as version 1", topics.CONFIG)
        elif (differs := file_differs("processors", settings.job, active)) is not None:
            log.warning("%s", differs)
        return active

    async def reload() -> None:
        store.load(await kafka.read_latest(settings.kafka, topics.PROCESSORS_STATE))
        gate.load(store.guard)
        log.info(
            "processor state loaded: %d users, %d groups, %d deletes staged, %d pending",
            len(store.users), len(store.groups), gate.guard.status().staged, gate.guard.status().pending,
        )  # fmt: skip

    async def start() -> None:
        async with turn:
            await reload()
            current.active = None  # evaluated again against the state just loaded
            await reconfigure(await configuration())
            if store.replay_caught_up():
                await horizon_reached()  # nothing left below it (an empty replay, or a crash before its tombstone)
            # The status as the state has it: quarantined again after a restart while deletes are staged.
            await durable(status_writes(utc_now(), at_once=True))
            loaded.set()

    async def in_turn(what: Callable[[], str], step: Callable[[], Awaitable[None]]) -> None:
        """Run a step until it is durable, in turn, on the state reloaded after each failure."""
        async with turn:
            attempt = 0
            while True:
                try:
                    if attempt:
                        await reload()  # memory may hold writes of this step that never reached Kafka
                    await step()
                    return
                except Exception as exc:
                    attempt += 1
                    delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempt - 1))
                    log.error(
                        "%s not made durable (%s: %s); retrying in %.1f s", what(), type(exc).__name__, exc, delay
                    )
                    await asyncio.sleep(delay)
                finally:
                    gate.refresh_metrics()

    def describe(event: faust.EventT) -> Callable[[], str]:
        message = event.message
        return lambda: f"record {message.offset} of {message.topic}[{message.partition}]"

    @app.agent(changes)
    async def provision(stream: faust.Stream) -> None:
        await start()
        # Acknowledged by hand, once the record's applied marker is written: faust acknowledges an
        # event its loop abandons (an exception, a cancelled stop), and would then commit past a
        # record that was never folded in for good.
        async for event in stream.noack().events():
            await in_turn(describe(event), functools.partial(fold, event))
            await stream.ack(event)

    @app.agent(control)
    async def operator_commands(stream: faust.Stream) -> None:
        await loaded.wait()
        # Committed once applied: a command issued while the processors are down is applied at start.
        async for event in stream.noack().events():
            await in_turn(describe(event), functools.partial(command, event))
            await stream.ack(event)

    @app.agent(config_topic)
    async def follow_configuration(stream: faust.Stream) -> None:
        await loaded.wait()
        async for event in stream.noack().events():
            try:
                active = parse_active(event.value)
            except ActiveConfigurationError as exc:
                log.error("%s; the configuration in effect stays", exc)
            else:
                what = f"configuration version {active.version}"
                await in_turn(functools.partial(str, what), functools.partial(reconfigure, active))
            await stream.ack(event)

    @app.task
    async def guard_timer() -> None:
        try:
            await loaded.wait()
            while True:
                await asyncio.sleep(TICK_SECONDS)
                await in_turn(lambda: "the deletion guard's release", release)
        finally:
            if mailer is not None:
                await mailer.close()  # a trip's message still being sent gets its grace period

    return app


class GuardGate:
    """The processors' one deletion guard, rebuilt from the state at each reload, and what it reports."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.guard = DeletionGuard(settings)
        self._published: ProcessorStatus | None = None

    def load(self, records: dict[str, object]) -> None:
        self.guard = DeletionGuard.from_state(records, self.settings)  # type: ignore[arg-type]
        self._published = None  # publish again what the state holds

    def status(self, now: dt.datetime) -> ProcessorStatus:
        return processor_status(self.guard.status(), self.settings, now)

    def status_to_publish(self, now: dt.datetime, *, at_once: bool) -> ProcessorStatus | None:
        """The status, when it differs from the one last published (its counts: every few seconds)."""
        status = self.status(now)
        last = self._published
        if last is not None:
            same = status.model_dump(exclude={"updated_at"}) == last.model_dump(exclude={"updated_at"})
            recent = (now - last.updated_at).total_seconds() < STATUS_EVERY_SECONDS
            if same or (recent and not at_once and status.state == last.state):
                return None
        self._published = status
        return status

    def refresh_metrics(self) -> None:
        status = self.guard.status()
        STAGED_DELETES.set(status.staged)
        PENDING_DELETES.set(status.pending)
        THRESHOLD_EXCEEDED.set(1 if status.trip else 0)


def changes_behind(
    end: Mapping[TopicPartition, int], read: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]
) -> int:
    """Records of graph.changes not yet folded in: each partition's end offset less the next offset to read
    (after the last record read, else the last commit); a partition with neither is not counted."""
    behind = 0
    for tp, end_offset in end.items():
        if tp.topic != topics.GRAPH_CHANGES:
            continue
        next_offset = read[tp] + 1 if tp in read else committed.get(tp)
        if next_offset is not None:
            behind += max(end_offset - next_offset, 0)
    return behind


def forced(order: ControlCommand, now: dt.datetime, window_seconds: float) -> bool:
    """Whether a restart lets deletes through: only when asked, and only while the ask is fresh.

    A processors group that has never committed on e2ad.control reads it from its start (a day of
    commands): a `restart --force-deletes` issued then, for a burst long handled, must not open
    today's deletes. Read more than one window after it was issued, it acts as a plain restart.
    """
    if not order.force_deletes:
        return False
    if (now - order.issued_at).total_seconds() <= window_seconds:
        return True
    log.warning(
        "restart %s asked to force deletes at %s, more than %g s ago: applied without forcing them",
        order.command_id, order.issued_at.isoformat(timespec="seconds"), window_seconds,
    )  # fmt: skip
    return False


class StateLost(RuntimeError):
    """processors.state is empty while the processors have consumed graph.changes before."""


def lost_state_remedy(state_written: bool, committed: dict[int, int], beginnings: dict[int, int]) -> str | None:
    """What to do at start when the state is gone but graph.changes was consumed (None: nothing).

    Folding later changes into an empty state would publish groups without the members it lost, so
    the processors either rebuild it from the start of graph.changes, when nothing has expired from
    it yet ("rebuild"), or refuse to start (StateLost).
    """
    if state_written or not any(committed.values()):
        return None
    if all(offset == 0 for offset in beginnings.values()):
        return "rebuild"
    raise StateLost(
        f"{topics.PROCESSORS_STATE} is empty, but the consumer group {APP_ID} has consumed {topics.GRAPH_CHANGES}"
        f" before (an upgrade from faust tables, or the topic deleted), and {topics.GRAPH_CHANGES} no longer"
        " holds every change (retention). Folding later changes into an empty state would drop members."
        f" Run a full delta round: stop `e2ad ingest`, delete the records of {topics.GRAPH_CURSORS} so that"
        f" its next round is a full one, reset {APP_ID}'s offsets on {topics.GRAPH_CHANGES} to the end, then"
        " start the processors and ingest again."
    )


async def prepare_state(settings: Settings) -> None:
    """Check processors.state against the group's committed offsets before faust starts (see above)."""
    reader = kafka.consumer(settings.kafka, group_id=APP_ID)
    await reader.start()
    try:
        state_partitions = [TopicPartition(topics.PROCESSORS_STATE, 0)]
        written = any((await reader.end_offsets(state_partitions)).values())
        partitions = [
            TopicPartition(topics.GRAPH_CHANGES, p) for p in reader.partitions_for_topic(topics.GRAPH_CHANGES) or ()
        ]
        committed = {tp.partition: await reader.committed(tp) or 0 for tp in partitions}
        beginnings = {tp.partition: offset for tp, offset in (await reader.beginning_offsets(partitions)).items()}
        if lost_state_remedy(written, committed, beginnings) == "rebuild":
            log.warning(
                "%s is empty but %s was consumed before: rebuilding the state from the start of %s",
                topics.PROCESSORS_STATE, APP_ID, topics.GRAPH_CHANGES,
            )  # fmt: skip
            reader.assign(partitions)
            await reader.commit(dict.fromkeys(partitions, 0))
    finally:
        await reader.stop()


def run_processors(settings: Settings, datadir: Path) -> None:
    """Run the processors until SIGINT/SIGTERM (faust's worker owns the event loop and signals)."""
    datadir.mkdir(parents=True, exist_ok=True)
    asyncio.run(prepare_state(settings))
    app = create_app(settings, datadir)
    worker = SignalBoundedWorker(app, loglevel=settings.log_level.lower(), redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()
