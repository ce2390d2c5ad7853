"""The faust application: graph.changes → the processors' state → ad.desired.

Kafka is the processors' only I/O (design principle 2). The state (users, groups, parents) is
processors/state.py's store, written through to the compacted processors.state topic and rebuilt
from it at start, so a restarted worker carries on where it stopped; it replaced faust tables,
which could read back a stale value (see that module). The store holds every partition: run one
processor worker (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
import faust.web
from aiokafka import TopicPartition
from faust.sensors.prometheus import setup_prometheus_sensors
from pydantic import ValidationError

from processors.mapping import GroupMapper
from processors.provisioning import ProvisioningState
from processors.state import ProcessorStore
from runtime import kafka
from runtime.errors import describe_errors
from runtime.faust_worker import SignalBoundedWorker
from schemas import topics
from schemas.changes import CHANGE_RECORD
from schemas.config import Settings
from schemas.desired import DesiredGroup

log = logging.getLogger(__name__)

APP_ID = "e2ad-processors"
# A record that cannot be made durable (Kafka unavailable, a defect it finds) is tried again, in
# order: never skipped, since the records after it build on its state.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# A record to send: topic, key, value (None: a tombstone), headers.
Output = tuple[faust.TopicT, bytes | None, bytes | None, dict[str, bytes] | None]


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
    store = ProcessorStore()
    mapper = GroupMapper(settings.mappings, settings.tokens, settings.provisioning.target_container)
    core = ProvisioningState(
        settings.provisioning, mapper, users=store.users, groups=store.groups, parents=store.parents
    )

    if settings.processors.web_port is not None:
        setup_prometheus_sensors(app, name_prefix="e2ad_processors")

        @app.page("/healthz")
        async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            return web.json({"status": "ok", "app": APP_ID})

    async def durable(writes: list[Output]) -> None:
        """Send, then wait until the broker has acknowledged every one."""
        sent = [await target.send(key=key, value=value, headers=headers) for target, key, value, headers in writes]
        await asyncio.gather(*sent)

    def decide(event: faust.EventT) -> list[Output]:
        try:
            record = CHANGE_RECORD.validate_json(event.value)
        except ValidationError as exc:
            # Never stop the stream for one bad record: park it where operators look.
            key = event.key.decode(errors="replace") if event.key else "?"
            log.error("unusable record for object %s on %s:\n%s", key, topics.GRAPH_CHANGES, describe_errors(exc))
            return [(dead_letter, event.key, event.value, {"e2ad-error": str(exc).encode()})]
        return [
            (desired if isinstance(d, DesiredGroup) else results, topics.key(d.group_id), topics.encode(d), None)
            for d in core.apply(record)
        ]

    async def fold(event: faust.EventT) -> None:
        message = event.message
        if store.already_applied(message.topic, message.partition, message.offset):
            return  # delivered again after a restart or rebalance: its effect is in the state
        # Outputs first, then the state that records them as published, then the offset: a
        # crash at any point repeats at most this record, and never loses a desired state.
        await durable(decide(event))
        await durable([(state, key, value, None) for key, value in store.changed_keys()])
        await durable([(state, *store.applied(message.topic, message.partition, message.offset), None)])

    async def reload() -> None:
        store.load(await kafka.read_latest(settings.kafka, topics.PROCESSORS_STATE))
        log.info("processor state loaded: %d users, %d groups", len(store.users), len(store.groups))

    @app.agent(changes)
    async def provision(stream: faust.Stream) -> None:
        await reload()
        # Acknowledged by hand, once the record's applied marker is written: faust acknowledges an
        # event its loop abandons (an exception, a cancelled stop), and would then commit past a
        # record that was never folded in for good.
        async for event in stream.noack().events():
            attempt = 0
            while True:
                try:
                    if attempt:
                        await reload()  # memory may hold writes of this record that never reached Kafka
                    await fold(event)
                    break
                except Exception as exc:
                    attempt += 1
                    delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempt - 1))
                    log.error(
                        "record %s of %s[%d] not folded in (%s: %s); retrying in %.1f s",
                        event.message.offset, event.message.topic, event.message.partition,
                        type(exc).__name__, exc, delay,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
            await stream.ack(event)

    return app


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
