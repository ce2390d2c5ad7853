"""Kafka plumbing shared by every stage: clients built from settings, topic creation, compacted reads.

Only the Kafka protocol is used, so the embedded noida-db broker and Apache Kafka behave alike.
Every client, faust's included, gets its TLS and SASL options from security_options().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from runtime import fetch_pacing
from schemas import topics
from schemas.config import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings

log = logging.getLogger(__name__)
fetch_pacing.install()  # every e2ad process that talks to Kafka imports this module, faust's included


def security_options(settings: KafkaSettings) -> dict[str, object]:
    """aiokafka's security arguments (the same for producers, consumers and admin clients).

    Raises ValueError naming the field when a CA or client certificate cannot be loaded.
    """
    options: dict[str, object] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol in SASL_PROTOCOLS:
        # KafkaSettings guarantees a PLAIN or SCRAM mechanism with a username and password here.
        assert settings.sasl_password is not None
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client context that verifies the brokers' certificates and host names (aiokafka's default)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_optional(settings.ssl_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"kafka.ssl_ca_file: cannot load {settings.ssl_ca_file}: {_reason(exc)}") from None
    if settings.ssl_cert_file is not None:
        try:
            context.load_cert_chain(settings.ssl_cert_file, _optional(settings.ssl_key_file))
        except (OSError, ssl.SSLError) as exc:
            fields = "kafka.ssl_cert_file" + (", kafka.ssl_key_file" if settings.ssl_key_file else "")
            raise ValueError(f"{fields}: cannot load {settings.ssl_cert_file}: {_reason(exc)}") from None
    return context


def faust_options(settings: KafkaSettings) -> dict[str, object]:
    """faust.App's broker and broker_credentials: faust hands the credentials to its aiokafka clients."""
    import faust  # here: only the processors need faust, and the other stages start faster without it

    options = security_options(settings)
    context = options.get("ssl_context")
    credentials: faust.types.CredentialsT | None = None
    if settings.security_protocol in SASL_PROTOCOLS:
        # faust picks SASL_SSL when the credentials carry an SSL context, SASL_PLAINTEXT otherwise.
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=str(options["sasl_plain_password"]),
            ssl_context=context,  # type: ignore[arg-type]
            mechanism=settings.sasl_mechanism,
        )
    elif settings.security_protocol == "SSL":
        credentials = faust.SSLCredentials(context)  # type: ignore[arg-type]
    if settings.group_instance_id:
        _faust_leaves_its_group_on_stop()
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        "broker_credentials": credentials,
        # A static member, as group_member() makes the other stages' consumers.
        "consumer_group_instance_id": settings.group_instance_id,
    }


