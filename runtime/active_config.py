"""Reading the active provisioning configuration from e2ad.config (schemas/active.py), for every stage.

read_active reads it once (the command line); ActiveConfigFollower reads it at start and then
follows it, for the stages that run without faust (ingest, writers).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from runtime import kafka
from runtime.errors import describe_errors
from runtime.kafka import stop_quietly
from schemas import topics
from schemas.active import ACTIVE_KEY, ActiveConfiguration, job_digest
from schemas.config import KafkaSettings, ProvisioningJob

log = logging.getLogger(__name__)

CONFIG_PARTITION = TopicPartition(topics.CONFIG, 0)  # e2ad.config has one partition


class ActiveConfigurationError(ValueError):
    """e2ad.config holds a record this version cannot read; the stage must not guess a configuration."""


def parse_active(value: bytes) -> ActiveConfiguration:
    try:
        return topics.decode(ActiveConfiguration, value)
    except ValidationError as exc:
        raise ActiveConfigurationError(
            f"{topics.CONFIG} holds an unreadable active configuration:\n{describe_errors(exc)}"
        ) from None


async def read_active(settings: KafkaSettings) -> ActiveConfiguration | None:
    """The active configuration, or None when none was ever published."""
    value = (await kafka.read_latest(settings, topics.CONFIG)).get(ACTIVE_KEY)
    return None if value is None else parse_active(value)


def file_differs(stage: str, file_job: ProvisioningJob, active: ActiveConfiguration | None) -> str | None:
    """What a stage says at start when its file's provisioning sections are not the active ones (None: same)."""
    if active is None or active.job is None or active.digest == job_digest(file_job):
        return None
    return (
        f"{stage}: the provisioning sections of this configuration file (scope, mappings, membership, tokens,"
        f" provisioning) differ from the active configuration, version {active.version} applied"
        f" {active.changed_at.isoformat(timespec='seconds')} by {active.changed_by}: the active one is used."
        " `e2ad config show` prints it; `e2ad config apply FILE` makes a file's the active one"
    )


class ActiveConfigFollower:
    """Follows e2ad.config outside any consumer group: every process reads the whole one-record topic.

    start() reads it to its end; changes() then hands over what arrived since, without waiting.
    The consumer fetches in the background like any other: caught up, its empty fetches are paced
    (runtime/fetch_pacing.py, installed by runtime.kafka), so following costs a few fetches a second.
    A record that cannot be read is logged and ignored: the configuration before it stays in effect.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self.current: ActiveConfiguration | None = None  # None: none was ever published (or none readable)

    async def start(self) -> ActiveConfiguration | None:
        """Read e2ad.config from its start to its end; the active configuration, or None."""
        consumer = kafka.consumer(self._settings, group_id=None)
        await consumer.start()
        try:
            consumer.assign([CONFIG_PARTITION])
            await consumer.seek_to_beginning(CONFIG_PARTITION)
            end = (await consumer.end_offsets([CONFIG_PARTITION]))[CONFIG_PARTITION]
            while await consumer.position(CONFIG_PARTITION) < end:
                self._take_all(await consumer.getmany(CONFIG_PARTITION, timeout_ms=500))
        except BaseException:
            await stop_quietly(consumer)
            raise
        self._consumer = consumer
        return self.current

    async def changes(self) -> list[ActiveConfiguration]:
        """Each configuration that became the active one since the last call, oldest first (no waiting).

        All of them, not only the latest: ingest acts on passing through "deleted".
        """
        assert self._consumer is not None, "start() first"
        return self._take_all(await self._consumer.getmany(CONFIG_PARTITION, timeout_ms=0))

    def fetching(self, on: bool) -> None:
        """Pause or resume fetching: the writer stops its other consumers while a batch converges."""
        assert self._consumer is not None, "start() first"
        if on:
            self._consumer.resume(CONFIG_PARTITION)
        else:
            self._consumer.pause(CONFIG_PARTITION)

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)
            self._consumer = None

    def take(self, value: bytes | None, where: str = topics.CONFIG) -> bool:
        """One record's value: True when it makes another configuration the active one."""
        if value is None:
            # No e2ad command writes a tombstone ("deleted" is a state): taking it as "none
            # published" would bring back the file's configuration behind the operator's back.
            log.warning("ignoring a tombstone at %s: %s", where, self._stays())
            return False
        try:
            active = parse_active(value)
        except ActiveConfigurationError as exc:
            log.error("ignoring the record at %s: %s\n%s", where, exc, self._stays())
            return False
        if active == self.current:
            return False
        self.current = active
        log.info(
            "active configuration: version %d, %s, changed %s by %s",
            active.version,
            active.state,
            active.changed_at.isoformat(timespec="seconds"),
            active.changed_by,
        )
        return True

    def _take_all(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> list[ActiveConfiguration]:
        taken: list[ActiveConfiguration] = []
        for records in batches.values():
            for record in records:
                if record.key == ACTIVE_KEY and self.take(record.value, f"{record.topic}@{record.offset}"):
                    assert self.current is not None
                    taken.append(self.current)
        return taken

    def _stays(self) -> str:
        if self.current is None:
            return "no active configuration yet, this stage goes on with its file's"
        return f"version {self.current.version} ({self.current.state}) stays in effect"
