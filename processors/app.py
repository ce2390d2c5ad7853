"""The faust application: graph.changes → state tables → ad.desired.

Kafka is the processors' only I/O (design principle 2): the tables are changelogged to Kafka
and recovered from it, so a restarted worker carries on where it stopped.

The tables are GlobalTables because a group's members live on other partitions than the group
(users are keyed by their own id). With recovery_buffer_size=1 a worker sees changelog
updates at once (kafka-broker.md §7). This keeps one processor worker consistent; running
several needs the membership fan-out re-keyed by group (see docs/architecture.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
import faust.web
from faust.sensors.prometheus import setup_prometheus_sensors
from pydantic import ValidationError

from e2ad import kafka
from e2ad.config import describe_errors
from processors.mapping import GroupMapper
from processors.provisioning import ProvisioningState
from schemas import topics
from schemas.changes import CHANGE_RECORD
from schemas.config import Settings
from schemas.desired import DesiredGroup

log = logging.getLogger(__name__)

APP_ID = "e2ad-processors"


def create_app(settings: Settings, datadir: Path) -> faust.App:
    app = faust.App(
        APP_ID,
        **kafka.faust_options(settings.kafka),  # brokers, TLS and SASL
        store="memory://",
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

    def table(name: str) -> faust.GlobalTable:
        return app.GlobalTable(
            name,
            partitions=settings.kafka.partitions,
            recovery_buffer_size=1,
            key_type=str,  # str keys and untyped values are stored as JSON
        )

    mapper = GroupMapper(settings.mappings, settings.tokens, settings.provisioning.target_container)
    core = ProvisioningState(
        settings.provisioning, mapper, users=table("users"), groups=table("groups"), parents=table("parents")
    )

    if settings.processors.web_port is not None:
        setup_prometheus_sensors(app, name_prefix="e2ad_processors")

        @app.page("/healthz")
        async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            return web.json({"status": "ok", "app": APP_ID})

    @app.agent(changes)
    async def provision(stream: faust.Stream) -> None:
        async for event in stream.events():
            try:
                record = CHANGE_RECORD.validate_json(event.value)
            except ValidationError as exc:
                # Never stop the stream for one bad record: park it where operators look.
                key = event.key.decode(errors="replace") if event.key else "?"
                log.error("unusable record for object %s on %s:\n%s", key, topics.GRAPH_CHANGES, describe_errors(exc))
                await dead_letter.send(key=event.key, value=event.value, headers={"e2ad-error": str(exc).encode()})
                continue
            for decision in core.apply(record):
                target = desired if isinstance(decision, DesiredGroup) else results
                await target.send(key=topics.key(decision.group_id), value=topics.encode(decision))

    return app


def run_processors(settings: Settings, datadir: Path) -> None:
    """Run the processors until SIGINT/SIGTERM (faust's worker owns the event loop and signals)."""
    datadir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, datadir)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()