def _faust_leaves_its_group_on_stop() -> None:
    """Make faust's consumer leave its group on a clean stop also as a static member (see leave_and_stop)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread, "_e2ad_leaves_group", False):
        return
    stop_thread = AIOKafkaConsumerThread.on_thread_stop

    async def on_thread_stop(self: AIOKafkaConsumerThread) -> None:
        if self._consumer is not None:
            _leave_on_close(self._consumer)
        await stop_thread(self)  # stops faust's own work, then its aiokafka consumer

    AIOKafkaConsumerThread.on_thread_stop = on_thread_stop  # type: ignore[method-assign]
    AIOKafkaConsumerThread._e2ad_leaves_group = True  # type: ignore[attr-defined]


def _optional(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        **security_options(settings),  # type: ignore[arg-type]
    )


def producer(settings: KafkaSettings, **overrides: object) -> AIOKafkaProducer:
    # acks=all: a record the webhook acknowledged to Graph must survive a broker restart.
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "linger_ms": 5,
        **security_options(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(settings: KafkaSettings, *topic_names: str, group_id: str | None, **overrides: object) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **security_options(settings),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topic_names, **options)  # type: ignore[arg-type]


def group_member(settings: KafkaSettings, *topic_names: str, group_id: str, **overrides: object) -> AIOKafkaConsumer:
    """A consumer that subscribes in a stage's consumer group: a static member named kafka.group_instance_id when set.

    A static member (KIP-345) killed and restarted under its name replaces its old self at once. It is
    the only way a killed stage gets its partitions back on the embedded broker, which never expires
    a member that died without leaving (docs/architecture.md, the embedded broker's limits). Stop it
    with leave_and_stop(), so that a clean stop still hands its partitions over at once.
    """
    instance = {"group_instance_id": settings.group_instance_id} if settings.group_instance_id else {}
    return consumer(settings, *topic_names, group_id=group_id, **instance, **overrides)  # type: ignore[arg-type]


async def leave_and_stop(member: AIOKafkaConsumer, timeout: float = 1.5) -> None:
    """Stop a group member, leaving its group also when it is a static member (stop_quietly's bounds).

    aiokafka sends no LeaveGroup for a static member, so the group would keep it until its session
    times out (on the embedded broker: for good) and the partitions wait; `e2ad replay` and
    `e2ad topics ensure` would refuse meanwhile. Kafka accepts a LeaveGroup by member id from a
    static member and rebalances at once, as for a dynamic one.
    """
    _leave_on_close(member)
    await stop_quietly(member, timeout)


def _leave_on_close(member: AIOKafkaConsumer) -> None:
    coordinator = getattr(member, "_coordinator", None)  # created by start(); aiokafka has no public handle
    if coordinator is not None:
        # aiokafka's close() sends LeaveGroup only for a member without an instance id; nothing else
        # reads it on the way out.
        coordinator._group_instance_id = None


HOUR_MS = 60 * 60 * 1000
DAY_MS = 24 * HOUR_MS
# Read from each topic's aiokafka DescribeConfigs entry: (name, value, read_only, config_source, …).
_DYNAMIC_TOPIC_CONFIG = 1  # a value set on the topic itself (not a broker or built-in default)


def _deleted_after(retention_ms: int, segment_ms: int) -> dict[str, str]:
    # Records expire a closed segment at a time, so a segment spans a fraction of the retention;
    # Kafka's default segment (7 days or 1 GB) would keep a 6-hour topic for a week.
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms), "segment.ms": str(segment_ms)}


# Compaction, too, only cleans closed segments: an hourly roll bounds how many superseded values wait.
_COMPACTED = {"cleanup.policy": "compact", "segment.ms": str(HOUR_MS)}


def topic_configs(settings: KafkaSettings) -> dict[str, dict[str, str]]:
    """Each topic's cleanup, chosen by its role (docs/architecture.md, Topics, says why for each).

    Every topic gets explicit values: the embedded broker keeps every record in memory until
    retention or compaction removes it, and Kafka's broker defaults suit none of these topics.
    """
    provisioning_log = _deleted_after(settings.results_retention_days * DAY_MS, DAY_MS)
    return {
        topics.GRAPH_NOTIFICATIONS: _deleted_after(6 * HOUR_MS, HOUR_MS),  # hints, read within seconds
        topics.GRAPH_CHANGES: _deleted_after(7 * DAY_MS, DAY_MS),  # replayable for a week
        topics.GRAPH_CURSORS: _COMPACTED,
        topics.AD_DESIRED: _COMPACTED,
        topics.AD_RESULTS: provisioning_log,
        topics.AD_DEAD_LETTER: provisioning_log,
        topics.AD_PENDING: _COMPACTED,
        topics.AD_CREATED: _deleted_after(DAY_MS, HOUR_MS),  # followed from its end by running writers
        topics.AD_STAGED_DELETES: _COMPACTED,  # the current set: `e2ad deletes list` reads it to its end
        topics.CONTROL: _deleted_after(DAY_MS, HOUR_MS),  # read from its end; a day of operator commands
        topics.STATUS: _COMPACTED,
        topics.PROCESSORS_STATE: _COMPACTED,
        topics.CONFIG: _COMPACTED,  # the active configuration: one record, read to its end at every start
    }


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    configs = topic_configs(settings)
    return [
        NewTopic(
            name,
            settings.partitions if name in topics.KEYED_BY_OBJECT else 1,
            settings.replication_factor,
            topic_configs=configs[name],
        )
        for name in topics.ALL_TOPICS
    ]


async def ensure_topics(settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Create e2ad's missing topics and align the cleanup of existing ones (partition counts are kept)."""
    client = admin(settings)
    await _start_with_retry(client.start, settings, timeout)
    try:
        await apply_topic_specs(client, topic_specs(settings))
    finally:
        await client.close()


async def apply_topic_specs(client: AIOKafkaAdminClient, specs: list[NewTopic]) -> dict[str, str]:
    """Create the topics that do not exist; give existing ones the specs' configs where they differ.

    Aligning makes a change of `kafka.results_retention_days`, or of this table, reach topics created
    by an earlier version (which had no retention at all). Settings on a topic that the specs do not
    name, an operator's `min.insync.replicas` say, are kept.

    Returns the topics whose configs could not be read or aligned, with the broker's reason (each
    is logged as a warning too): a stage starts anyway, `e2ad topics ensure` fails on them.
    """
    existing = set(await client.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        # another process may create them between list and create
        with contextlib.suppress(TopicAlreadyExistsError):
            await client.create_topics(missing)
        log.info("created topics %s", ", ".join(t.name for t in missing))
    present = [spec for spec in specs if spec.name in existing]
    return await _align_configs(client, present) if present else {}


async def _align_configs(client: AIOKafkaAdminClient, specs: list[NewTopic]) -> dict[str, str]:
    wanted = {spec.name: spec.topic_configs for spec in specs}
    failed: dict[str, str] = {}
    try:
        described = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted])
    except KafkaError as exc:
        # A broker without DescribeConfigs (tansu), or an account without the right to describe.
        log.warning("cannot read the configs of e2ad's topics, they stay as they are: %r", exc)
        return dict.fromkeys(wanted, f"cannot read configs: {exc!r}")
    changes: list[ConfigResource] = []
    for response in described:
        for error_code, error_message, _, name, entries in response.resources:
            if error_code:
                log.warning("cannot read the configs of topic %s (error %s %s)", name, error_code, error_message)
                failed[name] = f"cannot read configs: error {error_code} {error_message}"
                continue
            current = {entry[0]: entry[1] for entry in entries}
            differing = {key: value for key, value in wanted[name].items() if current.get(key) != value}
            if not differing:
                continue
            # AlterConfigs replaces every value set on the topic: send the others along unchanged.
            kept = {entry[0]: entry[1] for entry in entries if entry[3] == _DYNAMIC_TOPIC_CONFIG and not entry[2]}
            changes.append(ConfigResource(ConfigResourceType.TOPIC, name, {**kept, **wanted[name]}))
            log.info(
                "aligning topic %s: %s",
                name,
                ", ".join(f"{key} {current.get(key)} -> {value}" for key, value in sorted(differing.items())),
            )
    if not changes:
        return failed
    try:
        altered = await client.alter_configs(changes)
    except KafkaError as exc:
        log.warning("cannot align the configs of e2ad's topics, they stay as they are: %r", exc)
        return failed | {change.name: f"cannot alter configs: {exc!r}" for change in changes}
    for response in altered:
        for error_code, error_message, _, name in response.resources:
            if error_code:
                log.warning("cannot align the configs of topic %s (error %s %s)", name, error_code, error_message)
                failed[name] = f"cannot alter configs: error {error_code} {error_message}"
    return failed


async def wait_until_ready(settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Wait until the broker answers the Kafka API (a listening port alone is not enough)."""
    client = admin(settings)
    await _start_with_retry(client.start, settings, timeout)
    try:
        await client.list_topics()
    finally:
        await client.close()


async def _start_with_retry(start, settings: KafkaSettings, timeout: float) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await start()
            return
        except KafkaConnectionError:
            # A refused certificate will not be accepted on the next attempt either.
            if problem := await tls_problem(settings):
                raise KafkaConnectionError(problem) from None
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def tls_problem(settings: KafkaSettings) -> str | None:
    """Why TLS with the brokers fails, if it does; aiokafka only logs it and raises 'Unable to bootstrap'."""
    if settings.security_protocol not in TLS_PROTOCOLS:
        return None
    context = ssl_context(settings)
    for server in (s.strip() for s in settings.bootstrap_servers.split(",")):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        except (OSError, ValueError, TimeoutError):
            continue  # unreachable or unparsable: not a TLS problem, aiokafka's error stands
        try:
            await writer.start_tls(context, server_hostname=host, ssl_handshake_timeout=5)
        except ssl.SSLCertVerificationError as exc:
            trusted = (
                f"kafka.ssl_ca_file {settings.ssl_ca_file}" if settings.ssl_ca_file else "the system's trust store"
            )
            return f"the Kafka broker {server} presents a certificate {trusted} does not verify: {exc.verify_message}"
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            # A plaintext Kafka listener reads the ClientHello as the size of a frame: far too large,
            # it closes the connection (noida-db, Apache Kafka), or it waits for the rest.
            reasons = {TimeoutError: "no answer", ConnectionResetError: "the connection was closed"}
            reason = reasons.get(type(exc)) or str(exc)
            protocol = settings.security_protocol
            return (
                f"the Kafka broker {server} does not complete a TLS handshake ({reason}): is it a {protocol} listener?"
            )
        finally:
            writer.close()
    return None


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def stop_quietly(client: Stoppable, timeout: float = 1.5) -> None:
    """Stop a Kafka client also when Kafka is gone, within `timeout`.

    aiokafka then fails, waits for its request timeout, or is cancelled on the way out (a group
    consumer's LeaveGroup): none of it may keep a stage from stopping or skip the next client's stop.
    """
    try:
        await asyncio.wait_for(client.stop(), timeout)
    except (KafkaError, TimeoutError) as exc:
        log.debug("stopping %s: %r", type(client).__name__, exc)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # our own task is being cancelled, not only aiokafka's inner one


async def committed_offsets(
    settings: KafkaSettings, group: str, partitions: Sequence[TopicPartition]
) -> dict[int, int]:
    """The offset `group` committed on each of `partitions` (of one topic), by partition; none: never committed."""
    if not partitions:
        return {}
    client = admin(settings)
    await client.start()
    try:
        offsets = await client.list_consumer_group_offsets(group, partitions=list(partitions))
    finally:
        await client.close()
    # A partition the group never committed on reports -1.
    return {tp.partition: at.offset for tp, at in offsets.items() if at.offset >= 0}


async def read_latest(settings: KafkaSettings, topic: str) -> dict[bytes, bytes]:
    """The latest value of every key of a compacted topic, all its partitions read from the start to the end."""
    reader = consumer(settings, group_id=None)
    try:
        await reader.start()  # inside: a failed start is stopped too, leaving no unclosed consumer
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        latest: dict[bytes, bytes] = {}
        for values in (await _read_to_end(reader, dict.fromkeys(partitions))).values():
            latest.update(values)
        return latest
    finally:
        # Stopped at once after its start, a consumer outside any group raises aiokafka's own
        # CancelledError (its committed-offsets task never ran): a topic not created yet.
        await stop_quietly(reader)


async def read_partitions(
    settings: KafkaSettings, starts: Mapping[TopicPartition, int | None]
) -> dict[TopicPartition, dict[bytes, bytes]]:
    """The latest value per key of each partition, from its start offset (None: the beginning) to its current end."""
    if not starts:
        return {}
    reader = consumer(settings, group_id=None)
    try:
        await reader.start()
        return await _read_to_end(reader, starts)
    finally:
        await stop_quietly(reader)


async def latest_offsets(
    settings: KafkaSettings, starts: Mapping[TopicPartition, int]
) -> dict[TopicPartition, tuple[int, dict[bytes | None, int]]]:
    """Each partition's end now, and the offset of each key's last record from its start offset to that end."""
    offsets: dict[TopicPartition, dict[bytes | None, int]] = {tp: {} for tp in starts}

    def note(tp: TopicPartition, record: ConsumerRecord) -> None:
        offsets[tp][record.key] = record.offset

    reader = consumer(settings, group_id=None)
    try:
        await reader.start()
        ends = await _scan_to_end(reader, starts, note)
    finally:
        await stop_quietly(reader)
    return {tp: (ends[tp], offsets[tp]) for tp in starts}


async def _read_to_end(
    reader: AIOKafkaConsumer, starts: Mapping[TopicPartition, int | None]
) -> dict[TopicPartition, dict[bytes, bytes]]:
    """Read with `reader` up to each partition's end as it is now; a tombstone removes its key."""
    latest: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in starts}

    def keep(tp: TopicPartition, record: ConsumerRecord) -> None:
        if record.key is None:
            return
        if record.value is None:
            latest[tp].pop(record.key, None)
        else:
            latest[tp][record.key] = record.value

    await _scan_to_end(reader, starts, keep)
    return latest


async def _scan_to_end(
    reader: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int | None],
    seen: Callable[[TopicPartition, ConsumerRecord], None],
) -> dict[TopicPartition, int]:
    """Hand `seen` every record from each start offset (None: the beginning) to the partition's end as it is now.

    Returns those ends.
    """
    if not starts:
        return {}
    reader.assign(list(starts))
    for tp, start in starts.items():
        if start is None:
            await reader.seek_to_beginning(tp)
        else:
            reader.seek(tp, start)
    end = await reader.end_offsets(list(starts))
    while any([await reader.position(tp) < end[tp] for tp in starts]):
        for tp, records in (await reader.getmany(timeout_ms=500)).items():
            for record in records:
                if record.offset < end[tp]:
                    seen(tp, record)
    return end


async def broadcast_reader(settings: KafkaSettings, topic: str) -> AIOKafkaConsumer:
    """A started consumer of every partition of `topic` from its current end, outside any group.

    Every process that opens one sees every record written from now on (control commands,
    creation announcements). The end is resolved here, not lazily at the first fetch as
    seek_to_end does, so a record written right after this returns is not skipped.
    """
    reader = consumer(settings, group_id=None)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or {0})]
        reader.assign(partitions)
        for tp, offset in (await reader.end_offsets(partitions)).items():
            reader.seek(tp, offset)
    except BaseException:
        await reader.stop()
        raise
    return reader
